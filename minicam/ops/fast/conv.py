"""The fast convolution kernels: the forwards of Conv2dOp, ConvTranspose2dOp and ConvWeightOp, tuned.

    conv2d(x, w, b, geometry)            y  = Conv2dOp's forward            (N, K, OH, OW)
    conv_transpose2d(g, w, geometry)     dx = ConvTranspose2dOp's forward   (N, C, H, W)
    conv_weight(x, g, geometry)          dw = ConvWeightOp's forward        (K, C, kh, kw)

The same sums as the reading room (minicam/ops/conv.py: einsums over the windows of the
padded input), laid out for speed. All three are sums of matrix products, and the fastest
layout depends on the shape, so there are two, chosen per call by the Plan in use
(minicam/ops/fast/plans.py holds its thresholds):

1. Per kernel element (_Taps): for each kernel element (i, j), one product
   w[:, :, i, j] @ X_ij per image, where X_ij, the pixels that element reads for every
   output position, is a VIEW of the padded input (no copy; see _Taps). Nothing larger
   than the input is allocated, and the products are long when the maps are large.
   With few input channels (an RGB image) the elements are stacked into columns instead
   (see _Taps.grouping).
2. Channels-last columns: the classic im2col, but with the channels innermost,
       columns[(n, oh, ow), (i, j, c)] = xp[n, c, oh*sh + i*dh, ow*sw + j*dw],
   then ONE product columns @ W for a chunk of images (W: (kh*kw*C, K)).

Why two: on small maps (a ResNet's last stages: 7x7, 4x4) the products of way 1 are tiny
(K x C times C x 16), and numpy's matmul runs them one image at a time on one core, while
one large product over the batch runs on every core near the matmul peak; on large maps
the columns of way 2 are kh*kw times the input, and copying them costs more than it saves.
The copy into columns is fast only in runs of contiguous memory: channels-last makes each
run the C channels of one pixel, so way 2 is used only when those fill a cache line.
`python -m minicam bench` measures the result. tests/test_fast_wing.py runs every case under
plans that force each layout and checks it against the reading room.

`geometry` is the reading room's Geometry (minicam/ops/im2col.py), read by its field names
only: the fast wing imports nothing from the reading room (the reading room imports it).
"""
from __future__ import annotations

import numpy as np

from minicam.ops.fast.plans import current_plan


def conv2d(x, w, b, geometry):
    """y[n, k, oh, ow] = b[k] + sum_{c,i,j} w[k,c,i,j] xp[n, c, oh*sh + i*dh, ow*sw + j*dw]."""
    return _conv(x, w, b, geometry, current_plan())


def conv_transpose2d(g, w, geometry):
    """dx: every g[n, k, oh, ow] sent back through w[k, :, i, j] to the pixel element (i, j) read."""
    plan = current_plan()
    as_convolution = _transposed_geometry(geometry)
    if as_convolution is not None:  # stride 1: dx is a convolution of g with the flipped kernel
        flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, K, kh, kw)
        return _conv(g, flipped, None, as_convolution, plan)
    if channels_last(w.shape[1], geometry, g.dtype, plan):
        return _columns_conv_transpose(g, w, geometry, plan)
    return _taps_conv_transpose(g, w, geometry, plan)


def conv_weight(x, g, geometry):
    """dw[k, c, i, j] = sum_{n, oh, ow} g[n, k, oh, ow] xp[n, c, oh*sh + i*dh, ow*sw + j*dw]."""
    plan = current_plan()
    if channels_last(x.shape[1], geometry, x.dtype, plan):
        return _columns_conv_weight(x, g, geometry, plan)
    return _taps_conv_weight(x, g, geometry, plan)


def channels_last(channels, geometry, dtype, plan) -> bool:
    """Whether to use channels-last columns (way 2): for small maps, and for strided convolutions
    (which way 1 must first sort into phases), when one pixel's C channels fill a cache line."""
    OH, OW = geometry.output_size
    small = OH * OW <= plan.channels_last_max_pixels
    strided = plan.channels_last_strided and geometry.stride != (1, 1)
    return (small or strided) and channels * np.dtype(dtype).itemsize >= plan.channels_last_min_bytes


def stacks_elements(channels, kernel_elements, plan, forward) -> bool:
    """Whether way 1 stacks the kernel elements into columns (see _Taps.grouping): with few input
    channels, in the forward pass always, in the backward passes only for large kernels."""
    return channels < plan.few_channels and (forward or kernel_elements > plan.many_elements)


def _conv(x, w, b, geometry, plan):
    if channels_last(x.shape[1], geometry, x.dtype, plan):
        return _columns_conv(x, w, b, geometry, plan)
    return _taps_conv(x, w, b, geometry, plan)


def _transposed_geometry(geometry):
    """For stride 1, the geometry in which dx = conv(g, w flipped in i and j, channels swapped), else None.

    dx[n, c, r, s] = sum_{k,i,j} w[k, c, i, j] g[n, k, r + top - i*dh, s + left - j*dw]. With
    i' = kh-1-i this is a correlation of g, padded by dh*(kh-1) - top above (and likewise on the
    other sides), with w'[c, k, i', j'] = w[k, c, kh-1-i', kw-1-j']: a forward convolution, which
    reads the views of way 1 instead of adding into them (reading is faster than scattering). A
    padding wider than the window span would make the new padding negative: those keep the scatter.
    """
    (kh, kw), (dh, dw), (top, bottom, left, right) = geometry.kernel_size, geometry.dilation, geometry.padding
    span_h, span_w = dh * (kh - 1), dw * (kw - 1)
    if geometry.stride != (1, 1) or max(top, bottom) > span_h or max(left, right) > span_w:
        return None
    padding = (span_h - top, span_h - bottom, span_w - left, span_w - right)
    return geometry._replace(input_size=geometry.output_size, stride=(1, 1), padding=padding,
                             output_size=geometry.input_size)


# ----------------------------------------------------------------------------
# Way 1: one product per kernel element, on views of the padded input
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
    def grouping(self, batch, plan, forward=False):
        """(images per chunk, kernel elements per product).

        Usually one product per kernel element for the whole batch: every X_ij is a view,
        nothing is copied. But with fewer input channels than plan.few_channels (an RGB
        image) a product of inner dimension C is a poor use of the matrix multiply. Then
        stack the kh*kw views of a chunk of images into columns (C*kh*kw, L) per image
        (im2col; about plan.column_bytes per chunk, so that they stay in the cache) and do
        one product per chunk:
          - always in the forward pass: fewer, longer products, and the very sums of the
            reading room (one dot product of length C*kh*kw per output), so even the float32
            rounding is the reading room's (adding kh*kw rounded partial sums roughly doubles it);
          - in the backward passes only for kernels of more than plan.many_elements elements
            (a ResNet stem, 3 channels, 7x7): there the kh*kw partial results cost more to add
            up than the columns to copy, while for 3x3 the products per element are faster.
        """
        if not stacks_elements(self.channels, len(self.elements), plan, forward):
            return batch, 1
        per_image = self.channels * len(self.elements) * self.L * np.dtype(self.dtype).itemsize
        return max(1, min(batch, plan.column_bytes // per_image)), len(self.elements)

    def groups(self, per_group):
        """The kernel elements in groups of per_group (1, or all of them), row-major."""
        return [self.elements[start : start + per_group] for start in range(0, len(self.elements), per_group)]

    def spans(self, images, per_group, plan):
        """Slices of the L output positions whose stacked columns (`images` images) take at most
        about plan.column_bytes: all of L unless one image's columns alone are larger (a ResNet
        stem's 7x7 kernel on a large image), so that memory stays bounded even for one image."""
        per_position = images * self.channels * per_group * np.dtype(self.dtype).itemsize
        width = max(16, plan.column_bytes // per_position)
        return [slice(start, min(start + width, self.L)) for start in range(0, self.L, width)]

    def stack(self, buffer, group, span=slice(None)):
        """The views of `group`'s elements as one (n, C*len(group), L) array, rows (c, element);
        only the output positions `span` of L."""
        if len(group) == 1:
            return self.tap(buffer, *group[0])[..., span]
        length = len(range(self.L)[span])
        columns = np.empty((len(buffer), self.channels, len(group), length), dtype=self.dtype)
        for t, (i, j) in enumerate(group):
            columns[:, :, t] = self.tap(buffer, i, j)[..., span]
        return columns.reshape(len(buffer), self.channels * len(group), length)

    def unstack_add(self, buffer, group, columns):
        """The adjoint of stack: add each element's rows of columns (n, C*len(group), L) back to its view."""
        columns = columns.reshape(len(buffer), self.channels, len(group), self.L)
        for t, (i, j) in enumerate(group):
            self.tap(buffer, i, j)[...] += columns[:, :, t]


def _group_weights(w, per_group):
    """w (K, C, kh, kw) as one (K, C*per_group) matrix per group of kernel elements, columns
    (c, element) like stack's rows: (groups, K, C*per_group), groups = kh*kw / per_group.

    All elements in one group: w's own layout, a view. One element per group: w[:, :, i, j]
    for each (i, j), from one copy of w with the channels last, so that each matrix has
    unit column stride (a (K, C) view that the matrix multiply reads in place).
    """
    K, C, kh, kw = w.shape
    if per_group == kh * kw:
        return w.reshape(1, K, C * kh * kw)
    if per_group != 1:
        raise ValueError(f"groups of 1 or all {kh * kw} kernel elements, not {per_group}")
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(K, kh * kw, C).transpose(1, 0, 2)


def _ungroup_weights(grouped, w_shape):
    """The inverse of _group_weights: (groups, K, C*per_group) -> (K, C, kh, kw)."""
    K, C, kh, kw = w_shape
    return np.ascontiguousarray(grouped.reshape(len(grouped), K, C, -1).transpose(1, 2, 0, 3)).reshape(w_shape)


def _chunks(batch, per_chunk):
    return [slice(start, min(start + per_chunk, batch)) for start in range(0, batch, per_chunk)]


def _taps_conv(x, w, b, geometry, plan):
    """y = sum over groups of kernel elements of W_group @ X_group (+ b): (N, K, OH, OW)."""
    N, C, K = x.shape[0], x.shape[1], w.shape[0]
    taps = _Taps(geometry, C, x.dtype)
    per_chunk, per_group = taps.grouping(N, plan, forward=True)
    groups, weights = taps.groups(per_group), _group_weights(w, per_group)
    y = np.empty((N, K) + geometry.output_size, dtype=x.dtype)
    for images in _chunks(N, per_chunk):
        buffer = taps.fill(x[images])
        if per_group > 1:  # every element stacked into columns: one product per span of L
            total = np.empty((len(buffer), K, taps.L), dtype=x.dtype)
            for span in taps.spans(len(buffer), per_group, plan):
                np.matmul(weights[0], taps.stack(buffer, groups[0], span), out=total[..., span])
        else:  # one product per element, added up
            total = np.matmul(weights[0], taps.stack(buffer, groups[0]))
            product = np.empty_like(total) if len(groups) > 1 else None
            for group, weight in zip(groups[1:], weights[1:]):
                total += np.matmul(weight, taps.stack(buffer, group), out=product)
        if b is None:
            y[images] = taps.from_grid(total)
        else:
            np.add(taps.from_grid(total), b.reshape(1, K, 1, 1), out=y[images])
    return y


def _taps_conv_weight(x, g, geometry, plan):
    """dw[:, :, group] = sum_n G[n] @ X_group[n]^T: (K, C, kh, kw)."""
    N, C, K = x.shape[0], x.shape[1], g.shape[1]
    taps = _Taps(geometry, C, x.dtype)
    per_chunk, per_group = taps.grouping(N, plan)
    groups = taps.groups(per_group)
    dw = np.zeros((len(groups), K, C * per_group), dtype=x.dtype)  # grouped like _group_weights
    for images in _chunks(N, per_chunk):
        buffer, G = taps.fill(x[images]), taps.to_grid(g[images])  # G: (n, K, L)
        for t, group in enumerate(groups):
            X = taps.stack(buffer, group)  # (n, C*len(group), L)
            dw[t] += np.matmul(G, X.transpose(0, 2, 1)).sum(axis=0)  # summed over the images
    return _ungroup_weights(dw, (K, C) + geometry.kernel_size)


def _taps_conv_transpose(g, w, geometry, plan):
    """dx: each kernel element sends W_group^T @ G back to the pixels its view read; crop: (N, C, H, W)."""
    N, K, C = g.shape[0], g.shape[1], w.shape[1]
    taps = _Taps(geometry, C, g.dtype)
    per_chunk, per_group = taps.grouping(N, plan)
    groups = taps.groups(per_group)
    weights = _group_weights(w, per_group).transpose(0, 2, 1)  # (groups, C*per_group, K), transposed views
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


# ----------------------------------------------------------------------------
# Way 2: channels-last columns, one product per chunk of images
# ----------------------------------------------------------------------------


def _channels_last_padded(x, geometry):
    """x (N, C, H, W) zero-padded and transposed to channels-last: (N, Hp, Wp, C)."""
    (Hp, Wp), (H, W), (top, _, left, _) = geometry.padded_size, geometry.input_size, geometry.padding
    padded = np.zeros((x.shape[0], Hp, Wp, x.shape[1]), dtype=x.dtype)
    padded[:, top : top + H, left : left + W] = x.transpose(0, 2, 3, 1)
    return padded


def _element(padded, i, j, geometry):
    """Kernel element (i, j) of every window: the (N, OH, OW, C) view padded[n, oh*sh + i*dh, ow*sw + j*dw, :]."""
    (sh, sw), (dh, dw), (OH, OW) = geometry.stride, geometry.dilation, geometry.output_size
    return padded[:, i * dh : i * dh + sh * (OH - 1) + 1 : sh, j * dw : j * dw + sw * (OW - 1) + 1 : sw]


def _channels_last_columns(x, geometry):
    """columns[(n, oh, ow), (i, j, c)] = xp[n, c, oh*sh + i*dh, ow*sw + j*dw]: (N*OH*OW, kh*kw*C)."""
    N, C = x.shape[:2]
    (kh, kw), (OH, OW) = geometry.kernel_size, geometry.output_size
    padded = _channels_last_padded(x, geometry)
    columns = np.empty((N, OH, OW, kh * kw, C), dtype=x.dtype)
    for t in range(kh * kw):  # each copy moves runs of C contiguous numbers
        columns[:, :, :, t] = _element(padded, t // kw, t % kw, geometry)
    return columns.reshape(N * OH * OW, kh * kw * C)


def _channels_last_weights(w):
    """w (K, C, kh, kw) as the (kh*kw*C, K) matrix whose rows (i, j, c) match the columns':
    the transpose (a view) of w with the channels last, (K, kh*kw*C) (a copy twice as fast
    as one straight into (kh*kw*C, K), which matters for one image)."""
    K, C, kh, kw = w.shape
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(K, kh * kw * C).T


def _image_chunks(batch, geometry, channels, dtype, plan):
    """Slices of the batch whose columns take about plan.channels_last_chunk_bytes (memory stays small)."""
    (kh, kw), (OH, OW) = geometry.kernel_size, geometry.output_size
    per_image = OH * OW * kh * kw * channels * np.dtype(dtype).itemsize
    return _chunks(batch, max(1, plan.channels_last_chunk_bytes // per_image))


def _columns_conv(x, w, b, geometry, plan):
    """y = columns @ W (+ b), per chunk of images, back to (N, K, OH, OW)."""
    N, C, K = x.shape[0], x.shape[1], w.shape[0]
    OH, OW = geometry.output_size
    weights = _channels_last_weights(w)
    y = np.empty((N, K, OH, OW), dtype=x.dtype)
    for images in _image_chunks(N, geometry, C, x.dtype, plan):
        n = images.stop - images.start
        product = (_channels_last_columns(x[images], geometry) @ weights).reshape(n, OH, OW, K)
        if b is None:
            y[images] = product.transpose(0, 3, 1, 2)
        else:
            np.add(product.transpose(0, 3, 1, 2), b.reshape(1, K, 1, 1), out=y[images])
    return y


def _columns_conv_weight(x, g, geometry, plan):
    """dw = sum over chunks of columns^T @ G, G[(n, oh, ow), k] = g[n, k, oh, ow]."""
    N, C, K = x.shape[0], x.shape[1], g.shape[1]
    kh, kw = geometry.kernel_size
    dw = np.zeros((kh * kw * C, K), dtype=x.dtype)  # rows (i, j, c), as _channels_last_weights
    for images in _image_chunks(N, geometry, C, x.dtype, plan):
        G = g[images].transpose(0, 2, 3, 1).reshape(-1, K)  # (n*OH*OW, K)
        dw += _channels_last_columns(x[images], geometry).T @ G
    return np.ascontiguousarray(dw.reshape(kh, kw, C, K).transpose(3, 2, 0, 1))


def _columns_conv_transpose(g, w, geometry, plan):
    """dx: columns' gradient G @ W^T, each kernel element's part added back where it was read, cropped."""
    N, K, C = g.shape[0], g.shape[1], w.shape[1]
    (kh, kw), (OH, OW), (H, W) = geometry.kernel_size, geometry.output_size, geometry.input_size
    (Hp, Wp), (top, _, left, _) = geometry.padded_size, geometry.padding
    weights_t = np.ascontiguousarray(_channels_last_weights(w).T)  # (K, kh*kw*C)
    dx = np.empty((N, C, H, W), dtype=g.dtype)
    for images in _image_chunks(N, geometry, C, g.dtype, plan):
        n = images.stop - images.start
        G = g[images].transpose(0, 2, 3, 1).reshape(-1, K)
        columns = (G @ weights_t).reshape(n, OH, OW, kh * kw, C)
        padded = np.zeros((n, Hp, Wp, C), dtype=g.dtype)
        for t in range(kh * kw):  # overlapping windows add up
            _element(padded, t // kw, t % kw, geometry)[...] += columns[:, :, :, t]
        dx[images] = padded[:, top : top + H, left : left + W].transpose(0, 3, 1, 2)
    return dx
