"""unfold (im2col) and fold (col2im), and the window geometry that conv2d and the pools share.

`UnfoldOp` copies every kh x kw window of an image into a column; `FoldOp` adds
every column back into its window. Each is the other's adjoint (transpose):

    <unfold(x), y> = <x, fold(y)>   for all x, y,

so each is the other's backward, and derivatives of any order are exact.
A convolution is pad -> unfold -> matmul and a pool is pad -> unfold -> max or mean;
conv.py and pool.py write their primitives' forwards with the two NumPy steps below,
window_view (unfold without the copy) and fold_columns (col2im).

Window geometry, shared by everything here (torch's definitions):
    kernel element (i, j) of the window at output position (oh, ow) reads
    input pixel (oh*sh + i*dh, ow*sw + j*dw) of the (padded) input;
    OH = floor((H + 2*ph - dh*(kh-1) - 1) / sh) + 1   (conv_output_size), OW likewise.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minicam.autograd import Function, Tensor, as_tensor
from minicam.ops.shape import index, pad


# ----------------------------------------------------------------------------
# Geometry and argument checking, shared with conv.py and pool.py (and read by the fast wing)
# ----------------------------------------------------------------------------


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                     *, op: str = "conv_output_size", dim: str = "size") -> int:
    """The number of window positions along one axis: floor((size + 2p - d(k-1) - 1)/s) + 1.

    The one formula for conv2d, unfold, fold and the pools (torch's, with
    ceil_mode=False). A window spans d(k-1)+1 pixels; it must fit in the padded
    input at least once, otherwise the output would be empty and this raises.
    `op` and `dim` ("height", "width") only name the caller in the error.
    """
    span = dilation * (kernel_size - 1) + 1
    padded = size + 2 * padding
    if padded < span:
        raise ValueError(
            f"{op}: the kernel {dim} {kernel_size} (dilation {dilation}, so it spans {span} pixels) is larger "
            f"than the padded input {dim} {size} + 2*{padding} = {padded}: the output would be empty; "
            "use a larger input, a smaller kernel_size or dilation, or more padding"
        )
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


class Geometry(NamedTuple):
    """Everything about a sliding-window op (conv2d, a pool) except the numbers, with the shared letters."""

    input_size: tuple   # (H, W)
    kernel_size: tuple  # (kh, kw)
    stride: tuple       # (sh, sw)
    dilation: tuple     # (dh, dw)
    padding: tuple      # (top, bottom, left, right)
    output_size: tuple  # (OH, OW)

    @property
    def padded_size(self):
        (H, W), (top, bottom, left, right) = self.input_size, self.padding
        return H + top + bottom, W + left + right


def as_pair(value, name: str, op: str, minimum: int) -> tuple[int, int]:
    """torch's int-or-pair argument (kernel_size=3 means (3, 3)) as a checked (height, width) pair.

    The one such check for ops and nn (minicam.ops.as_pair); `op` names the caller in the error.
    """
    if isinstance(value, (int, np.integer)):
        pair = (value, value)
    elif isinstance(value, (tuple, list)):
        pair = tuple(value)
    else:
        pair = ()  # anything else (a float, a string, an array) is refused below
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints (height, width), got {value!r}")
    if min(pair) < minimum:
        bound = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{op}: {name} must be {bound}, got {value!r}")
    return int(pair[0]), int(pair[1])


def as_image_batch(input, op: str) -> tuple[Tensor, bool]:
    """Return (a 4-D (N, C, H, W) tensor, whether the input was one unbatched (C, H, W) image).

    torch accepts both forms for conv2d, the pools and unfold; the unbatched
    one is treated as a batch of one and the batch axis removed afterwards.
    """
    input = as_tensor(input)
    if input.ndim == 3:
        return input.reshape(1, *input.shape), True
    if input.ndim != 4:
        raise ValueError(
            f"{op}: expected a 4-D (N, C, H, W) batch or a 3-D (C, H, W) image, got shape {input.shape}"
        )
    return input, False


# ----------------------------------------------------------------------------
# The windows in NumPy: unfold without the copy, and col2im (conv.py and pool.py use them too)
# ----------------------------------------------------------------------------


def padded(x, geometry, value=0.0):
    """x (N, C, H, W) with the geometry's padding filled with `value`: (N, C, Hp, Wp)."""
    top, bottom, left, right = geometry.padding
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=value)


def cropped(padded_image, geometry):
    """The inverse of `padded`: the (N, C, H, W) image part of a padded (N, C, Hp, Wp) array."""
    (H, W), (top, _, left, _) = geometry.input_size, geometry.padding
    return np.ascontiguousarray(padded_image[:, :, top : top + H, left : left + W])


def window_view(x, kernel_size, dilation, stride):
    """Every window of x (N, C, H, W) as a view: (N, C, OH, OW, kh, kw), no copy,
        windows[n, c, oh, ow, i, j] = x[n, c, oh*sh + i*dh, ow*sw + j*dw].

    sliding_window_view gives every span_h x span_w block of the image,
      blocks[n, c, a, b, u, v] = x[n, c, a + u, b + v]    (a view: strides (.., sH, sW, sH, sW));
    keeping every sh-th top-left corner a and every dh-th element u of a block gives the
    windows, with H - span_h + 1 corners thinned to ceil((H - span_h + 1)/sh) = OH of them.
    """
    (kh, kw), (dh, dw), (sh, sw) = kernel_size, dilation, stride
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    blocks = np.lib.stride_tricks.sliding_window_view(x, (span_h, span_w), axis=(2, 3))
    return blocks[:, :, ::sh, ::sw, ::dh, ::dw]


def fold_columns(columns, size, dilation, stride):
    """col2im, the adjoint of window_view: y[n, c, oh*sh + i*dh, ow*sw + j*dw] += columns[n, c, i, j, oh, ow].

    columns: (N, C, kh, kw, OH, OW)  ->  y: (N, C, H, W) with (H, W) = size.
    One strided += per kernel element (i, j), touching rows i*dh, i*dh + sh, ..., i*dh + sh*(OH-1)
    and the matching columns: where windows overlap (stride < span), their contributions add up,
    element (0, 0) first. (kh*kw slices of whole arrays, not a loop over windows: NumPy's speed.)
    """
    N, C, kh, kw, OH, OW = columns.shape
    (dh, dw), (sh, sw) = dilation, stride
    y = np.zeros((N, C) + tuple(size), dtype=columns.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (OH - 1) + 1, sh)
            cols = slice(j * dw, j * dw + sw * (OW - 1) + 1, sw)
            y[:, :, rows, cols] += columns[:, :, i, j]
    return y


# ----------------------------------------------------------------------------
# The two primitives
# ----------------------------------------------------------------------------


class UnfoldOp(Function):
    """im2col: y[n, (c, i, j), (oh, ow)] = x[n, c, oh*sh + i*dh, ow*sw + j*dw];  dx = fold(g).

    x: (N, C, H, W), already padded   y: (N, C*kh*kw, OH*OW)
    Rows of y go channel first, then kernel row i, then kernel column j, as in torch.
    """

    @staticmethod
    def forward(ctx, x, kernel_size, dilation, stride):
        (kh, kw), (N, C, H, W) = kernel_size, x.shape
        ctx.save_for_backward((H, W), kernel_size, dilation, stride)
        windows = window_view(x, kernel_size, dilation, stride)  # (N, C, OH, OW, kh, kw), a view
        OH, OW = windows.shape[2:4]
        columns = np.empty((N, C, kh, kw, OH, OW), dtype=x.dtype)  # a fresh array, never a view of x
        columns[...] = windows.transpose(0, 1, 4, 5, 2, 3)
        return columns.reshape(N, C * kh * kw, OH * OW)

    @staticmethod
    def backward(ctx, g):
        size, kernel_size, dilation, stride = ctx.saved
        return (FoldOp.apply(g, output_size=size, kernel_size=kernel_size, dilation=dilation, stride=stride),)


class FoldOp(Function):
    """col2im: y[n, c, oh*sh + i*dh, ow*sw + j*dw] += x[n, (c, i, j), (oh, ow)];  dx = unfold(g).

    x: (N, C*kh*kw, OH*OW)   y: (N, C, H, W) with (H, W) = output_size (padded size)
    Where windows overlap (stride < span), their contributions add up.
    """

    @staticmethod
    def forward(ctx, x, output_size, kernel_size, dilation, stride):
        (H, W), (kh, kw), (dh, dw), (sh, sw) = output_size, kernel_size, dilation, stride
        ctx.save_for_backward(kernel_size, dilation, stride)
        N, C = x.shape[0], x.shape[1] // (kh * kw)
        OH, OW = conv_output_size(H, kh, sh, 0, dh), conv_output_size(W, kw, sw, 0, dw)
        return fold_columns(x.reshape(N, C, kh, kw, OH, OW), (H, W), dilation, stride)

    @staticmethod
    def backward(ctx, g):
        kernel_size, dilation, stride = ctx.saved
        return (UnfoldOp.apply(g, kernel_size=kernel_size, dilation=dilation, stride=stride),)


# ----------------------------------------------------------------------------
# Functional interface (torch.nn.functional names and arguments)
# ----------------------------------------------------------------------------


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """torch.nn.functional.unfold: every sliding block of the zero-padded input as a column.

    input: (N, C, H, W) or (C, H, W)   ->   (N, C*kh*kw, OH*OW) or (C*kh*kw, OH*OW)
    """
    op = "unfold"
    x, unbatched = as_image_batch(input, op)
    kernel_size = as_pair(kernel_size, "kernel_size", op, 1)
    dilation, stride = as_pair(dilation, "dilation", op, 1), as_pair(stride, "stride", op, 1)
    (ph, pw) = as_pair(padding, "padding", op, 0)
    for axis, dim, p in ((0, "height", ph), (1, "width", pw)):  # raises a clear error if a size would be 0
        conv_output_size(x.shape[2 + axis], kernel_size[axis], stride[axis], p, dilation[axis], op=op, dim=dim)
    if ph or pw:
        x = pad(x, (pw, pw, ph, ph))
    columns = UnfoldOp.apply(x, kernel_size=kernel_size, dilation=dilation, stride=stride)
    return columns.reshape(columns.shape[1:]) if unbatched else columns


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """torch.nn.functional.fold: add columns back into an image of size output_size (overlaps add).

    input: (N, C*kh*kw, L) or (C*kh*kw, L), with L = OH*OW the number of windows
    in the padded output   ->   (N, C, H, W) or (C, H, W), (H, W) = output_size.
    The padding is cropped off at the end (the adjoint of unfold's zero padding).
    """
    op = "fold"
    input = as_tensor(input)
    unbatched = input.ndim == 2
    if input.ndim not in (2, 3):
        raise ValueError(f"{op}: expected a 3-D (N, C*kh*kw, L) or 2-D (C*kh*kw, L) input, got shape {input.shape}")
    x = input.reshape(1, *input.shape) if unbatched else input
    (H, W) = as_pair(output_size, "output_size", op, 1)
    (kh, kw) = as_pair(kernel_size, "kernel_size", op, 1)
    (dh, dw), (sh, sw) = as_pair(dilation, "dilation", op, 1), as_pair(stride, "stride", op, 1)
    (ph, pw) = as_pair(padding, "padding", op, 0)
    if x.shape[1] % (kh * kw):
        raise ValueError(
            f"{op}: the input's dimension 1 ({x.shape[1]}, shape {input.shape}) must be C*kh*kw, "
            f"a multiple of kh*kw = {kh}*{kw} = {kh * kw}"
        )
    OH = conv_output_size(H, kh, sh, ph, dh, op=op, dim="height")
    OW = conv_output_size(W, kw, sw, pw, dw, op=op, dim="width")
    if x.shape[2] != OH * OW:
        raise ValueError(
            f"{op}: output_size {(H, W)} with kernel_size {(kh, kw)}, dilation {(dh, dw)}, padding {(ph, pw)} "
            f"and stride {(sh, sw)} has {OH}*{OW} = {OH * OW} windows, but the input (shape {input.shape}) "
            f"has L = {x.shape[2]} columns"
        )
    y = FoldOp.apply(x, output_size=(H + 2 * ph, W + 2 * pw), kernel_size=(kh, kw), dilation=(dh, dw), stride=(sh, sw))
    if ph or pw:
        y = index(y, (slice(None), slice(None), slice(ph, ph + H), slice(pw, pw + W)))
    return y.reshape(y.shape[1:]) if unbatched else y
