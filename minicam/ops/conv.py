"""conv2d, twice: the composite pad -> unfold -> matmul (the readable one) and a fused primitive (the fast one).

conv2d_composite is the definition as a chain of ops that already have exact
backwards (pad's is a crop, unfold's is fold, matmul's is two matmuls), so
its gradients of every order come out of the engine. It is the slow twin,
kept and tested: tests/test_fused_ops.py checks that both agree to ~1e-12 in
float64, in the forward pass, the backward and the double backward.

conv2d (what nn.Conv2d calls) is one primitive, Conv2dOp, with two partners:

    y  = Conv2dOp(x, w) + b           y[n, k, oh, ow] = b[k] + sum_{c,i,j} w[k,c,i,j] xp[n, c, oh*sh + i*dh, ow*sw + j*dw]
    dx = ConvTranspose2dOp(g, w)      the adjoint in x: every output's g sent back through the weights
    dw = ConvWeightOp(x, g)           the adjoint in w: dw[k,c,i,j] = sum_{n,oh,ow} g[n,k,oh,ow] xp[n,c,oh*sh+i*dh, ..]

All three are bilinear, and each one's derivatives are the other two:
    <Conv2dOp(x, w), g> = <x, ConvTranspose2dOp(g, w)> = <w, ConvWeightOp(x, g)>,
so every backward below is one line of the trio, and derivatives of any order stay exact.

Why fuse? The composite materialises the unfolded input, kh*kw times larger than the
input, and keeps it alive for the backward pass. The primitives keep nothing but x and w
for the backward pass, and compute the same sums with NumPy kernels (conv_kernels.py) that
pick one of two layouts by shape: one small matrix product per kernel element on views of
the input (large maps), or channels-last columns and one large product per chunk of images
(small maps with many channels). Measured on the lesson CNN, N=32, float32, with the fused
max pooling: forward+backward went from 24 ms (composite) to 7.3 ms.
`python -m minicam bench` measures it against torch.
"""
from __future__ import annotations

from minicam.autograd import Function, as_tensor
from minicam.ops import conv_kernels as kernels
from minicam.ops.linalg import matmul
from minicam.ops.shape import pad
from minicam.ops.im2col import Geometry, as_image_batch, as_pair, conv_output_size, unfold


# ----------------------------------------------------------------------------
# Arguments and geometry, shared by both versions
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


# ----------------------------------------------------------------------------
# The functional interface
# ----------------------------------------------------------------------------


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d (cross-correlation, as in every deep learning library).

    y[n, k, oh, ow] = b[k] + sum_{c, i, j} w[k, c, i, j] * xp[n, c, oh*sh + i*dh, ow*sw + j*dw],
    xp the zero-padded input. Computed by the fused primitive Conv2dOp; conv2d_composite
    computes the same numbers as pad -> unfold -> matmul.

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


def conv2d_composite(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """conv2d as pad -> unfold -> matmul -> reshape (+ bias): the slow twin of conv2d.

    As matrices: X = unfold(xp): (N, C*kh*kw, OH*OW), Wm = w reshaped (K, C*kh*kw),
        Y = Wm @ X  (one product per image), reshaped to (N, K, OH, OW).
    VJP, with G = grad_output reshaped (N, K, OH*OW):
        dWm = sum_n G[n] @ X[n]^T      dX = Wm^T @ G      dx = crop(fold(dX))
        db[k] = sum_{n, oh, ow} G[n, k, oh, ow]
    """
    x, weight, bias, unbatched, geometry = _arguments(input, weight, bias, stride, padding, dilation, groups)
    N, C = x.shape[:2]
    K, _, kh, kw = weight.shape
    OH, OW = geometry.output_size
    top, bottom, left, right = geometry.padding
    if top or bottom or left or right:
        x = pad(x, (left, right, top, bottom))
    columns = unfold(x, (kh, kw), dilation=geometry.dilation, stride=geometry.stride)  # (N, C*kh*kw, OH*OW)
    flat_weight = weight.reshape(K, C * kh * kw)                                        # (K, C*kh*kw)
    y = matmul(flat_weight, columns)  # (K, C*kh*kw) @ (N, C*kh*kw, OH*OW) -> (N, K, OH*OW)
    y = y.reshape(N, K, OH, OW)
    if bias is not None:
        y = y + bias.reshape(1, K, 1, 1)
    return y.reshape(K, OH, OW) if unbatched else y


# ----------------------------------------------------------------------------
# The three primitives
# ----------------------------------------------------------------------------


class Conv2dOp(Function):
    """y = conv(x, w) + b;  dx = ConvTranspose2dOp(g, w),  dw = ConvWeightOp(x, g),  db[k] = sum_{n,oh,ow} g[n,k,oh,ow].

    x: (N, C, H, W)   w: (K, C, kh, kw)   b: (K,) (optional)   y, g: (N, K, OH, OW)
    """

    @staticmethod
    def forward(ctx, x, w, b=None, *, geometry):
        ctx.save_for_backward(geometry)
        return kernels.conv(x, w, b, geometry)

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

    g: (N, K, OH, OW)   w: (K, C, kh, kw)   dx: (N, C, H, W)
    """

    @staticmethod
    def forward(ctx, g, w, *, geometry):
        ctx.save_for_backward(geometry)
        return kernels.conv_transpose(g, w, geometry)

    @staticmethod
    def backward(ctx, h):
        (geometry,) = ctx.saved
        g, w = ctx.inputs
        return Conv2dOp.apply(h, w, geometry=geometry), ConvWeightOp.apply(h, g, geometry=geometry)


class ConvWeightOp(Function):
    """dw = ConvWeightOp(x, g): dw[k, c, i, j] = sum_{n, oh, ow} g[n, k, oh, ow] xp[n, c, oh*sh + i*dh, ow*sw + j*dw].
    The adjoint of Conv2dOp in w:  d(x) = ConvTranspose2dOp(g, u),  d(g) = Conv2dOp(x, u)  for the covector u.

    x: (N, C, H, W)   g: (N, K, OH, OW)   dw: (K, C, kh, kw)
    """

    @staticmethod
    def forward(ctx, x, g, *, geometry):
        ctx.save_for_backward(geometry)
        return kernels.conv_weight(x, g, geometry)

    @staticmethod
    def backward(ctx, u):
        (geometry,) = ctx.saved
        x, g = ctx.inputs
        return ConvTranspose2dOp.apply(g, u, geometry=geometry), Conv2dOp.apply(x, u, geometry=geometry)
