"""The fused primitives against their slow twins, both in minicam, float64.

conv2d (the primitives Conv2dOp, ConvTranspose2dOp, ConvWeightOp) against conv2d_composite
(pad -> unfold -> matmul), and max_pool2d (MaxPool2dOp, WindowGatherOp, WindowScatterOp)
against max_pool2d_composite (pad -> unfold -> pick): the forward pass, the backward
pass (a vector-Jacobian product with a random covector) and the double backward
(the derivative of <backward, w> with respect to the inputs and the covector), the
same three quantities the op table compares with torch (tests/opcheck.py).

Convolutions agree to 1e-12 (normwise relative: only the order of the additions
differs); max pooling moves numbers without arithmetic, so it must agree exactly,
ties and NaN included. The fused convolution's kernels have two layouts (one product per
kernel element on views, which may stack the elements into columns, see _Taps.plan; or
channels-last columns), chosen by shape in minicam.ops.conv_kernels; each test runs
every one of them on every case.
"""
import contextlib

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minicam.ops.conv_kernels as conv_module
from minicam import Tensor, grad, ops
from minicam.ops.conv import ConvTranspose2dOp, ConvWeightOp, Conv2dOp, conv2d_composite
from minicam.ops.pool import max_pool2d_composite
from cases_conv import max_pool_geometry, window_geometry
from opcheck import _MinicamAdapter, _results, assert_close
from strategies import rng_from, seeds, tie_free, values

NEVER_CHANNELS_LAST = {"CHANNELS_LAST_MAX_PIXELS": 0, "CHANNELS_LAST_STRIDED": False}
PLANS = {
    "default": {},
    # every convolution as stacked columns, one image per chunk: the other path, and chunking
    "columns": {"FEW_CHANNELS": 10**9, "MANY_ELEMENTS": 0, "COLUMN_BYTES": 1, **NEVER_CHANNELS_LAST},
    # never columns: one product per kernel element everywhere
    "elements": {"FEW_CHANNELS": 0, **NEVER_CHANNELS_LAST},
    # every convolution as channels-last columns, one image per chunk
    "channels-last": {"CHANNELS_LAST_MAX_PIXELS": 10**9, "CHANNELS_LAST_MIN_BYTES": 0, "CHANNELS_LAST_CHUNK_BYTES": 1},
}


@contextlib.contextmanager
def using(plan):
    """Run with the module settings of `plan` (restored afterwards)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in PLANS[plan].items():
            patch.setattr(conv_module, name, value)
        yield


def fused_and_composite(fused, composite, arrays, kwargs, seed=0):
    """{quantity: (fused result, composite result)} for forward, backward and double backward."""
    rng = np.random.default_rng(seed)
    adapter = _MinicamAdapter(np.float64)
    forward = _results(adapter, composite, arrays, kwargs, None, None, False)["forward"]
    v = rng.standard_normal(forward.shape)
    ws = [rng.standard_normal(np.shape(a)) for a in arrays]
    mine = _results(adapter, fused, arrays, kwargs, v, ws, True)
    slow = _results(adapter, composite, arrays, kwargs, v, ws, True)
    assert mine.keys() == slow.keys()
    return {quantity: (mine[quantity], slow[quantity]) for quantity in mine}


@st.composite
def conv_case(draw):
    """A drawn conv2d: geometry with kernels up to 5x5, few or many channels, bias or not, any padding form."""
    (k, s, p, d, (H, W)) = draw(window_geometry(max_kernel=5), label="geometry")
    N = draw(st.integers(1, 3), label="N")
    C = draw(st.sampled_from([1, 2, 3, 8, 9]), label="C")  # below and above FEW_CHANNELS
    K = draw(st.integers(1, 3), label="K")
    padding = draw(st.sampled_from([p, "same", "valid"]), label="padding")
    if padding == "same":
        s = (1, 1)  # torch allows 'same' only with stride 1
    if padding == "valid":  # no padding: the input must hold the whole window
        H, W = max(H, d[0] * (k[0] - 1) + 1), max(W, d[1] * (k[1] - 1) + 1)
    rng = rng_from(draw(seeds(), label="seed"))
    arrays = [values(rng, (N, C, H, W)), values(rng, (K, C) + k)]
    if draw(st.booleans(), label="with bias"):
        arrays.append(values(rng, (K,)))
    return arrays, {"stride": s, "padding": padding, "dilation": d}


def _conv(fn):
    return lambda x, w, b=None, **kwargs: fn(x, w, b, **kwargs)


@pytest.mark.parametrize("plan", list(PLANS))
@given(case=conv_case())
def test_fused_conv2d_matches_the_composite(plan, case):
    arrays, kwargs = case
    with using(plan):
        results = fused_and_composite(_conv(ops.conv2d), _conv(conv2d_composite), arrays, kwargs)
    for quantity, (fused, composite) in results.items():
        assert_close(fused, composite, 1e-12, f"conv2d {quantity} ({plan}, {kwargs})")


@pytest.mark.parametrize("plan", list(PLANS))
@given(case=conv_case())
def test_the_three_convolution_primitives_are_adjoint(plan, case):
    """<Conv2dOp(x, w), g> = <x, ConvTranspose2dOp(g, w)> = <w, ConvWeightOp(x, g)>: why each is the others' backward."""
    (x, w, *_), kwargs = case
    with using(plan):
        y = ops.conv2d(Tensor(x, requires_grad=True), w, **kwargs)
        assert y._ctx.function is Conv2dOp
        geometry = y._ctx.saved[0]
        g = np.random.default_rng(1).standard_normal(y.shape)
        dx = ConvTranspose2dOp.apply(g, w, geometry=geometry).data
        dw = ConvWeightOp.apply(x, g, geometry=geometry).data
    first, second, third = np.sum(y.data * g), np.sum(x * dx), np.sum(w * dw)
    scale = np.sum(np.abs(y.data * g))
    assert abs(first - second) <= 1e-12 * scale and abs(first - third) <= 1e-12 * scale


@pytest.mark.parametrize("plan", list(PLANS))
def test_fused_conv2d_keeps_float32(plan):
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 9, 9)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 3, 5, 5)).astype(np.float32), requires_grad=True)
    with using(plan):
        y = ops.conv2d(x, w, stride=2, padding=2)
        (dx, dw) = grad(y, [x, w], Tensor(np.ones(y.shape, dtype=np.float32)), create_graph=True)
        (ddx,) = grad((dw * dw).sum(), x)
    assert {y.dtype, dx.dtype, dw.dtype, ddx.dtype} == {np.dtype(np.float32)}


def _pool_inputs(data, kind):
    shape, kwargs = max_pool_geometry(data)
    rng = rng_from(data.draw(seeds(), label="seed"))
    if kind == "distinct":
        x = tie_free(rng, shape)
    else:  # few distinct values: windows with tied maxima; and some NaN
        x = rng.integers(0, 3, size=shape).astype(np.float64)
        if kind == "nan":
            x[rng.random(shape) < 0.3] = np.nan
    return x, kwargs


@pytest.mark.parametrize("kind", ["distinct", "ties", "nan"])
@given(data=st.data())
def test_fused_max_pool2d_matches_the_composite_exactly(kind, data):
    x, kwargs = _pool_inputs(data, kind)
    for quantity, (fused, composite) in fused_and_composite(ops.max_pool2d, max_pool2d_composite,
                                                            [x], kwargs).items():
        np.testing.assert_array_equal(fused, composite, err_msg=f"max_pool2d {quantity} ({kind}, {kwargs})")


@given(data=st.data())
def test_fused_max_pool2d_moves_infinite_and_nan_values_only_to_and_from_the_chosen_element(data):
    """The backward is a scatter and its backward a gather: an inf or NaN entry of the covector
    lands on (is read from) its window's chosen element only; a product with a 0/1 mask
    would put NaN = inf * 0 on every other element."""
    x, kwargs = _pool_inputs(data, "ties")
    rng = rng_from(data.draw(seeds(), label="covector seed"))

    def with_infinities(shape):
        values = rng.integers(-3, 4, size=shape).astype(np.float64)
        values[rng.random(shape) < 0.3] = rng.choice([np.inf, -np.inf, np.nan])
        return values

    g = with_infinities(ops.max_pool2d(x, **kwargs).shape)
    h = with_infinities(x.shape)
    results = []
    for pool in (ops.max_pool2d, max_pool2d_composite):
        x_t, g_t = Tensor(x, requires_grad=True), Tensor(g, requires_grad=True)
        (dx,) = grad(pool(x_t, **kwargs), x_t, g_t, create_graph=True)  # the scatter
        (dg,) = grad((dx * Tensor(h)).sum(), g_t)  # the gather
        results.append((dx.data, dg.data))
    for quantity, fused, composite in zip(("backward", "double backward"), *results):
        np.testing.assert_array_equal(fused, composite, err_msg=f"max_pool2d {quantity} with inf/NaN ({kwargs})")
