"""The fast wing against the reading room: every tuned kernel computes the reading room's numbers.

conv2d (the primitives Conv2dOp, ConvTranspose2dOp, ConvWeightOp), max_pool2d (MaxPool2dOp,
WindowGatherOp, WindowScatterOp) and eval-mode batch_norm (BatchNormEvalOp against the
composite of ops) run once under a fast Plan and once under minicam.ops.reading_room(), and
agree in the forward pass, the backward pass (a vector-Jacobian product with a random
covector) and the double backward (the derivative of <backward, w> with respect to the
inputs and the covector): the three quantities the op table compares with torch
(tests/opcheck.py), which also checks the reading room itself against torch
(tests/test_ops_torch.py).

Convolutions agree to 1e-12 (normwise relative: only the order of the additions differs);
max pooling moves numbers without arithmetic, so it must agree exactly, ties, NaN and inf
included. The fast convolution has two layouts (one product per kernel element on views,
which may stack the elements into columns; or channels-last columns), chosen by the Plan's
thresholds: every convolution test runs under plans that force each of them.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicam import Tensor, grad, ops
from minicam.ops import fast
from minicam.ops.conv import Conv2dOp
from minicam.ops.fast import Plan
from minicam.ops.fast.conv import channels_last, stacks_elements
from minicam.ops.im2col import Geometry
from minicam.ops.pool import MaxPool2dOp
from cases_conv import max_pool_geometry, window_geometry
from cases_nnfunc import _minicam_batch_norm, draw_batch_norm
from opcheck import _MinicamAdapter, _results, assert_close
from strategies import rng_from, seeds, tie_free, values

NEVER_CHANNELS_LAST = {"channels_last_max_pixels": 0, "channels_last_strided": False}
PLANS = {
    "default": Plan(),
    # every convolution as stacked columns, one image per chunk: the other path, and chunking
    "columns": Plan(few_channels=10**9, many_elements=0, column_bytes=1, **NEVER_CHANNELS_LAST),
    # never columns: one product per kernel element everywhere
    "elements": Plan(few_channels=0, **NEVER_CHANNELS_LAST),
    # every convolution as channels-last columns, one image per chunk
    "channels-last": Plan(channels_last_max_pixels=10**9, channels_last_min_bytes=0, channels_last_chunk_bytes=1),
}
READING_ROOM = Plan(fast=False)


def under(plan, fn, arrays, kwargs, v, ws):
    """{quantity: array} for forward, backward and double backward, all of it run under `plan`."""
    with fast.plan(plan):
        return _results(_MinicamAdapter(np.float64), fn, arrays, kwargs, v, ws, True)


def fast_and_reading_room(plan, fn, arrays, kwargs, seed=0):
    """{quantity: (result under plan, result in the reading room)}."""
    rng = np.random.default_rng(seed)
    with ops.reading_room():
        shape = fn(*arrays, **kwargs).shape
    v = rng.standard_normal(shape)
    ws = [rng.standard_normal(np.shape(a)) for a in arrays]
    mine, slow = under(plan, fn, arrays, kwargs, v, ws), under(READING_ROOM, fn, arrays, kwargs, v, ws)
    assert mine.keys() == slow.keys()
    return {quantity: (mine[quantity], slow[quantity]) for quantity in mine}


def test_the_plans_force_each_convolution_layout():
    """The named plans take the branches they are named for, on one small convolution (C=9, 5x5 output)."""
    geometry = Geometry((5, 5), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), (5, 5))
    layouts = {}
    for name, plan in PLANS.items():
        if channels_last(9, geometry, np.float64, plan):
            layouts[name] = "channels-last"
        else:  # one product per kernel element, or the elements stacked into columns
            layouts[name] = "columns" if stacks_elements(9, 9, plan, forward=False) else "elements"
    assert layouts == {"default": "channels-last", "columns": "columns", "elements": "elements",
                       "channels-last": "channels-last"}
    assert fast.current_plan() == Plan() and fast.enabled()  # outside a block: the default plan
    with ops.reading_room():
        assert not fast.enabled()
    with pytest.raises(TypeError, match="expected a minicam.ops.fast.Plan"):
        with fast.plan({"fast": False}):
            pass
    with pytest.raises(ValueError, match="few_channels must be a non-negative int"):
        Plan(few_channels=-1)


# ----------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------


@st.composite
def conv_case(draw):
    """A drawn conv2d: geometry with kernels up to 5x5, few or many channels, bias or not, any padding form."""
    (k, s, p, d, (H, W)) = draw(window_geometry(max_kernel=5), label="geometry")
    N = draw(st.integers(1, 3), label="N")
    C = draw(st.sampled_from([1, 2, 3, 8, 9]), label="C")  # below and above the default few_channels
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


def _conv2d(x, w, b=None, **kwargs):
    return ops.conv2d(x, w, b, **kwargs)


@pytest.mark.parametrize("plan", list(PLANS))
@given(case=conv_case())
def test_fast_conv2d_matches_the_reading_room(plan, case):
    arrays, kwargs = case
    for quantity, (fast_result, readable) in fast_and_reading_room(PLANS[plan], _conv2d, arrays, kwargs).items():
        assert_close(fast_result, readable, 1e-12, f"conv2d {quantity} ({plan}, {kwargs})")


@pytest.mark.parametrize("plan", list(PLANS) + ["reading room"])
@given(case=conv_case())
def test_the_three_convolution_primitives_are_adjoint(plan, case):
    """<Conv2dOp(x, w), g> = <x, ConvTranspose2dOp(g, w)> = <w, ConvWeightOp(x, g)>: why each is the others' backward.

    conv2d's gradients are those two primitives: dx = ConvTranspose2dOp(g, w), dw = ConvWeightOp(x, g)."""
    (x, w, *_), kwargs = case
    with fast.plan(PLANS.get(plan, READING_ROOM)):
        x_t, w_t = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
        y = ops.conv2d(x_t, w_t, **kwargs)
        assert y.grad_fn is Conv2dOp
        g = np.random.default_rng(1).standard_normal(y.shape)
        dx, dw = grad(y, [x_t, w_t], Tensor(g))
    first, second, third = np.sum(y.data * g), np.sum(x * dx.data), np.sum(w * dw.data)
    scale = np.sum(np.abs(y.data * g))
    assert abs(first - second) <= 1e-12 * scale and abs(first - third) <= 1e-12 * scale


@pytest.mark.parametrize("plan", list(PLANS) + ["reading room"])
def test_conv2d_keeps_float32(plan):
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 9, 9)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 3, 5, 5)).astype(np.float32), requires_grad=True)
    with fast.plan(PLANS.get(plan, READING_ROOM)):
        y = ops.conv2d(x, w, stride=2, padding=2)
        (dx, dw) = grad(y, [x, w], Tensor(np.ones(y.shape, dtype=np.float32)), create_graph=True)
        (ddx,) = grad((dw * dw).sum(), x)
    assert {y.dtype, dx.dtype, dw.dtype, ddx.dtype} == {np.dtype(np.float32)}


# ----------------------------------------------------------------------------
# Max pooling
# ----------------------------------------------------------------------------


def _pool_inputs(data, kind):
    shape, kwargs = max_pool_geometry(data)
    rng = rng_from(data.draw(seeds(), label="seed"))
    if kind == "distinct":
        x = tie_free(rng, shape)
    elif kind == "infinite":  # windows of -inf only, and inf maxima
        x = rng.choice([-np.inf, -np.inf, 0.0, 1.0, np.inf], size=shape)
    else:  # few distinct values: windows with tied maxima; and some NaN
        x = rng.integers(0, 3, size=shape).astype(np.float64)
        if kind == "nan":
            x[rng.random(shape) < 0.3] = np.nan
    return x, kwargs


@pytest.mark.parametrize("kind", ["distinct", "ties", "nan", "infinite"])
@given(data=st.data())
def test_fast_max_pool2d_matches_the_reading_room_exactly(kind, data):
    x, kwargs = _pool_inputs(data, kind)
    for quantity, (fast_result, readable) in fast_and_reading_room(Plan(), ops.max_pool2d, [x], kwargs).items():
        np.testing.assert_array_equal(fast_result, readable, err_msg=f"max_pool2d {quantity} ({kind}, {kwargs})")


@pytest.mark.parametrize("kwargs", [
    {"kernel_size": 2, "stride": 1, "padding": 1, "dilation": 2},  # on a side of 1: windows entirely in the padding
    {"kernel_size": 3, "stride": 1, "padding": 1},
    {"kernel_size": (1, 3), "stride": 1, "padding": (0, 1)},
])
def test_fast_max_pool2d_matches_the_reading_room_on_windows_of_padding_and_minus_infinity(kwargs):
    x = np.array([[[[-np.inf]]], [[[2.0]]]])  # one image of -inf, one of a number: (2, 1, 1, 1)
    if kwargs["kernel_size"] != 2:
        x = np.full((2, 1, 3, 3), -np.inf)
        x[1, 0, 1] = [np.nan, 1.0, np.nan]
    results = fast_and_reading_room(Plan(), ops.max_pool2d, [x], kwargs)
    for quantity, (fast_result, readable) in results.items():
        np.testing.assert_array_equal(fast_result, readable, err_msg=f"max_pool2d {quantity} ({kwargs})")


@given(data=st.data())
def test_fast_max_pool2d_moves_infinite_and_nan_values_only_to_and_from_the_chosen_element(data):
    """The backward is a scatter and its backward a gather: an inf or NaN entry of the covector
    lands on (is read from) its window's chosen element only; a product with a 0/1 mask
    would put NaN = inf * 0 on every other element."""
    x, kwargs = _pool_inputs(data, "ties")
    rng = rng_from(data.draw(seeds(), label="covector seed"))

    def with_infinities(shape):
        numbers = rng.integers(-3, 4, size=shape).astype(np.float64)
        numbers[rng.random(shape) < 0.3] = rng.choice([np.inf, -np.inf, np.nan])
        return numbers

    g = with_infinities(ops.max_pool2d(x, **kwargs).shape)
    h = with_infinities(x.shape)
    results = []
    for plan in (Plan(), READING_ROOM):
        with fast.plan(plan):
            x_t, g_t = Tensor(x, requires_grad=True), Tensor(g, requires_grad=True)
            y = ops.max_pool2d(x_t, **kwargs)
            assert y.grad_fn is MaxPool2dOp
            (dx,) = grad(y, x_t, g_t, create_graph=True)  # the scatter
            (dg,) = grad((dx * Tensor(h)).sum(), g_t)  # the gather
        results.append((dx.data, dg.data))
    for quantity, fast_result, readable in zip(("backward", "double backward"), *results):
        np.testing.assert_array_equal(fast_result, readable, err_msg=f"max_pool2d {quantity} with inf/NaN ({kwargs})")


# ----------------------------------------------------------------------------
# Batch normalisation in eval mode
# ----------------------------------------------------------------------------


@given(data=st.data())
def test_fast_batch_norm_eval_matches_the_reading_room(data):
    arrays, kwargs = draw_batch_norm(training=False)(data)
    results = fast_and_reading_room(Plan(), _minicam_batch_norm, arrays, kwargs)
    for quantity, (fast_result, readable) in results.items():
        assert_close(fast_result, readable, 1e-12, f"batch_norm eval {quantity} ({len(arrays) - 1} affine arrays)")
