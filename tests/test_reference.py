"""The slow loops of minicam.reference == the fast ops == torch, on drawn geometries.

reference.py is the specification students read first, so it is tested like
the rest: against torch, and minicam.ops against it (conv2d and max_pool2d both on
the fast wing and in the reading room). Copies and maxima must agree exactly; sums
within 1e-12 (normwise relative: only the order of the additions differs).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minicam import Tensor, grad, ops, reference
from minicam.ops.fast import Plan, plan as fast_plan
from cases_conv import max_pool_geometry, window_geometry
from opcheck import assert_close
from strategies import rng_from, seeds, tie_free, values
from torch_required import require_torch

torch = require_torch()
F = torch.nn.functional
T = torch.from_numpy

# The loops are slow: fewer examples than the ci profile's 25, small shapes.
FEW = settings(max_examples=15)
FAST_WING, READING_ROOM = Plan(), Plan(fast=False)


def _batch(data, max_channels=3):
    return data.draw(st.integers(1, 2), label="N"), data.draw(st.integers(1, max_channels), label="C")


@FEW
@pytest.mark.parametrize("room", ["fast wing", "reading room"])
@given(data=st.data())
def test_conv2d_reference_fast_and_torch_agree(room, data):
    k, s, p, d, (H, W) = data.draw(window_geometry(), label="geometry")
    N, C = _batch(data)
    K = data.draw(st.integers(1, 3), label="K")
    rng = rng_from(data.draw(seeds(), label="seed"))
    x, weight, bias = values(rng, (N, C, H, W)), values(rng, (K, C) + k), values(rng, (K,))
    bias = bias if data.draw(st.booleans(), label="with bias") else None

    slow = reference.conv2d(x, weight, bias, stride=s, padding=p, dilation=d)
    with fast_plan(FAST_WING if room == "fast wing" else READING_ROOM):
        fast = ops.conv2d(x, weight, bias, stride=s, padding=p, dilation=d).data
    expected = F.conv2d(T(x), T(weight), None if bias is None else T(bias), stride=s, padding=p, dilation=d).numpy()
    assert_close(slow, expected, 1e-12, "reference.conv2d vs torch")
    assert_close(fast, slow, 1e-12, "ops.conv2d vs reference.conv2d")


@FEW
@given(data=st.data())
def test_unfold_reference_fast_and_torch_agree_exactly(data):
    k, s, p, d, (H, W) = data.draw(window_geometry(), label="geometry")
    N, C = _batch(data)
    x = values(rng_from(data.draw(seeds(), label="seed")), (N, C, H, W))
    slow = reference.unfold(x, k, dilation=d, padding=p, stride=s)
    np.testing.assert_array_equal(slow, F.unfold(T(x), k, dilation=d, padding=p, stride=s).numpy())
    np.testing.assert_array_equal(ops.unfold(x, k, dilation=d, padding=p, stride=s).data, slow)


@given(data=st.data())
def test_unfold_and_fold_are_adjoint(data):
    """<unfold(x), y> = <x, fold(y)>: why each is the other's backward."""
    k, s, p, d, (H, W) = data.draw(window_geometry(), label="geometry")
    N, C = _batch(data)
    rng = rng_from(data.draw(seeds(), label="seed"))
    x = values(rng, (N, C, H, W))
    columns = ops.unfold(x, k, dilation=d, padding=p, stride=s).data
    y = values(rng, columns.shape)
    folded = ops.fold(y, (H, W), k, dilation=d, padding=p, stride=s).data
    left, right = np.sum(columns * y), np.sum(x * folded)
    assert abs(left - right) <= 1e-12 * (np.sum(np.abs(columns * y)) + 1), (left, right)


def _max_pool_case(data, value_kind):
    shape, kwargs = max_pool_geometry(data)
    rng = rng_from(data.draw(seeds(), label="seed"))
    if value_kind == "tie-free":
        x = tie_free(rng, shape)
    else:  # few distinct values: most windows have tied maxima
        x = rng.integers(0, 3, size=shape).astype(np.float64)
    return x, kwargs, rng


@FEW
@pytest.mark.parametrize("value_kind", ["tie-free", "with ties"])
@pytest.mark.parametrize("room", ["fast wing", "reading room"])
@given(data=st.data())
def test_max_pool2d_reference_fast_and_torch_agree_exactly(room, value_kind, data):
    with fast_plan(FAST_WING if room == "fast wing" else READING_ROOM):
        _max_pool2d_reference_fast_and_torch_agree_exactly(value_kind, data)


def _max_pool2d_reference_fast_and_torch_agree_exactly(value_kind, data):
    x, kwargs, rng = _max_pool_case(data, value_kind)
    slow = reference.max_pool2d(x, **kwargs)
    np.testing.assert_array_equal(slow, F.max_pool2d(T(x), **kwargs).numpy())
    np.testing.assert_array_equal(ops.max_pool2d(x, **kwargs).data, slow)

    # The backward loop, the engine's backward and torch's: every window sends its
    # gradient to one pixel. Integer-valued gradients make the sums over
    # overlapping windows exact in any order, so equality can be exact.
    g = rng.integers(-3, 4, size=slow.shape).astype(np.float64)
    slow_grad = reference.max_pool2d_backward(x, g, **kwargs)
    x_torch = T(x).requires_grad_()
    (torch_grad,) = torch.autograd.grad(F.max_pool2d(x_torch, **kwargs), x_torch, T(g))
    x_minicam = Tensor(x, requires_grad=True)
    (fast_grad,) = grad(ops.max_pool2d(x_minicam, **kwargs), x_minicam, Tensor(g))
    np.testing.assert_array_equal(slow_grad, torch_grad.numpy())
    np.testing.assert_array_equal(fast_grad.data, slow_grad)


@FEW
@given(data=st.data())
def test_avg_pool2d_reference_fast_and_torch_agree(data):
    k, s, p, _, (H, W) = data.draw(window_geometry(pool=True, max_dilation=1), label="geometry")
    N, C = _batch(data)
    x = values(rng_from(data.draw(seeds(), label="seed")), (N, C, H, W))
    kwargs = {
        "kernel_size": k,
        "stride": data.draw(st.sampled_from([None, s]), label="stride or None"),
        "padding": p,
        "count_include_pad": data.draw(st.booleans(), label="count_include_pad"),
        "divisor_override": data.draw(st.sampled_from([None, 3]), label="divisor_override"),
    }
    slow = reference.avg_pool2d(x, **kwargs)
    assert_close(slow, F.avg_pool2d(T(x), **kwargs).numpy(), 1e-12, "reference.avg_pool2d vs torch")
    assert_close(ops.avg_pool2d(x, **kwargs).data, slow, 1e-12, "ops.avg_pool2d vs reference.avg_pool2d")


@FEW
@given(data=st.data())
def test_adaptive_avg_pool2d_reference_fast_and_torch_agree(data):
    N, C = _batch(data)
    H, W = data.draw(st.integers(1, 7), label="H"), data.draw(st.integers(1, 7), label="W")
    output_size = (data.draw(st.integers(1, 8), label="OH"), data.draw(st.integers(1, 8), label="OW"))
    x = values(rng_from(data.draw(seeds(), label="seed")), (N, C, H, W))
    slow = reference.adaptive_avg_pool2d(x, output_size)
    assert_close(slow, F.adaptive_avg_pool2d(T(x), output_size).numpy(), 1e-12, "reference.adaptive_avg_pool2d vs torch")
    assert_close(ops.adaptive_avg_pool2d(x, output_size).data, slow, 1e-12, "ops.adaptive_avg_pool2d vs reference")


def test_global_average_pooling_is_the_mean_over_height_and_width():
    x = values(np.random.default_rng(0), (2, 3, 5, 4))
    np.testing.assert_allclose(ops.adaptive_avg_pool2d(x, 1).data, x.mean(axis=(2, 3), keepdims=True), rtol=1e-15)
    np.testing.assert_allclose(reference.adaptive_avg_pool2d(x, 1), x.mean(axis=(2, 3), keepdims=True), rtol=1e-15)


def test_conv_output_size_is_torchs_output_size():
    """The one shared formula against the sizes torch's conv2d and max_pool2d produce."""
    for size in range(1, 8):
        for kernel in range(1, 4):
            for stride in (1, 2, 3):
                for padding in range(0, 3):
                    for dilation in (1, 2):
                        if size + 2 * padding < dilation * (kernel - 1) + 1:
                            with pytest.raises(ValueError, match="output would be empty"):
                                ops.conv_output_size(size, kernel, stride, padding, dilation)
                            continue
                        out = F.conv2d(torch.zeros(1, 1, size, 1), torch.zeros(1, 1, kernel, 1),
                                       stride=stride, padding=(padding, 0), dilation=dilation)
                        assert ops.conv_output_size(size, kernel, stride, padding, dilation) == out.shape[2]
                        if padding <= kernel // 2:
                            pooled = F.max_pool2d(torch.zeros(1, 1, size, 1), (kernel, 1), stride=stride,
                                                  padding=(padding, 0), dilation=dilation)
                            assert ops.conv_output_size(size, kernel, stride, padding, dilation) == pooled.shape[2]


def test_reference_keeps_float32():
    rng = np.random.default_rng(0)
    x, w = values(rng, (1, 2, 4, 4)).astype(np.float32), values(rng, (3, 2, 2, 2)).astype(np.float32)
    assert reference.conv2d(x, w).dtype == np.float32
    assert reference.max_pool2d(x, 2).dtype == np.float32
    assert reference.avg_pool2d(x, 2).dtype == np.float32
    assert reference.adaptive_avg_pool2d(x, 3).dtype == np.float32
