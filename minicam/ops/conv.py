"""conv2d, twice: the composite pad -> unfold -> matmul (the readable one) and a fused primitive (the fast one).

conv2d_composite is the definition as a chain of ops that already have exact
backwards (pad's is a crop, unfold's is fold, matmul's is two matmuls), so
its gradients of every order come out of the engine. It is the slow twin,
kept and tested: tests/test_fused_ops.py checks that both agree to ~1e-12 in
float64, in the forward pass, the backward and the double backward.

conv2d (what nn.Conv2d calls) is one primitive, Conv2d, with two partners:

    y  = Conv2d(x, w) + b           y[n, k, oh, ow] = b[k] + sum_{c,i,j} w[k,c,i,j] xp[n, c, oh*sh + i*dh, ow*sw + j*dw]
    dx = ConvTranspose2d(g, w)      the adjoint in x: every output's g sent back through the weights
    dw = ConvWeight(x, g)           the adjoint in w: dw[k,c,i,j] = sum_{n,oh,ow} g[n,k,oh,ow] xp[n,c,oh*sh+i*dh, ..]

All three are bilinear, and each one's derivatives are the other two:
    <Conv2d(x, w), g> = <x, ConvTranspose2d(g, w)> = <w, ConvWeight(x, g)>,
so every backward below is one line of the trio, and derivatives of any order stay exact.

Why fuse? The composite materialises the unfolded input, kh*kw times larger than the
input, and keeps it alive for the backward pass. The primitives compute the same sums
one kernel element (i, j) at a time (see _Taps): nine small matrix products for a 3x3
kernel, each reading the input in place, so nothing but x and w is kept for the backward
pass, and nothing larger than the input is allocated. Measured on the convolutions of the
lesson CNN and of resnet18 (width 16), N=32, interleaved with the composite: forward
1.1-1.3x faster, forward+backward 1.2x (float32) and 1.9x (float64) faster; on the whole
lesson CNN, with the fused max pooling, forward+backward went from 24 to 7.3 ms (float32).
`python -m minicam bench` measures it against torch.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Function, as_tensor
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
    xp the zero-padded input. Computed by the fused primitive Conv2d; conv2d_composite
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
    y = Conv2d.apply(*inputs, geometry=geometry)
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


class Conv2d(Function):
    """y = conv(x, w) + b;  dx = ConvTranspose2d(g, w),  dw = ConvWeight(x, g),  db[k] = sum_{n,oh,ow} g[n,k,oh,ow].

    x: (N, C, H, W)   w: (K, C, kh, kw)   b: (K,) (optional)   y, g: (N, K, OH, OW)
    """

    @staticmethod
    def forward(ctx, x, w, b=None, *, geometry):
        ctx.save_for_backward(geometry)
        return _conv(x, w, b, geometry)

    @staticmethod
    def backward(ctx, g):
        (geometry,) = ctx.saved
        x, w = ctx.inputs[:2]
        grads = (ConvTranspose2d.apply(g, w, geometry=geometry), ConvWeight.apply(x, g, geometry=geometry))
        if len(ctx.inputs) == 3:
            grads += (g.sum(dim=(0, 2, 3)),)
        return grads


class ConvTranspose2d(Function):
    """dx = ConvTranspose2d(g, w): dx[n, c, r, s] = sum of w[k, c, i, j] g[n, k, oh, ow] over every
    (k, i, j, oh, ow) whose window element lands on padded pixel (r, s) (the padding is cropped off).
    The adjoint of Conv2d in x:  d(g) = Conv2d(h, w),  d(w) = ConvWeight(h, g)  for the covector h.

    g: (N, K, OH, OW)   w: (K, C, kh, kw)   dx: (N, C, H, W)
    """

    @staticmethod
    def forward(ctx, g, w, *, geometry):
        ctx.save_for_backward(geometry)
        return _conv_transpose(g, w, geometry)

    @staticmethod
    def backward(ctx, h):
        (geometry,) = ctx.saved
        g, w = ctx.inputs
        return Conv2d.apply(h, w, geometry=geometry), ConvWeight.apply(h, g, geometry=geometry)


class ConvWeight(Function):
    """dw = ConvWeight(x, g): dw[k, c, i, j] = sum_{n, oh, ow} g[n, k, oh, ow] xp[n, c, oh*sh + i*dh, ow*sw + j*dw].
    The adjoint of Conv2d in w:  d(x) = ConvTranspose2d(g, u),  d(g) = Conv2d(x, u)  for the covector u.

    x: (N, C, H, W)   g: (N, K, OH, OW)   dw: (K, C, kh, kw)
    """

    @staticmethod
    def forward(ctx, x, g, *, geometry):
        ctx.save_for_backward(geometry)
        return _conv_weight(x, g, geometry)

    @staticmethod
    def backward(ctx, u):
        (geometry,) = ctx.saved
        x, g = ctx.inputs
        return ConvTranspose2d.apply(g, u, geometry=geometry), Conv2d.apply(x, u, geometry=geometry)


# ----------------------------------------------------------------------------
# The NumPy kernels: sums of matrix products over the kernel's elements
# ----------------------------------------------------------------------------


class _Taps:
    """Where kernel element (i, j) reads the zero-padded input, as arrays np.matmul takes directly.

    The output at (oh, ow) reads padded pixel (oh*sh + i*dh, ow*sw + j*dw). For each (i, j) we
    want that pixel for every output position at once, as a (N, C, L) array X_ij, so that
        y = sum_{i,j} w[:, :, i, j] @ X_ij        (K, C) @ (N, C, L) -> (N, K, L)
    with no unfolded copy of the input. The trick is a layout in which every X_ij is a view.

    Stride 1: flatten each padded image row by row, pixel (r, c) -> r*Wp + c. The pixel read is
      (oh*Wp + ow) + (i*dh*Wp + j*dw): the output's own index on a grid Wp wide, plus a constant
      shift. So X_ij = flat[:, :, shift : shift + OH*Wp], a view. The grid's Wp - OW extra columns
      per row give garbage outputs, cropped off (and their gradients are zeros); the last row's
      extra columns read up to (kw-1)*dw values past the image, so the buffer ends with that many zeros.
    Stride s > 1: split the padded image into s_h*s_w "phases" by the remainder of the row and column
      modulo the stride: phase (a, b)[r, c] = padded[r*sh + a, c*sw + b], each Hq x Wq (Hq = ceil(Hp/sh)).
      Kernel element (i, j) reads phase ((i*dh) % sh, (j*dw) % sw) at (oh + (i*dh)//sh, ow + (j*dw)//sw):
      stride 1 again, inside one phase. Stride 1 is the case of one phase.

    buffer: (N, phases, C, Hq*Wq + overrun);  tap(buffer, i, j): (N, C, L), L = OH*Wq.
    """

    def __init__(self, geometry, channels, dtype):
        self.geometry, self.channels, self.dtype = geometry, channels, dtype
        (Hp, Wp), (self.OH, self.OW) = geometry.padded_size, geometry.output_size
        (kh, kw), (sh, sw), (dh, dw) = geometry.kernel_size, geometry.stride, geometry.dilation
        self.Hq, self.Wq = -(-Hp // sh), -(-Wp // sw)  # ceil: every padded pixel in some phase
        self.L = self.OH * self.Wq
        self.size = self.Hq * self.Wq + ((kw - 1) * dw) // sw
        self.buffer_shape = (sh * sw, channels, self.size)
        self.elements = [(i, j) for i in range(kh) for j in range(kw)]

    def tap(self, buffer, i, j):
        (sh, sw), (dh, dw) = self.geometry.stride, self.geometry.dilation
        phase = ((i * dh) % sh) * sw + (j * dw) % sw
        shift = ((i * dh) // sh) * self.Wq + (j * dw) // sw
        return buffer[:, phase, :, shift : shift + self.L]

    def _grid(self, buffer):
        """The buffer as (N, sh, sw, C, Hq, Wq): phase (a, b), row r, column c = padded pixel (r*sh + a, c*sw + b)."""
        (sh, sw), N = self.geometry.stride, buffer.shape[0]
        return buffer[..., : self.Hq * self.Wq].reshape(N, sh, sw, self.channels, self.Hq, self.Wq)

    def fill(self, x):
        """x (N, C, H, W) zero-padded into a new buffer."""
        (sh, sw), (H, W), (top, _, left, _) = self.geometry.stride, self.geometry.input_size, self.geometry.padding
        N = x.shape[0]
        buffer = np.zeros((N,) + self.buffer_shape, dtype=self.dtype)
        if (sh, sw) == (1, 1):
            self._grid(buffer)[:, 0, 0, :, top : top + H, left : left + W] = x
        else:  # pad, then sort rows and columns into phases by their remainder
            padded = np.zeros((N, self.channels, self.Hq * sh, self.Wq * sw), dtype=self.dtype)
            padded[:, :, top : top + H, left : left + W] = x
            self._grid(buffer)[...] = padded.reshape(N, self.channels, self.Hq, sh, self.Wq, sw).transpose(0, 3, 5, 1, 2, 4)
        return buffer

    def unfill(self, buffer):
        """The inverse of fill: the (N, C, H, W) image part of a buffer (the padding dropped)."""
        (sh, sw), (H, W), (top, _, left, _) = self.geometry.stride, self.geometry.input_size, self.geometry.padding
        grid = self._grid(buffer)
        if (sh, sw) == (1, 1):
            return np.ascontiguousarray(grid[:, 0, 0, :, top : top + H, left : left + W])
        padded = grid.transpose(0, 3, 4, 1, 5, 2).reshape(len(buffer), self.channels, self.Hq * sh, self.Wq * sw)
        return np.ascontiguousarray(padded[:, :, top : top + H, left : left + W])

    def to_grid(self, g):
        """(N, K, OH, OW) -> (N, K, L), zeros in the grid's extra columns."""
        N, K = g.shape[:2]
        grid = np.zeros((N, K, self.OH, self.Wq), dtype=self.dtype)
        grid[..., : self.OW] = g
        return grid.reshape(N, K, self.L)

    def from_grid(self, y):
        """(N, K, L) -> the (N, K, OH, OW) view without the extra columns."""
        return y.reshape(y.shape[0], y.shape[1], self.OH, self.Wq)[..., : self.OW]

    # --- grouping kernel elements -------------------------------------------------
    def plan(self, batch, forward=False):
        """(images per chunk, kernel elements per product).

        Usually one product per kernel element for the whole batch: every X_ij is a view,
        nothing is copied. But with few input channels (an RGB image) a product of inner
        dimension C is a poor use of the matrix multiply. Then stack the kh*kw views of a
        chunk of images into columns (C*kh*kw, L) per image (im2col; about COLUMN_BYTES per
        chunk, so that they stay in the cache) and do one product per chunk:
          - always in the forward pass: fewer, longer products, and the very sums of the
            composite (one dot product of length C*kh*kw per output), so even the float32
            rounding is the composite's (adding kh*kw rounded partial sums roughly doubles it);
          - in the backward passes only for large kernels (a ResNet stem, 3 channels, 7x7):
            there the kh*kw partial results cost more to add up than the columns to copy,
            while for 3x3 the products per element were measured faster.
        """
        few_channels = self.channels < FEW_CHANNELS
        if not few_channels or (not forward and len(self.elements) <= MANY_ELEMENTS):
            return batch, 1
        per_image = self.channels * len(self.elements) * self.L * np.dtype(self.dtype).itemsize
        return max(1, min(batch, COLUMN_BYTES // per_image)), len(self.elements)

    def groups(self, per_group):
        """The kernel elements in groups of per_group (1, or all of them), row-major."""
        return [self.elements[start : start + per_group] for start in range(0, len(self.elements), per_group)]

    def stack(self, buffer, group):
        """The views of `group`'s elements as one (n, C*len(group), L) array, rows (c, element)."""
        if len(group) == 1:
            return self.tap(buffer, *group[0])
        columns = np.empty((len(buffer), self.channels, len(group), self.L), dtype=self.dtype)
        for t, (i, j) in enumerate(group):
            columns[:, :, t] = self.tap(buffer, i, j)
        return columns.reshape(len(buffer), self.channels * len(group), self.L)

    def unstack_add(self, buffer, group, columns):
        """The adjoint of stack: add each element's rows of columns (n, C*len(group), L) back to its view."""
        columns = columns.reshape(len(buffer), self.channels, len(group), self.L)
        for t, (i, j) in enumerate(group):
            self.tap(buffer, i, j)[...] += columns[:, :, t]


def _group_weights(w, per_group):
    """w (K, C, kh, kw) as one (K, C*per_group) matrix per group of kernel elements, columns
    (c, element) like stack's rows: (groups, K, C*per_group), groups = kh*kw / per_group."""
    K, C = w.shape[:2]
    groups = w.shape[2] * w.shape[3] // per_group
    return np.ascontiguousarray(w.reshape(K, C, groups, per_group).transpose(2, 0, 1, 3)).reshape(groups, K, -1)


def _ungroup_weights(grouped, w_shape):
    """The inverse of _group_weights: (groups, K, C*per_group) -> (K, C, kh, kw)."""
    K, C, kh, kw = w_shape
    return np.ascontiguousarray(grouped.reshape(len(grouped), K, C, -1).transpose(1, 2, 0, 3)).reshape(w_shape)


# When to use columns (see _Taps.plan); tests/test_fused_ops.py changes these to test both ways.
FEW_CHANNELS = 8        # fewer input channels than this: columns in the forward pass ...
MANY_ELEMENTS = 9       # ... and in the backward passes too if the kernel has more elements (larger than 3x3)
COLUMN_BYTES = 2**20    # the size of one chunk of columns (measured: 256 KiB to 4 MiB are within 10%)


def _chunks(batch, per_chunk):
    return [slice(start, min(start + per_chunk, batch)) for start in range(0, batch, per_chunk)]


def _conv(x, w, b, geometry):
    """y = sum over groups of kernel elements of W_group @ X_group (+ b): (N, K, OH, OW)."""
    N, C, K = x.shape[0], x.shape[1], w.shape[0]
    taps = _Taps(geometry, C, x.dtype)
    per_chunk, per_group = taps.plan(N, forward=True)
    groups, weights = taps.groups(per_group), _group_weights(w, per_group)
    y = np.empty((N, K) + geometry.output_size, dtype=x.dtype)
    for images in _chunks(N, per_chunk):
        buffer = taps.fill(x[images])
        total = np.matmul(weights[0], taps.stack(buffer, groups[0]))
        product = np.empty_like(total) if len(groups) > 1 else None
        for group, weight in zip(groups[1:], weights[1:]):
            total += np.matmul(weight, taps.stack(buffer, group), out=product)
        if b is None:
            y[images] = taps.from_grid(total)
        else:
            np.add(taps.from_grid(total), b.reshape(1, K, 1, 1), out=y[images])
    return y


def _conv_weight(x, g, geometry):
    """dw[:, :, group] = sum_n G[n] @ X_group[n]^T: (K, C, kh, kw)."""
    N, C, K = x.shape[0], x.shape[1], g.shape[1]
    taps = _Taps(geometry, C, x.dtype)
    per_chunk, per_group = taps.plan(N)
    groups = taps.groups(per_group)
    dw = np.zeros((len(groups), K, C * per_group), dtype=x.dtype)  # grouped like _group_weights
    for images in _chunks(N, per_chunk):
        buffer, G = taps.fill(x[images]), taps.to_grid(g[images])  # G: (n, K, L)
        for t, group in enumerate(groups):
            X = taps.stack(buffer, group)  # (n, C*len(group), L)
            dw[t] += np.matmul(G, X.transpose(0, 2, 1)).sum(axis=0)  # summed over the images
    return _ungroup_weights(dw, (K, C) + geometry.kernel_size)


def _conv_transpose(g, w, geometry):
    """dx: each kernel element sends W_group^T @ G back to the pixels its view read; crop: (N, C, H, W)."""
    N, K, C = g.shape[0], g.shape[1], w.shape[1]
    taps = _Taps(geometry, C, g.dtype)
    per_chunk, per_group = taps.plan(N)
    groups = taps.groups(per_group)
    weights = np.ascontiguousarray(_group_weights(w, per_group).transpose(0, 2, 1))  # (groups, C*per_group, K)
    dx = np.empty((N, C) + geometry.input_size, dtype=g.dtype)
    for images in _chunks(N, per_chunk):
        n = images.stop - images.start
        buffer = np.zeros((n,) + taps.buffer_shape, dtype=g.dtype)
        G = taps.to_grid(g[images])
        product = None
        for group, weight in zip(groups, weights):
            product = np.matmul(weight, G, out=product)  # (n, C*len(group), L)
            taps.unstack_add(buffer, group, product)
        dx[images] = taps.unfill(buffer)
    return dx
