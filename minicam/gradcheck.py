"""Finite-difference checks of gradients, first and second order.

A gradient is right if it predicts how the function changes. For a function
f: inputs -> output, pick a random direction u (one array per input) and a
random covector v (shaped like the output). Then

    <v, (f(x + h u) - f(x - h u)) / 2h>   (two forward passes)
    <J^T v, u>                           (one backward pass)

must agree to about h^2. This is the random-projection VJP check of
HIPS/autograd's check_vjp: two forward passes per check instead of two per
input element, so it is cheap enough for whole networks.

Second order: g(x) = <J(x)^T v, w> is itself a scalar function of x whose
gradient minicam computes with create_graph=True; check that gradient the
same way.

Use float64: in float32 central differences carry errors near 1e-2.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Tensor, enable_grad, grad, no_grad


class GradcheckError(AssertionError):
    """A gradient disagrees with finite differences."""


def _random_like(arrays, rng):
    return [rng.standard_normal(a.shape) for a in arrays]


def _evaluate(f, arrays) -> np.ndarray:
    with no_grad():
        return np.asarray(f(*[Tensor(a) for a in arrays]).data, dtype=np.float64)


def directional_derivative(f, arrays, direction, h: float = 1e-6) -> np.ndarray:
    """(f(x + h u) - f(x - h u)) / 2h, the central difference along u."""
    plus = _evaluate(f, [a + h * d for a, d in zip(arrays, direction)])
    minus = _evaluate(f, [a - h * d for a, d in zip(arrays, direction)])
    return (plus - minus) / (2 * h)


def _compare(analytic: float, numeric: float, rtol: float, atol: float, what: str) -> float:
    error = abs(analytic - numeric)
    if not error <= atol + rtol * abs(numeric):
        raise GradcheckError(
            f"{what}: backward gives {analytic:.12g}, finite differences give {numeric:.12g} "
            f"(difference {error:.3g}, allowed {atol + rtol * abs(numeric):.3g})"
        )
    return error / max(abs(numeric), atol)


def check_vjp(f, arrays, rng: np.random.Generator, h: float = 1e-6, rtol: float = 1e-6, atol: float = 1e-8) -> float:
    """Check the first derivative of f at `arrays` (float64 NumPy arrays).

    Returns the relative error; raises GradcheckError if it is too large.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    inputs = [Tensor(a, requires_grad=True) for a in arrays]
    output = f(*inputs)
    v = rng.standard_normal(output.shape)
    u = _random_like(arrays, rng)
    grads = grad(output, inputs, grad_outputs=Tensor(v), allow_unused=True)
    analytic = sum(float(np.sum(g.data * d)) for g, d in zip(grads, u) if g is not None)
    numeric = float(np.sum(v * directional_derivative(f, arrays, u, h)))
    return _compare(analytic, numeric, rtol, atol, "first derivative")


def check_second_order(
    f, arrays, rng: np.random.Generator, h: float = 1e-5, rtol: float = 1e-5, atol: float = 1e-7
) -> float:
    """Check the second derivative of f: differentiate g(x) = <J(x)^T v, w>.

    Returns the relative error; raises GradcheckError if it is too large.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    with no_grad():
        output_shape = f(*[Tensor(a) for a in arrays]).shape
    v = rng.standard_normal(output_shape)
    w = _random_like(arrays, rng)

    def g(*xs):
        grads = grad(f(*xs), list(xs), grad_outputs=Tensor(v), create_graph=True, allow_unused=True)
        total = Tensor(0.0)
        for gi, wi in zip(grads, w):
            if gi is not None:
                total = total + (gi * Tensor(wi)).sum()
        return total

    def g_value(*xs):  # g needs a backward inside, so grad mode is on even under no_grad
        with enable_grad():
            xs = [Tensor(x.data, requires_grad=True) for x in xs]
            return Tensor(g(*xs).data)

    inputs = [Tensor(a, requires_grad=True) for a in arrays]
    value = g(*inputs)
    u = _random_like(arrays, rng)
    analytic = 0.0  # if g does not depend on x, f is linear and its second derivative is zero
    if value.requires_grad:
        second = grad(value, inputs, allow_unused=True)
        analytic = sum(float(np.sum(s.data * d)) for s, d in zip(second, u) if s is not None)
    numeric = float(directional_derivative(g_value, arrays, u, h))
    return _compare(analytic, numeric, rtol, atol, "second derivative")
