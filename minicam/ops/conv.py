"""conv2d as a composite: pad -> unfold (im2col) -> matmul -> reshape (+ bias).

No Conv2d primitive: every piece already has an exact backward (pad's is a
crop, unfold's is fold, matmul's is two matmuls), so conv2d's gradients of
every order come out of the engine. The loop version that reads like the
definition is minicam.reference.conv2d.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import as_tensor
from minicam.ops.linalg import matmul
from minicam.ops.shape import pad
from minicam.ops.im2col import as_image_batch, as_pair, conv_output_size, unfold


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d (cross-correlation, as in every deep learning library).

    Forward, with xp the zero-padded input:
        y[n, k, oh, ow] = b[k] + sum_{c, i, j} w[k, c, i, j] * xp[n, c, oh*sh + i*dh, ow*sw + j*dw]
    As matrices: X = unfold(xp): (N, C*kh*kw, OH*OW), Wm = w reshaped (K, C*kh*kw),
        Y = Wm @ X  (one product per image), reshaped to (N, K, OH, OW).
    VJP, with G = grad_output reshaped (N, K, OH*OW):
        dWm = sum_n G[n] @ X[n]^T      dX = Wm^T @ G      dx = crop(fold(dX))
        db[k] = sum_{n, oh, ow} G[n, k, oh, ow]

    input: (N, C, H, W) or (C, H, W)   weight: (K, C, kh, kw)   bias: (K,) or None
    output: (N, K, OH, OW) or (K, OH, OW), OH = floor((H + 2ph - dh(kh-1) - 1)/sh) + 1.
    stride, dilation: int or (h, w) pair.
    padding: int, (h, w) pair, "valid" (no padding) or "same" (output size = input
    size; stride 1 only; an odd total d(k-1) puts the extra row/column at the
    bottom/right, as torch does).
    groups: only 1 (grouped and depthwise convolutions are not implemented).
    """
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
    if top or bottom or left or right:
        x = pad(x, (left, right, top, bottom))

    columns = unfold(x, (kh, kw), dilation=dilation, stride=stride)  # (N, C*kh*kw, OH*OW)
    flat_weight = weight.reshape(K, C * kh * kw)                        # (K, C*kh*kw)
    y = matmul(flat_weight, columns)                                    # (K, C*kh*kw) @ (N, C*kh*kw, OH*OW) -> (N, K, OH*OW)
    y = y.reshape(N, K, OH, OW)
    if bias is not None:
        y = y + bias.reshape(1, K, 1, 1)
    return y.reshape(K, OH, OW) if unbatched else y


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
