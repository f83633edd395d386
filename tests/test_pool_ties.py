"""Max pooling on inputs built WITH ties, NaN and -inf: the gradient goes where torch sends it.

torch's rule (its CPU loop: `if value > best or isnan(value)` over the
in-image pixels in row-major order):
  - a tie goes to the FIRST maximum of the window;
  - NaN is the maximum, and with several NaNs the LAST one wins;
  - a window whose in-image values are all -inf gives -inf and its first in-image pixel;
  - a window lying entirely in the padding gives -inf and no gradient.
The covectors are integer-valued, so sums over overlapping windows are exact in
any order and every comparison below is exact equality.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicam import Tensor, grad, ops, reference
from cases_conv import max_pool_geometry
from strategies import rng_from, seeds
from torch_required import require_torch

torch = require_torch()
F = torch.nn.functional


def minicam_and_torch(x, g, w=None, **kwargs):
    """Outputs, gradients dL/dx for L = <y, g>, and (if w is given) the double backward
    d<dL/dx, w>/dg, which shows where each window reads its gradient from."""
    x_m, g_m = Tensor(x, requires_grad=True), Tensor(g, requires_grad=True)
    y_m = ops.max_pool2d(x_m, **kwargs)
    (dx_m,) = grad(y_m, x_m, g_m, create_graph=w is not None)
    x_t, g_t = torch.tensor(x, requires_grad=True), torch.tensor(g, requires_grad=True)
    y_t = F.max_pool2d(x_t, **kwargs)
    (dx_t,) = torch.autograd.grad(y_t, x_t, g_t, create_graph=w is not None)
    result = {"forward": (y_m.data, y_t.detach().numpy()), "backward": (dx_m.data, dx_t.detach().numpy())}
    if w is not None:
        (dg_m,) = grad((dx_m * Tensor(w)).sum(), g_m)
        (dg_t,) = torch.autograd.grad((dx_t * torch.tensor(w)).sum(), g_t)
        result["double backward wrt g"] = (dg_m.data, dg_t.numpy())
    return result


def assert_same_as_torch(x, g, w=None, **kwargs):
    """minicam == torch exactly (forward, backward, double backward), and the reference loop too."""
    results = minicam_and_torch(x, g, w, **kwargs)
    for quantity, (mine, theirs) in results.items():
        assert mine.dtype == x.dtype, quantity
        np.testing.assert_array_equal(mine, theirs, err_msg=f"{quantity} differs from torch ({kwargs})")
    np.testing.assert_array_equal(reference.max_pool2d_backward(x, g, **kwargs), results["backward"][1],
                                  err_msg=f"reference.max_pool2d_backward differs from torch ({kwargs})")


def integer_like(rng, shape, dtype=np.float64):
    return rng.integers(-3, 4, size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data())
def test_ties_follow_torch(dtype, data):
    """Few distinct values, so windows have repeated maxima; overlaps when stride < kernel."""
    shape, kwargs = max_pool_geometry(data)
    rng = rng_from(data.draw(seeds(), label="seed"))
    distinct = data.draw(st.integers(1, 3), label="distinct values")  # 1: every window is constant
    x = rng.integers(0, distinct, size=shape).astype(dtype)
    y_shape = ops.max_pool2d(x, **kwargs).shape
    assert_same_as_torch(x, integer_like(rng, y_shape, dtype), integer_like(rng, shape, dtype), **kwargs)


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_constant_image_sends_each_window_to_its_first_pixel(stride):
    x = np.ones((1, 2, 5, 5))
    y_shape = ops.max_pool2d(x, 3, stride=stride, padding=1).shape
    g = np.arange(1.0, 1 + np.prod(y_shape)).reshape(y_shape)  # a distinct gradient per window
    assert_same_as_torch(x, g, np.ones_like(x), kernel_size=3, stride=stride, padding=1)


def test_tie_goes_to_the_first_maximum_in_row_major_order():
    x = np.array([[[[1.0, 2.0], [2.0, 2.0]]]])
    y_m = Tensor(x, requires_grad=True)
    ops.max_pool2d(y_m, 2).backward(Tensor(np.ones((1, 1, 1, 1))))
    np.testing.assert_array_equal(y_m.grad.data, [[[[0.0, 1.0], [0.0, 0.0]]]])
    assert_same_as_torch(x, np.ones((1, 1, 1, 1)), kernel_size=2)


@pytest.mark.parametrize(
    "row, expected_grad",
    [
        ([1.0, np.nan, 2.0, 0.0], [0, 1, 0, 0]),          # one NaN: it is the maximum
        ([1.0, np.nan, 2.0, np.nan], [0, 0, 0, 1]),       # several NaNs: the LAST one
        ([np.inf, np.nan, np.inf, 1.0], [0, 1, 0, 0]),    # NaN beats inf
        ([np.nan, np.inf, 3.0, 3.0], [1, 0, 0, 0]),       # an inf after the NaN does not replace it
    ],
)
def test_nan_in_a_window_is_the_maximum(row, expected_grad):
    x = np.array(row).reshape(1, 1, 1, 4)
    x_m = Tensor(x, requires_grad=True)
    y = ops.max_pool2d(x_m, (1, 4))
    assert np.isnan(y.item())
    y.backward()
    np.testing.assert_array_equal(x_m.grad.data.ravel(), expected_grad)
    assert_same_as_torch(x, np.ones((1, 1, 1, 1)), np.arange(4.0).reshape(x.shape), kernel_size=(1, 4))


@given(data=st.data())
def test_nan_in_overlapping_windows_follows_torch(data):
    shape, kwargs = max_pool_geometry(data)
    rng = rng_from(data.draw(seeds(), label="seed"))
    x = rng.integers(0, 3, size=shape).astype(np.float64)
    x[rng.random(shape) < 0.3] = np.nan
    y_shape = ops.max_pool2d(x, **kwargs).shape
    assert_same_as_torch(x, integer_like(rng, y_shape), integer_like(rng, shape), **kwargs)


def test_window_of_minus_infinity_takes_its_first_in_image_pixel():
    """Padding is -inf too, yet torch never picks a padded position."""
    x = np.full((1, 1, 1, 3), -np.inf)
    x_m = Tensor(x, requires_grad=True)
    y = ops.max_pool2d(x_m, (1, 3), stride=1, padding=(0, 1))
    np.testing.assert_array_equal(y.data.ravel(), [-np.inf] * 3)
    y.backward(Tensor(np.ones(y.shape)))
    np.testing.assert_array_equal(x_m.grad.data.ravel(), [2.0, 1.0, 0.0])  # windows start at -1, 0, 1
    assert_same_as_torch(x, np.array([[[[1.0, 2.0, 3.0]]]]), kernel_size=(1, 3), stride=1, padding=(0, 1))


def test_window_entirely_in_the_padding_gives_minus_infinity_and_no_gradient():
    """kernel 2, dilation 2, padding 1 on one pixel: the window reads rows -1 and 1, both outside."""
    x = np.array([[[[5.0]]]])
    kwargs = {"kernel_size": 2, "stride": 1, "padding": 1, "dilation": 2}
    x_m = Tensor(x, requires_grad=True)
    y = ops.max_pool2d(x_m, **kwargs)
    np.testing.assert_array_equal(y.data, [[[[-np.inf]]]])
    y.backward(Tensor(np.ones(y.shape)))
    np.testing.assert_array_equal(x_m.grad.data, [[[[0.0]]]])
    np.testing.assert_array_equal(reference.max_pool2d(x, **kwargs), [[[[-np.inf]]]])
    assert_same_as_torch(x, np.ones((1, 1, 1, 1)), **kwargs)


def test_second_derivative_of_max_pool_is_zero_even_with_ties():
    """The choice of pixel is a constant, so d(dL/dx)/dx = 0, as in torch."""
    x = Tensor(np.ones((1, 1, 4, 4)), requires_grad=True)
    y = ops.max_pool2d(x, 2, stride=1)
    (dx,) = grad(y, x, Tensor(np.ones(y.shape)), create_graph=True)
    assert not dx.requires_grad  # no path from dx back to x: its derivative is exactly zero
