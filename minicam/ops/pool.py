"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d.

    max pool      = the primitive MaxPool2dOp: torch's choice of one element per window, found
                    by one pass per kernel element; its slow twin max_pool2d_composite is
                    pad with -inf -> unfold -> pick one element per window
    average pool  = pad with 0    -> unfold -> sum per window / divisor
    adaptive avg  = mean over (H, W) for output size 1 (global average pooling, the
                    star of CAM), else  rows @ x @ cols^T  with averaging matrices

The loop versions that read like the definitions are in minicam.reference.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Function, Tensor
from minicam.ops.linalg import matmul
from minicam.ops.reduce import mean
from minicam.ops.shape import IndexOp, pad
from minicam.ops.im2col import Geometry, as_image_batch, as_pair, conv_output_size, unfold, window_element


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
              (pixels outside the input do not take part: they are padded with -inf)
    VJP:      dx[n, c, r, s] = sum of g[n, c, oh, ow] over the windows whose chosen
              element is (r, s): each window sends its whole gradient to ONE element.

    Which element, exactly as torch's loop (`if value > best or isnan(value)` over
    the in-image positions in row-major order):
      - ties: the FIRST maximum in row-major order (i, then j);
      - NaN counts as the maximum, and with several NaNs the LAST one is chosen;
      - a window whose in-image values are all -inf: its first in-image element.
    The choice is a constant of the forward pass (like ReLU's mask), so the
    backward is linear in g and exact at every order.

    Computed by the primitive MaxPool2dOp (one pass per kernel element over strided
    views, no copies of the windows, and the choice made only if a backward pass
    asks for it); max_pool2d_composite computes the same
    numbers as pad -> unfold -> pick, and is its tested slow twin.

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


class MaxPool2dOp(Function):
    """y = the maximum of every window;  dx = WindowScatterOp(g) at the element torch chooses.

    The forward pass only takes maxima. Which element of a window holds its maximum is
    needed only by the backward pass, so it is found there, from the input and the
    output (a graph keeps both): a forward pass whose backward never comes (inference,
    or the layers below the one a CAM explains) does not pay for it.

    x: (N, C, H, W)   y, g: (N, C, OH, OW)
    """

    @staticmethod
    def forward(ctx, x, geometry):
        padded = _padded(x, geometry, -np.inf)
        values = _max_values([window_element(padded, i, j, geometry) for i, j in _elements(geometry)])
        ctx.save_for_backward(values, geometry)
        return values

    @staticmethod
    def backward(ctx, g):
        values, geometry = ctx.saved
        (x,) = ctx.inputs
        choice = _torch_max_choice(_padded(x.data, geometry, -np.inf), values, geometry)
        return (WindowScatterOp.apply(g, choice=choice, geometry=geometry),)


class WindowGatherOp(Function):
    """y[n, c, oh, ow] = x at the element choice[n, c, oh, ow] of window (oh, ow) (0 if that is padding);
    dx = WindowScatterOp(g). choice (N, C, OH, OW) is a constant: p = i*kw + j, row-major in the window.

    x: (N, C, H, W)   y: (N, C, OH, OW)
    """

    @staticmethod
    def forward(ctx, x, choice, geometry):
        ctx.save_for_backward(choice, geometry)
        padded = _padded(x, geometry, 0)
        y = np.zeros(choice.shape, dtype=x.dtype)
        for p, (i, j) in enumerate(_elements(geometry)):  # a pick, not x * mask: inf * 0 would be NaN
            np.copyto(y, window_element(padded, i, j, geometry), where=choice == p)
        return y

    @staticmethod
    def backward(ctx, g):
        choice, geometry = ctx.saved
        return (WindowScatterOp.apply(g, choice=choice, geometry=geometry),)


class WindowScatterOp(Function):
    """dx = zeros (N, C, H, W) with g[n, c, oh, ow] added at the chosen element of window (oh, ow)
    (overlapping windows add up; an element in the padding is cropped off);  dg = WindowGatherOp(h).
    The adjoint of WindowGatherOp, so each is the other's backward.

    g: (N, C, OH, OW)   dx: (N, C, H, W)
    """

    @staticmethod
    def forward(ctx, g, choice, geometry):
        ctx.save_for_backward(choice, geometry)
        (Hp, Wp), (top, _, left, _), (H, W) = geometry.padded_size, geometry.padding, geometry.input_size
        padded = np.zeros(g.shape[:2] + (Hp, Wp), dtype=g.dtype)
        overlap, finite = _windows_overlap(geometry), np.isfinite(g).all()
        chosen = np.empty(choice.shape, dtype=bool)
        for p, (i, j) in enumerate(_elements(geometry)):
            target = window_element(padded, i, j, geometry)
            np.equal(choice, p, out=chosen)
            if not finite:  # g times a 0/1 mask would turn inf * 0 into NaN: pick instead
                target += np.where(chosen, g, 0)
            elif overlap:  # a pixel can be chosen by several windows: add
                target += g * chosen
            else:  # each pixel is an element of at most one window: write g * mask straight into it
                np.multiply(g, chosen, out=target)
        return np.ascontiguousarray(padded[:, :, top : top + H, left : left + W])

    @staticmethod
    def backward(ctx, h):
        choice, geometry = ctx.saved
        return (WindowGatherOp.apply(h, choice=choice, geometry=geometry),)


def _elements(geometry):
    """The kernel elements (i, j) in row-major order: element p is (p // kw, p % kw)."""
    kh, kw = geometry.kernel_size
    return [(i, j) for i in range(kh) for j in range(kw)]


def _windows_overlap(geometry):
    """Whether some pixel lies in two windows: a stride shorter than the span d*(k-1)+1 of the window."""
    return any(s < d * (k - 1) + 1 for s, d, k in zip(geometry.stride, geometry.dilation, geometry.kernel_size))


def _padded(x, geometry, value):
    """x with the geometry's padding filled with `value` (x itself when there is none)."""
    (Hp, Wp), (top, _, left, _), (H, W) = geometry.padded_size, geometry.padding, geometry.input_size
    if (Hp, Wp) == (H, W):
        return x
    padded = np.full(x.shape[:2] + (Hp, Wp), value, dtype=x.dtype)
    padded[:, :, top : top + H, left : left + W] = x
    return padded


def _torch_max_choice(padded, values, geometry):
    """The element (p = i*kw + j) torch's max_pool2d picks in every window whose maximum is `values`.

    torch's loop over the in-image elements of a window, in row-major order, is
        if value > best or isnan(value): best, choice = value, element
    so it picks the FIRST maximal element, the LAST NaN, and an all -inf window's
    first in-image element. Here, for all windows at once, one kernel element at a time:
      choice = the first element equal to the maximum: elements in reverse order, each
               one overwriting the choice where it equals the maximum (padding is -inf,
               so it never equals a finite maximum);
    and two rare cases fixed afterwards, each only when the input has one:
      an all -inf window: its first in-image element (not a padded -inf);
      a window with NaN (its maximum is NaN): the last NaN (NaN equals nothing).
    (`choice += is_max * (p - choice)` is `choice = p where is_max`, in unsigned arithmetic
    modulo 2^bits, which is exact: np.where and np.copyto(where=) are several times slower.)

    padded: (N, C, Hp, Wp), -inf in the padding;  values and choice: (N, C, OH, OW).
    """
    elements = [window_element(padded, i, j, geometry) for i, j in _elements(geometry)]
    choice = np.zeros(values.shape, dtype=np.min_scalar_type(len(elements) - 1))
    is_max, step = np.empty(values.shape, dtype=bool), np.empty_like(choice)
    for p in range(len(elements) - 1, -1, -1):
        np.equal(elements[p], values, out=is_max)
        np.subtract(choice.dtype.type(p), choice, out=step)
        np.multiply(step, is_max, out=step)
        choice += step
    all_minus_inf = values == -np.inf
    if all_minus_inf.any():
        choice[all_minus_inf] = np.broadcast_to(_first_inside(geometry), values.shape)[all_minus_inf]
    if np.isnan(values).any():
        for p, candidate in enumerate(elements):
            choice[np.isnan(candidate)] = p  # in order, so the last NaN stays
    return choice


def _max_values(elements):
    """The element-wise maximum of the (N, C, OH, OW) views, NaN wherever one of them is NaN."""
    values = elements[0].copy()
    for candidate in elements[1:]:
        np.maximum(values, candidate, out=values)
    return values


def _first_inside(geometry):
    """(OH, OW) array: the first in-image element p = i*kw + j of each window, in row-major
    order (0 for a window lying entirely in the padding, whose value is then -inf)."""
    (H, W), (kh, kw), (OH, OW) = geometry.input_size, geometry.kernel_size, geometry.output_size
    (sh, sw), (dh, dw), (top, _, left, _) = geometry.stride, geometry.dilation, geometry.padding
    rows = np.arange(OH)[:, None] * sh - top + np.arange(kh)[None, :] * dh  # (OH, kh): image row of element i
    cols = np.arange(OW)[:, None] * sw - left + np.arange(kw)[None, :] * dw
    first_i = np.argmax((rows >= 0) & (rows < H), axis=1)  # argmax of booleans: the first True (0 if none)
    first_j = np.argmax((cols >= 0) & (cols < W), axis=1)
    return first_i[:, None] * kw + first_j[None, :]


def max_pool2d_composite(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                         return_indices=False):
    """max_pool2d as pad with -inf -> unfold -> pick one element per window: the slow twin
    of max_pool2d (same arguments, same numbers, same tie and NaN rules)."""
    op = "max_pool2d"
    _unsupported(op, ceil_mode, return_indices)
    x, unbatched = as_image_batch(input, op)
    kernel_size, stride, (ph, pw), dilation, (OH, OW) = _pool_geometry(op, x, kernel_size, stride, padding, dilation)
    N, C, H, W = x.shape
    kk = kernel_size[0] * kernel_size[1]

    padded = pad(x, (pw, pw, ph, ph), value=-np.inf) if ph or pw else x
    windows = unfold(padded, kernel_size, dilation=dilation, stride=stride).reshape(N, C, kk, OH * OW)
    # Which window positions lie inside the input: unfold an image of ones padded with zeros.
    inside = np.pad(np.ones((1, 1, H, W), dtype=x.dtype), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    inside = unfold(inside, kernel_size, dilation=dilation, stride=stride).data.reshape(kk, OH * OW) > 0

    # Not ops.max over the window axis: that picks the FIRST NaN, and could pick a padded
    # -inf in an all -inf window, where torch picks the last NaN and never a padded pixel.
    choice = _composite_choice(windows.data, inside)  # (N, C, OH*OW): window position 0..kk-1
    n, c, window = np.ogrid[:N, :C, :OH * OW]
    y = IndexOp.apply(windows, index=(n, c, choice, window)).reshape(N, C, OH, OW)  # gather; its backward scatters g back
    return y.reshape(C, OH, OW) if unbatched else y


def _composite_choice(windows: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The position (0..kk-1, row-major in the window) that torch's max_pool2d picks.

    windows: (N, C, kk, L) values (-inf where padded);  inside: (kk, L) booleans.
    """
    is_nan = np.isnan(windows)
    ordinary = np.where(is_nan, -np.inf, windows)
    is_max = (ordinary == ordinary.max(axis=2, keepdims=True)) & inside
    first_max = np.argmax(is_max, axis=2)  # argmax of booleans = the first True
    if not is_nan.any():
        return first_max
    last_nan = windows.shape[2] - 1 - np.argmax(is_nan[:, :, ::-1], axis=2)
    return np.where(is_nan.any(axis=2), last_nan, first_max)


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
