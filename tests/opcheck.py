"""Comparing a minicam op with torch: forward, backward and double backward.

check_op_against_torch(name, minicam_fn, torch_fn, arrays, kwargs, dtype, ...)
  runs the same function in minicam and in torch on the same inputs and checks
    1. the output,
    2. the vector-Jacobian product with a random covector v (backward),
    3. the derivative of <backward, w> with respect to the inputs and v
       (double backward), for a random w.
  float64: minicam float64 against torch float64, relative error <= rtol64 (about 1e-10).
  float32: minicam float32 against torch float64 on the SAME float32-rounded
  inputs, so only minicam's own rounding is measured; error <= rtol32.

The error measure is normwise: max|a - b| / max|b| over the whole array (an
elementwise relative error would be meaningless where b is near 0 after
cancellation). The worst value per op and dtype is kept in WORST_ERRORS for
the report (see conftest.py).
"""
import numpy as np

import minicam
from minicam import Tensor

WORST_ERRORS: dict = {}


def relative_error(actual, expected) -> float:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shapes differ: {actual.shape} vs {expected.shape}"
    if actual.size == 0:
        return 0.0
    if not np.array_equal(np.isfinite(actual), np.isfinite(expected)):
        return float("inf")
    finite = np.isfinite(expected)
    if not np.array_equal(actual[~finite], expected[~finite], equal_nan=True):
        return float("inf")
    diff = np.max(np.abs(actual[finite] - expected[finite]), initial=0.0)
    scale = np.max(np.abs(expected[finite]), initial=0.0)
    if diff == 0:
        return 0.0
    return float(diff / scale) if scale > 0 else float("inf")


def assert_close(actual, expected, rtol: float, what: str) -> float:
    """Assert the normwise relative error is at most rtol; say where it is worst."""
    error = relative_error(actual, expected)
    if not error <= rtol:
        a = np.asarray(actual, dtype=np.float64)
        e = np.asarray(expected, dtype=np.float64)
        worst = np.unravel_index(np.nanargmax(np.abs(a - e)), a.shape) if a.size else ()
        raise AssertionError(
            f"{what}: relative error {error:.3g} > {rtol:.1g} (shape {a.shape}); "
            f"worst at {worst}: got {a[worst]!r}, expected {e[worst]!r}"
        )
    return error


def _record(name, dtype, error):
    key = (name, np.dtype(dtype).name)
    WORST_ERRORS[key] = max(WORST_ERRORS.get(key, 0.0), error)


def _results(framework, fn, arrays, kwargs, v, ws, double):
    """Run fn and its first and second derivatives; return {quantity: array}.

    `framework` is a small adapter (see _MINICAM and _torch_adapter) so that the
    same steps run in minicam and in torch.
    """
    xs = [framework.leaf(a) for a in arrays]
    y = fn(*xs, **kwargs)
    out = {"forward": framework.numpy(y)}
    if v is None:  # forward only
        return out
    v_leaf = framework.leaf(v)
    grads = framework.grad(y, xs, v_leaf, create_graph=double)
    for i, g in enumerate(grads):
        out[f"backward, input {i}"] = np.zeros(arrays[i].shape) if g is None else framework.numpy(g)
    if double:
        terms = [(g * framework.constant(w)).sum() for g, w in zip(grads, ws) if g is not None and g.requires_grad]
        wrt = xs + [v_leaf]
        second = framework.grad(sum(terms[1:], terms[0]), wrt, None, create_graph=False) if terms else [None] * len(wrt)
        for i, s in enumerate(second):
            label = "the output covector" if i == len(arrays) else f"input {i}"
            out[f"double backward wrt {label}"] = np.zeros(wrt[i].shape) if s is None else framework.numpy(s)
    return out


class _MinicamAdapter:
    def __init__(self, dtype):
        self.dtype = dtype

    def leaf(self, a):
        return Tensor(np.asarray(a).astype(self.dtype), requires_grad=True)

    def constant(self, a):
        return Tensor(np.asarray(a).astype(self.dtype))

    def numpy(self, t):
        assert t.dtype == self.dtype, f"result has dtype {t.dtype}, expected {self.dtype}"
        return t.data

    def grad(self, y, xs, v, create_graph):
        return minicam.grad(y, xs, grad_outputs=v, create_graph=create_graph, allow_unused=True)


class _TorchAdapter:
    def __init__(self, torch, dtype):
        self.torch, self.dtype = torch, dtype

    def leaf(self, a):
        return self.torch.tensor(np.asarray(a), dtype=self.dtype, requires_grad=True)

    def constant(self, a):
        return self.torch.tensor(np.asarray(a), dtype=self.dtype)

    def numpy(self, t):
        return t.detach().numpy(force=True).astype(np.float64)

    def grad(self, y, xs, v, create_graph):
        return self.torch.autograd.grad(y, xs, grad_outputs=v, create_graph=create_graph, allow_unused=True)


def check_op_against_torch(torch, name, minicam_fn, torch_fn, arrays, kwargs=None, dtype=np.float64,
                           rtol64=1e-10, rtol32=1e-5, double_backward=True, seed=0):
    """Check forward, backward and double backward of one op against torch.

    arrays: the float64 inputs (all differentiated); kwargs: non-tensor arguments.

    float64: every quantity within rtol64 of torch float64.
    float32: minicam float32 against torch float64 on the same float32-rounded
    inputs. The bound is max(rtol32, 10 * torch float32's own error on the same
    quantity): a second derivative with cancellation is ill-conditioned in
    float32 for torch too, and minicam must be no worse than torch there.
    Returns the largest relative error seen.
    """
    kwargs = kwargs or {}
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    arrays = [np.asarray(a, dtype=np.float64).astype(dtype) for a in arrays]
    with_torch = _TorchAdapter(torch, torch.float64)
    reference = _results(with_torch, torch_fn, arrays, kwargs, None, None, False)
    v = rng.standard_normal(reference["forward"].shape).astype(dtype)
    ws = [rng.standard_normal(a.shape).astype(dtype) for a in arrays]
    reference = _results(with_torch, torch_fn, arrays, kwargs, v, ws, double_backward)
    mine = _results(_MinicamAdapter(dtype), minicam_fn, arrays, kwargs, v, ws, double_backward)
    if dtype == np.float32:
        torch32 = _results(_TorchAdapter(torch, torch.float32), torch_fn, arrays, kwargs, v, ws, double_backward)
    errors = []
    for quantity, expected in reference.items():
        if dtype == np.float64:
            bound = rtol64
        else:
            bound = max(rtol32, 10 * relative_error(torch32[quantity], expected))
        errors.append(assert_close(mine[quantity], expected, bound, f"{name} {quantity} [{dtype}]"))
    worst = max(errors)
    _record(name, dtype, worst)
    return worst
