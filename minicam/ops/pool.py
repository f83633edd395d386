"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d.

    max pool      = pad with -inf -> the windows -> pick the element torch chooses (max_choice,
                    an argmax over the window axis): the primitive MaxPool2dOp, whose backward
                    scatters g to that element (WindowScatterOp; WindowGatherOp is its adjoint)
    average pool  = pad with 0    -> unfold -> sum per window / divisor
    adaptive avg  = mean over (H, W) for output size 1 (global average pooling, the
                    star of CAM), else  rows @ x @ cols^T  with averaging matrices

The max-pooling primitives' forwards start with one line, `if fast.enabled(): return fast...`:
the fast wing (minicam/ops/fast/pool.py) computes the same numbers in one pass per kernel
element, and runs unless a `with minicam.ops.reading_room():` block asks for the lines below it.
The loop versions that read like the definitions are in minicam.reference.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Function, Tensor
from minicam.ops import fast
from minicam.ops.linalg import matmul
from minicam.ops.reduce import mean
from minicam.ops.im2col import (
    Geometry, as_image_batch, as_pair, conv_output_size, cropped, fold_columns, padded, unfold, window_view,
)


def _pool_geometry(op, x, kernel_size, stride, padding, dilation):
    """Checked (kernel, stride, padding, dilation) pairs and the output size (OH, OW)."""
    kernel_size = as_pair(kernel_size, "kernel_size", op, 1)
    if stride is None or (isinstance(stride, (list, tuple)) and not stride):
        stride = kernel_size  # torch: stride=None (or an empty list) means stride = kernel_size
    else:
        stride = as_pair(stride, "stride", op, 1)
    padding, dilation = as_pair(padding, "padding", op, 0), as_pair(dilation, "dilation", op, 1)
    if padding[0] > kernel_size[0] // 2 or padding[1] > kernel_size[1] // 2:
        raise ValueError(
            f"{op}: padding {padding} must be at most half the kernel size {kernel_size} "
            "(torch requires padding <= kernel_size // 2 on each side); use a smaller padding"
        )
    OH = conv_output_size(x.shape[2], kernel_size[0], stride[0], padding[0], dilation[0], op=op, dim="height")
    OW = conv_output_size(x.shape[3], kernel_size[1], stride[1], padding[1], dilation[1], op=op, dim="width")
    return kernel_size, stride, padding, dilation, (OH, OW)


def _unsupported(op, ceil_mode, return_indices=False):
    if ceil_mode:
        raise NotImplementedError(f"{op}: ceil_mode=True is not supported; pad the input so that the windows fit "
                                  "(or use ceil_mode=False)")
    if return_indices:
        raise NotImplementedError(f"{op}: return_indices=True is not supported; the values only are returned")


# ----------------------------------------------------------------------------
# Max pooling
# ----------------------------------------------------------------------------


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """torch.nn.functional.max_pool2d: the largest value of every window.

    Forward:  y[n, c, oh, ow] = max_{i, j} x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
              (pixels outside the input do not take part: they are padded with -inf),
              computed as x at the element torch chooses (max_choice).
    VJP:      dx[n, c, r, s] = sum of g[n, c, oh, ow] over the windows whose chosen
              element is (r, s): each window sends its whole gradient to ONE element.
    The choice is a constant of the forward pass (like ReLU's mask), so the
    backward is linear in g and exact at every order.

    input: (N, C, H, W) or (C, H, W) -> (N, C, OH, OW) or (C, OH, OW)
    stride defaults to kernel_size; padding <= kernel_size // 2 (torch's rule).
    ceil_mode=True and return_indices=True raise NotImplementedError.
    """
    op = "max_pool2d"
    _unsupported(op, ceil_mode, return_indices)
    x, unbatched = as_image_batch(input, op)
    kernel_size, stride, (ph, pw), dilation, output_size = _pool_geometry(op, x, kernel_size, stride, padding, dilation)
    geometry = Geometry(x.shape[2:], kernel_size, stride, dilation, (ph, ph, pw, pw), output_size)
    y = MaxPool2dOp.apply(x, geometry=geometry)
    return y.reshape(y.shape[1:]) if unbatched else y


def max_choice(x, geometry):
    """The element p = i*kw + j of every window that torch's max_pool2d takes: (N, C, OH, OW) ints.

    torch's loop over the in-image elements of a window, in row-major order, is
        if value > best or isnan(value): best, choice = value, element
    so, over the window axis p:
      - ties: the FIRST maximum in row-major order (i, then j);
      - NaN counts as the maximum, and with several NaNs the LAST one is chosen;
      - a window whose in-image values are all -inf: its first in-image element
        (never a padded -inf; a window lying entirely in the padding gets element 0).

    x: (N, C, H, W)
    """
    N, C = x.shape[:2]
    (kh, kw), (OH, OW) = geometry.kernel_size, geometry.output_size
    windows = _windows(padded(x, geometry, -np.inf), geometry).reshape(N, C, OH, OW, kh * kw)
    image = np.ones((1, 1) + tuple(geometry.input_size), dtype=bool)
    inside = _windows(padded(image, geometry, False), geometry).reshape(OH, OW, kh * kw)  # in-image elements
    is_nan = np.isnan(windows)
    largest = np.where(is_nan, -np.inf, windows).max(axis=-1, keepdims=True)  # the largest number, NaN aside
    first_max = np.argmax((windows == largest) & inside, axis=-1)  # argmax of booleans: the first True
    last_nan = kh * kw - 1 - np.argmax(is_nan[..., ::-1], axis=-1)
    return np.where(is_nan.any(axis=-1), last_nan, first_max)


class MaxPool2dOp(Function):
    """y = x at the element max_choice takes in every window;  dx = WindowScatterOp(g) to that element.

    The backward makes the choice again, from the input (a graph keeps it), so that the
    fast wing's forward can take the maxima without choosing (inference never pays for it).
    x: (N, C, H, W)   y, g: (N, C, OH, OW)
    """

    @staticmethod
    def forward(ctx, x, geometry):
        if fast.enabled():
            y = fast.max_pool2d(x, geometry)
        else:
            y = _pick(padded(x, geometry, -np.inf), max_choice(x, geometry), geometry)
        ctx.save_for_backward(y, geometry)
        return y

    @staticmethod
    def backward(ctx, g):
        y, geometry = ctx.saved
        x = ctx.inputs[0].data
        choice = fast.max_pool2d_choice(x, y, geometry) if fast.enabled() else max_choice(x, geometry)
        return (WindowScatterOp.apply(g, choice=choice, geometry=geometry),)


class WindowGatherOp(Function):
    """y[n, c, oh, ow] = x at the element choice[n, c, oh, ow] of window (oh, ow) (0 if that is padding);
    dx = WindowScatterOp(g). choice (N, C, OH, OW) is a constant: p = i*kw + j, row-major in the window.

    x: (N, C, H, W)   y: (N, C, OH, OW)
    """

    @staticmethod
    def forward(ctx, x, choice, geometry):
        ctx.save_for_backward(choice, geometry)
        if fast.enabled():
            return fast.window_gather(x, choice, geometry)
        return _pick(padded(x, geometry, 0), choice, geometry)

    @staticmethod
    def backward(ctx, g):
        choice, geometry = ctx.saved
        return (WindowScatterOp.apply(g, choice=choice, geometry=geometry),)


class WindowScatterOp(Function):
    """dx = zeros (N, C, H, W) with g[n, c, oh, ow] added at the chosen element of window (oh, ow)
    (overlapping windows add up; an element in the padding is cropped off);  dg = WindowGatherOp(h).
    The adjoint of WindowGatherOp, so each is the other's backward.

    Forward: g placed at the chosen element of its window's column, then fold (col2im) and crop.
    g: (N, C, OH, OW)   dx: (N, C, H, W)
    """

    @staticmethod
    def forward(ctx, g, choice, geometry):
        ctx.save_for_backward(choice, geometry)
        if fast.enabled():
            return fast.window_scatter(g, choice, geometry)
        N, C, OH, OW = g.shape
        kh, kw = geometry.kernel_size
        chosen = choice[..., None] == np.arange(kh * kw)                # (N, C, OH, OW, kh*kw) one-hot
        columns = np.where(chosen, g[..., None], 0)  # a pick, not g * one-hot: inf * 0 would be NaN
        columns = columns.reshape(N, C, OH, OW, kh, kw).transpose(0, 1, 4, 5, 2, 3)
        return cropped(fold_columns(columns, geometry.padded_size, geometry.dilation, geometry.stride), geometry)

    @staticmethod
    def backward(ctx, h):
        choice, geometry = ctx.saved
        return (WindowGatherOp.apply(h, choice=choice, geometry=geometry),)


def _windows(xp, geometry):
    """The windows of a padded (N, C, Hp, Wp) array as a view: (N, C, OH, OW, kh, kw)."""
    return window_view(xp, geometry.kernel_size, geometry.dilation, geometry.stride)


def _pick(xp, choice, geometry):
    """xp (padded) at the element choice[n, c, oh, ow] of every window: (N, C, OH, OW)."""
    N, C, OH, OW = choice.shape
    windows = _windows(xp, geometry).reshape(N, C, OH, OW, -1)
    return np.take_along_axis(windows, choice[..., None], axis=-1)[..., 0]


# ----------------------------------------------------------------------------
# Average pooling
# ----------------------------------------------------------------------------


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """torch.nn.functional.avg_pool2d: the average of every window.

    Forward:  y[n, c, oh, ow] = (1 / D[oh, ow]) * sum_{i, j} xp[n, c, oh*sh + i, ow*sw + j]
              with xp the zero-padded input and the divisor D =
                divisor_override                 if given,
                kh*kw                            if count_include_pad (padding counts as zeros),
                the number of in-image pixels    otherwise.
    VJP:      dx = crop(fold(g / D copied to every element of its window)).

    input: (N, C, H, W) or (C, H, W) -> (N, C, OH, OW) or (C, OH, OW)
    stride defaults to kernel_size; padding <= kernel_size // 2 (torch's rule).
    ceil_mode=True raises NotImplementedError.
    """
    op = "avg_pool2d"
    _unsupported(op, ceil_mode)
    x, unbatched = as_image_batch(input, op)
    kernel_size, stride, (ph, pw), _, (OH, OW) = _pool_geometry(op, x, kernel_size, stride, padding, 1)
    N, C, H, W = x.shape
    kk = kernel_size[0] * kernel_size[1]

    windows = unfold(x, kernel_size, padding=(ph, pw), stride=stride).reshape(N, C, kk, OH, OW)
    totals = windows.sum(dim=2)  # (N, C, OH, OW)
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must not be zero")
        divisor = np.full((OH, OW), divisor_override, dtype=x.dtype)
    elif count_include_pad:
        divisor = np.full((OH, OW), kk, dtype=x.dtype)
    else:  # count the in-image pixels of every window: the window sums of an image of ones
        ones = np.ones((1, 1, H, W), dtype=x.dtype)
        divisor = unfold(ones, kernel_size, padding=(ph, pw), stride=stride).data.sum(axis=1).reshape(OH, OW)
    y = totals / Tensor(divisor)
    return y.reshape(C, OH, OW) if unbatched else y


# ----------------------------------------------------------------------------
# Adaptive average pooling (global average pooling for output size 1)
# ----------------------------------------------------------------------------


def adaptive_avg_pool2d(input, output_size):
    """torch.nn.functional.adaptive_avg_pool2d: average over OH x OW bins covering the image.

    Output row i averages input rows start(i) .. end(i)-1, with torch's bins
        start(i) = floor(i * H / OH),   end(i) = ceil((i + 1) * H / OH)
    (bins may overlap when OH does not divide H); columns likewise. So
        y[n, c] = R @ x[n, c] @ Q^T,   R[i, r] = 1 / (end(i) - start(i)) for r in bin i, else 0,
    and Q the same for the columns; VJP: dx[n, c] = R^T @ g[n, c] @ Q.

    output_size (1, 1) is global average pooling, y = mean of x over (H, W): the
    layer every CAM network ends with (Zhou et al. 2016, eq. 1-2).

    input: (N, C, H, W) or (C, H, W);  output_size: int, or a pair whose None keeps that size.
    """
    op = "adaptive_avg_pool2d"
    x, unbatched = as_image_batch(input, op)
    N, C, H, W = x.shape
    if H == 0 or W == 0:
        raise ValueError(f"{op}: the input's height and width must be non-zero, got shape {tuple(input.shape)}")
    sizes = (output_size, output_size) if output_size is None or isinstance(output_size, (int, np.integer)) else tuple(output_size)
    if len(sizes) != 2:
        raise TypeError(f"{op}: output_size must be an int or a pair (OH, OW), got {output_size!r}")
    OH, OW = (H if sizes[0] is None else sizes[0]), (W if sizes[1] is None else sizes[1])
    OH, OW = as_pair((OH, OW), "output_size", op, 0)

    if (OH, OW) == (1, 1):  # global average pooling
        y = mean(x, dim=(2, 3), keepdim=True)
    else:
        rows = Tensor(bin_averaging_matrix(H, OH).astype(x.dtype))   # (OH, H)
        cols = Tensor(bin_averaging_matrix(W, OW).T.astype(x.dtype))  # (W, OW)
        y = matmul(matmul(rows, x), cols)                      # (OH, H) @ (N, C, H, W) @ (W, OW) -> (N, C, OH, OW)
    return y.reshape(C, OH, OW) if unbatched else y


def bin_averaging_matrix(size: int, bins: int) -> np.ndarray:
    """(bins, size) float64 matrix whose row i averages torch's adaptive bin i,
    [floor(i * size / bins), ceil((i + 1) * size / bins)). interpolate's mode "area" is this too."""
    matrix = np.zeros((bins, size))
    for i in range(bins):
        start = (i * size) // bins
        end = -((-(i + 1) * size) // bins)  # ceil((i + 1) * size / bins)
        matrix[i, start:end] = 1 / (end - start)
    return matrix
