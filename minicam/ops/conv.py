"""conv2d: three primitives, each the others' adjoint, each read here in a few lines of NumPy.

With xp the zero-padded input (N, C, Hp, Wp), x (N, C, H, W), w (K, C, kh, kw), g (N, K, OH, OW):

    y  = Conv2dOp(x, w) + b           y[n, k, oh, ow] = b[k] + sum_{c,i,j} w[k,c,i,j] xp[n, c, oh*sh + i*dh, ow*sw + j*dw]
    dx = ConvTranspose2dOp(g, w)      the adjoint in x: every output's g sent back through the weights
    dw = ConvWeightOp(x, g)           the adjoint in w: dw[k,c,i,j] = sum_{n,oh,ow} g[n,k,oh,ow] xp[n,c,oh*sh+i*dh, ..]

As matrices (lesson 02): with X = unfold(xp), the windows as columns (N, C*kh*kw, OH*OW), and
Wm = w as a (K, C*kh*kw) matrix, the forward is Y = Wm @ X, the VJP in w is G @ X^T summed over
the images, and the VJP in x is crop(fold(Wm^T @ G)). Each forward below is that product,
written as an einsum over window_view(xp, ...) (the windows of xp, (N, C, OH, OW, kh, kw), as a
view: unfold without the copy); ConvTranspose2dOp adds its columns back with fold_columns
(col2im) and crops the padding off (padded and cropped are the two halves of the padding).

All three are bilinear, and each one's derivatives are the other two:
    <Conv2dOp(x, w), g> = <x, ConvTranspose2dOp(g, w)> = <w, ConvWeightOp(x, g)>,
so every backward below is one line of the trio, and derivatives of any order stay exact.

Each forward starts with one line, `if fast.enabled(): return fast...`: the fast wing
(minicam/ops/fast/conv.py) computes the same sums with tuned layouts, and runs unless a
`with minicam.ops.reading_room():` block asks for the lines below it.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Function, as_tensor
from minicam.ops import fast
from minicam.ops.im2col import Geometry, as_image_batch, as_pair, conv_output_size, cropped, fold_columns, padded, window_view


# ----------------------------------------------------------------------------
# The functional interface
# ----------------------------------------------------------------------------


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d (cross-correlation, as in every deep learning library).

    y[n, k, oh, ow] = b[k] + sum_{c, i, j} w[k, c, i, j] * xp[n, c, oh*sh + i*dh, ow*sw + j*dw],
    xp the zero-padded input: the primitive Conv2dOp below.

    input: (N, C, H, W) or (C, H, W)   weight: (K, C, kh, kw)   bias: (K,) or None
    output: (N, K, OH, OW) or (K, OH, OW), OH = floor((H + 2ph - dh(kh-1) - 1)/sh) + 1.
    stride, dilation: int or (h, w) pair.
    padding: int, (h, w) pair, "valid" (no padding) or "same" (output size = input
    size; stride 1 only; an odd total d(k-1) puts the extra row/column at the
    bottom/right, as torch does).
    groups: only 1 (grouped and depthwise convolutions are not implemented).
    """
    x, weight, bias, unbatched, geometry = _arguments(input, weight, bias, stride, padding, dilation, groups)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    y = Conv2dOp.apply(*inputs, geometry=geometry)
    return y.reshape(y.shape[1:]) if unbatched else y


# ----------------------------------------------------------------------------
# The three primitives
# ----------------------------------------------------------------------------


class Conv2dOp(Function):
    """y = conv(x, w) + b;  dx = ConvTranspose2dOp(g, w),  dw = ConvWeightOp(x, g),  db[k] = sum_{n,oh,ow} g[n,k,oh,ow].

    Forward: unfold -> matmul, y[n, k, oh, ow] = sum_{c,i,j} windows[n, c, oh, ow, i, j] w[k, c, i, j] (+ b[k]).
    x: (N, C, H, W)   w: (K, C, kh, kw)   b: (K,) (optional)   y, g: (N, K, OH, OW)
    """

    @staticmethod
    def forward(ctx, x, w, b=None, *, geometry):
        ctx.save_for_backward(geometry)
        if fast.enabled():
            return fast.conv2d(x, w, b, geometry)
        windows = window_view(padded(x, geometry), geometry.kernel_size, geometry.dilation, geometry.stride)
        y = np.einsum("nchwij,kcij->nkhw", windows, w, optimize=True)  # h, w here: the output position (oh, ow)
        return y if b is None else y + b.reshape(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, g):
        (geometry,) = ctx.saved
        x, w = ctx.inputs[:2]
        grads = (ConvTranspose2dOp.apply(g, w, geometry=geometry), ConvWeightOp.apply(x, g, geometry=geometry))
        if len(ctx.inputs) == 3:
            grads += (g.sum(dim=(0, 2, 3)),)
        return grads


class ConvTranspose2dOp(Function):
    """dx = ConvTranspose2dOp(g, w): dx[n, c, r, s] = sum of w[k, c, i, j] g[n, k, oh, ow] over every
    (k, i, j, oh, ow) whose window element lands on padded pixel (r, s) (the padding is cropped off).
    The adjoint of Conv2dOp in x:  d(g) = Conv2dOp(h, w),  d(w) = ConvWeightOp(h, g)  for the covector h.

    Forward: matmul^T -> fold -> crop: columns[n, c, i, j, oh, ow] = sum_k w[k, c, i, j] g[n, k, oh, ow],
    each added back to the pixel its window element read (fold_columns), the padding cropped.
    g: (N, K, OH, OW)   w: (K, C, kh, kw)   dx: (N, C, H, W)
    """

    @staticmethod
    def forward(ctx, g, w, *, geometry):
        ctx.save_for_backward(geometry)
        if fast.enabled():
            return fast.conv_transpose2d(g, w, geometry)
        columns = np.einsum("kcij,nkhw->ncijhw", w, g, optimize=True)
        return cropped(fold_columns(columns, geometry.padded_size, geometry.dilation, geometry.stride), geometry)

    @staticmethod
    def backward(ctx, h):
        (geometry,) = ctx.saved
        g, w = ctx.inputs
        return Conv2dOp.apply(h, w, geometry=geometry), ConvWeightOp.apply(h, g, geometry=geometry)


class ConvWeightOp(Function):
    """dw = ConvWeightOp(x, g): dw[k, c, i, j] = sum_{n, oh, ow} g[n, k, oh, ow] xp[n, c, oh*sh + i*dh, ow*sw + j*dw].
    The adjoint of Conv2dOp in w:  d(x) = ConvTranspose2dOp(g, u),  d(g) = Conv2dOp(x, u)  for the covector u.

    Forward: G @ X^T summed over the images, dw[k, c, i, j] = sum_{n,oh,ow} g[n, k, oh, ow] windows[n, c, oh, ow, i, j].
    x: (N, C, H, W)   g: (N, K, OH, OW)   dw: (K, C, kh, kw)
    """

    @staticmethod
    def forward(ctx, x, g, *, geometry):
        ctx.save_for_backward(geometry)
        if fast.enabled():
            return fast.conv_weight(x, g, geometry)
        windows = window_view(padded(x, geometry), geometry.kernel_size, geometry.dilation, geometry.stride)
        return np.einsum("nchwij,nkhw->kcij", windows, g, optimize=True)

    @staticmethod
    def backward(ctx, u):
        (geometry,) = ctx.saved
        x, g = ctx.inputs
        return ConvTranspose2dOp.apply(g, u, geometry=geometry), Conv2dOp.apply(x, u, geometry=geometry)


# ----------------------------------------------------------------------------
# Arguments and geometry
# ----------------------------------------------------------------------------


def _arguments(input, weight, bias, stride, padding, dilation, groups):
    """Check conv2d's arguments as torch does; return (x (N, C, H, W), weight, bias, unbatched, Geometry)."""
    op = "conv2d"
    if groups != 1:
        raise NotImplementedError(
            f"{op}: groups={groups} is not supported, only groups=1; for a grouped convolution, "
            "split the channels, convolve each group and concatenate (ops.cat)"
        )
    x, unbatched = as_image_batch(input, op)
    weight = as_tensor(weight)
    if weight.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D (K, C, kh, kw), got shape {weight.shape}")
    N, C, H, W = x.shape
    K, weight_channels, kh, kw = weight.shape
    if min(weight.shape) == 0:
        raise ValueError(f"{op}: the weight (K, C, kh, kw) = {weight.shape} has a dimension of size 0; a convolution "
                         "needs at least one filter, one channel and a kernel of at least 1 x 1")
    if C != weight_channels:
        raise ValueError(
            f"{op}: the input has C = {C} channels (shape {tuple(input.shape)}) but the weight "
            f"(K, C, kh, kw) = {weight.shape} expects C = {weight_channels}"
        )
    if bias is not None:
        bias = as_tensor(bias)
        if bias.shape != (K,):
            raise ValueError(f"{op}: bias must have shape (K,) = ({K},) for weight {weight.shape}, got {bias.shape}")
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is not None and tensor.dtype != x.dtype:
            raise TypeError(f"{op}: input is {x.dtype} but {name} is {tensor.dtype}; convert one so that they match "
                            f"(e.g. {name}.to(np.{x.dtype}))")
    stride, dilation = as_pair(stride, "stride", op, 1), as_pair(dilation, "dilation", op, 1)

    top, bottom, left, right = _padding_widths(padding, (kh, kw), stride, dilation, op)
    if padding == "same":
        OH, OW = H, W  # what 'same' means
    else:  # symmetric padding: the shared formula (and its error if the kernel does not fit)
        OH = conv_output_size(H, kh, stride[0], top, dilation[0], op=op, dim="height")
        OW = conv_output_size(W, kw, stride[1], left, dilation[1], op=op, dim="width")
    geometry = Geometry((H, W), (kh, kw), stride, dilation, (top, bottom, left, right), (OH, OW))
    return x, weight, bias, unbatched, geometry


def _padding_widths(padding, kernel_size, stride, dilation, op):
    """(top, bottom, left, right) zero padding from torch's `padding` argument."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding != "same":
            raise ValueError(f"{op}: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"{op}: padding='same' needs stride 1 (torch refuses it for strided convolutions), "
                             f"got stride {stride}; give the padding as numbers instead")
        # Output size = input size needs d(k-1) padding in total; torch puts the extra
        # pixel of an odd total at the end (bottom / right).
        total_h, total_w = (d * (k - 1) for d, k in zip(dilation, kernel_size))
        return total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2
    ph, pw = as_pair(padding, "padding", op, 0)
    return ph, ph, pw, pw
