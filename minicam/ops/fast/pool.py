"""The fast max pooling kernels: the forwards of MaxPool2dOp, WindowGatherOp and WindowScatterOp, tuned.

    max_pool2d(x, geometry)               y = the maximum of every window           (N, C, OH, OW)
    max_pool2d_choice(x, y, geometry)     the element torch picks in every window   (N, C, OH, OW)
    window_gather(x, choice, geometry)    x at the chosen element of every window   (N, C, OH, OW)
    window_scatter(g, choice, geometry)   g added at the chosen element of every window (N, C, H, W)

The same numbers as the reading room (minicam/ops/pool.py, which writes the choice as an
argmax over a window axis): every kernel here makes one pass per kernel element (i, j)
over a strided view of the padded input, window_element, so no window is ever copied.
The maxima need no choice, so the forward pass takes only those; the choice is made when
a backward pass asks for it (a forward pass whose backward never comes does not pay).

`geometry` is the reading room's Geometry (minicam/ops/im2col.py), read by its field names only.
"""
from __future__ import annotations

import numpy as np


def window_element(padded, i, j, geometry):
    """Kernel element (i, j) of every window at once: the (N, C, OH, OW) view
    padded[n, c, oh*sh + i*dh, ow*sw + j*dw] of a padded (N, C, Hp, Wp) array."""
    (sh, sw), (dh, dw), (OH, OW) = geometry.stride, geometry.dilation, geometry.output_size
    return padded[:, :, i * dh : i * dh + sh * (OH - 1) + 1 : sh, j * dw : j * dw + sw * (OW - 1) + 1 : sw]


def max_pool2d(x, geometry):
    """The element-wise maximum of the kh*kw views (-inf padding), NaN wherever one of them is NaN."""
    padded = _padded(x, geometry, -np.inf)
    elements = [window_element(padded, i, j, geometry) for i, j in _elements(geometry)]
    values = elements[0].copy()
    for candidate in elements[1:]:
        np.maximum(values, candidate, out=values)  # np.maximum propagates NaN, as torch's max does
    return values


def max_pool2d_choice(x, values, geometry):
    """The element (p = i*kw + j) torch's max_pool2d picks in every window whose maximum is `values`.

    torch's rule (the reading room's max_choice writes it as an argmax): the FIRST maximal
    element in row-major order, the LAST NaN, and an all -inf window's first in-image element.
    Here, for all windows at once, one kernel element at a time:
      choice = the first element equal to the maximum: elements in reverse order, each
               one overwriting the choice where it equals the maximum (padding is -inf,
               so it never equals a finite maximum);
    and two rare cases fixed afterwards, each only when the input has one:
      an all -inf window: its first in-image element (not a padded -inf);
      a window with NaN (its maximum is NaN): the last NaN (NaN equals nothing).
    `choice += is_max * (p - choice)` is `choice = p where is_max` in unsigned arithmetic
    modulo 2^bits, which is exact, and faster than np.where or np.copyto(where=).

    x: (N, C, H, W);  values and choice: (N, C, OH, OW).
    """
    padded = _padded(x, geometry, -np.inf)
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


def window_gather(x, choice, geometry):
    """y[n, c, oh, ow] = x at the element choice[n, c, oh, ow] of window (oh, ow), 0 if that is padding."""
    padded = _padded(x, geometry, 0)
    y = np.zeros(choice.shape, dtype=x.dtype)
    for p, (i, j) in enumerate(_elements(geometry)):  # a pick, not x * mask: inf * 0 would be NaN
        np.copyto(y, window_element(padded, i, j, geometry), where=choice == p)
    return y


def window_scatter(g, choice, geometry):
    """dx = zeros (N, C, H, W) with g[n, c, oh, ow] added at the chosen element of window (oh, ow)
    (overlapping windows add up, in the order of the kernel elements; padding is cropped off)."""
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
