"""Slow, plain-loop versions of convolution and pooling: the readable specification.

Read these first. Each function is the definition written as loops over NumPy
arrays, with no vectorisation, no autograd and no cleverness. The fast
versions in minicam.ops compute the same numbers, and tests/test_reference.py
checks that all three (these loops, minicam.ops, torch) agree.

Shared letters: input (N, C, H, W), weight (K, C, kh, kw), output (N, K or C, OH, OW).
Window geometry (torch's): kernel element (i, j) of the window at output
position (oh, ow) reads input pixel
    row = oh*sh - ph + i*dh,   col = ow*sw - pw + j*dw,
and a pixel outside the input is padding (0 for convolution and average
pooling, ignored by max pooling). The number of windows along one axis is
    OH = floor((H + 2*ph - dh*(kh - 1) - 1) / sh) + 1.

Arguments are ints or (height, width) pairs; inputs are 4-D only, and only
what the fast versions also accept is checked here (they give the clear errors).
"""
from __future__ import annotations

import math

import numpy as np


def _pair(value):  # local, unchecked: this file imports nothing from minicam, to stay an independent check
    return (value, value) if isinstance(value, (int, np.integer)) else tuple(value)


def _output_size(size, kernel_size, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1):
    """y[n, k, oh, ow] = bias[k] + sum over c, i, j of weight[k, c, i, j] * x[n, c, row, col]."""
    x, weight = np.asarray(input), np.asarray(weight)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    N, C, H, W = x.shape
    K, _, kh, kw = weight.shape
    OH, OW = _output_size(H, kh, sh, ph, dh), _output_size(W, kw, sw, pw, dw)
    y = np.zeros((N, K, OH, OW), dtype=x.dtype)
    for n in range(N):
        for k in range(K):
            for oh in range(OH):
                for ow in range(OW):
                    total = 0.0 if bias is None else bias[k]
                    for c in range(C):
                        for i in range(kh):
                            for j in range(kw):
                                row, col = oh * sh - ph + i * dh, ow * sw - pw + j * dw
                                if 0 <= row < H and 0 <= col < W:  # outside: zero padding adds nothing
                                    total += weight[k, c, i, j] * x[n, c, row, col]
                    y[n, k, oh, ow] = total
    return y


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """im2col: column (oh*OW + ow) holds the window at (oh, ow); row (c*kh*kw + i*kw + j) its element (c, i, j)."""
    x = np.asarray(input)
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = _pair(kernel_size), _pair(dilation), _pair(padding), _pair(stride)
    N, C, H, W = x.shape
    OH, OW = _output_size(H, kh, sh, ph, dh), _output_size(W, kw, sw, pw, dw)
    columns = np.zeros((N, C * kh * kw, OH * OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    for oh in range(OH):
                        for ow in range(OW):
                            row, col = oh * sh - ph + i * dh, ow * sw - pw + j * dw
                            if 0 <= row < H and 0 <= col < W:
                                columns[n, c * kh * kw + i * kw + j, oh * OW + ow] = x[n, c, row, col]
    return columns


def _max_position(image, rows, cols):
    """Where torch's max pooling takes a window's maximum: the (row, col) it picks, or None.

    torch's loop, over the in-image pixels in row-major order: take the pixel if
    `value > best or isnan(value)`. So a tie goes to the FIRST maximum, a NaN
    wins (the LAST NaN if there are several), and a window of -inf takes its
    first pixel. None when the window has no pixel inside the image.
    """
    H, W = image.shape
    best, best_at = -math.inf, None
    for row in rows:
        for col in cols:
            if 0 <= row < H and 0 <= col < W:
                value = image[row, col]
                if best_at is None or value > best or np.isnan(value):
                    best, best_at = value, (row, col)
    return best_at


def _max_pool_windows(x, kernel_size, stride, padding, dilation):
    """Yield (n, c, oh, ow, position of the window's maximum or None) for every window."""
    (kh, kw), (ph, pw), (dh, dw) = _pair(kernel_size), _pair(padding), _pair(dilation)
    sh, sw = _pair(kernel_size if stride is None else stride)
    N, C, H, W = x.shape
    OH, OW = _output_size(H, kh, sh, ph, dh), _output_size(W, kw, sw, pw, dw)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    rows = [oh * sh - ph + i * dh for i in range(kh)]
                    cols = [ow * sw - pw + j * dw for j in range(kw)]
                    yield n, c, oh, ow, _max_position(x[n, c], rows, cols)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1):
    """y[n, c, oh, ow] = the largest in-image value of the window (-inf for a window with none)."""
    x = np.asarray(input)
    (kh, kw), (ph, pw), (dh, dw) = _pair(kernel_size), _pair(padding), _pair(dilation)
    sh, sw = _pair(kernel_size if stride is None else stride)
    N, C, H, W = x.shape
    y = np.full((N, C, _output_size(H, kh, sh, ph, dh), _output_size(W, kw, sw, pw, dw)), -np.inf, dtype=x.dtype)
    for n, c, oh, ow, at in _max_pool_windows(x, kernel_size, stride, padding, dilation):
        if at is not None:
            y[n, c, oh, ow] = x[n, c, at[0], at[1]]
    return y


def max_pool2d_backward(input, grad_output, kernel_size, stride=None, padding=0, dilation=1):
    """dx: every window adds its whole gradient to the one pixel max_pool2d took its value from."""
    x, g = np.asarray(input), np.asarray(grad_output)
    grad_input = np.zeros_like(x)
    for n, c, oh, ow, at in _max_pool_windows(x, kernel_size, stride, padding, dilation):
        if at is not None:
            grad_input[n, c, at[0], at[1]] += g[n, c, oh, ow]
    return grad_input


def avg_pool2d(input, kernel_size, stride=None, padding=0, count_include_pad=True, divisor_override=None):
    """y[n, c, oh, ow] = (sum of the window, padding counting as 0) / divisor, where divisor is
    divisor_override if given, else kh*kw if count_include_pad, else the window's in-image pixel count."""
    x = np.asarray(input)
    (kh, kw), (ph, pw) = _pair(kernel_size), _pair(padding)
    sh, sw = _pair(kernel_size if stride is None else stride)
    N, C, H, W = x.shape
    OH, OW = _output_size(H, kh, sh, ph, 1), _output_size(W, kw, sw, pw, 1)
    y = np.zeros((N, C, OH, OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    total, inside = 0.0, 0
                    for i in range(kh):
                        for j in range(kw):
                            row, col = oh * sh - ph + i, ow * sw - pw + j
                            if 0 <= row < H and 0 <= col < W:
                                total += x[n, c, row, col]
                                inside += 1
                    if divisor_override is not None:
                        divisor = divisor_override
                    else:
                        divisor = kh * kw if count_include_pad else inside
                    y[n, c, oh, ow] = total / divisor
    return y


def adaptive_avg_pool2d(input, output_size):
    """y[n, c, i, j] = mean of x[n, c, rows of bin i, cols of bin j], with torch's bins
    start(i) = floor(i * H / OH), end(i) = ceil((i + 1) * H / OH)."""
    x = np.asarray(input)
    N, C, H, W = x.shape
    OH, OW = _pair(output_size)
    y = np.zeros((N, C, OH, OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    r0, r1 = math.floor(i * H / OH), math.ceil((i + 1) * H / OH)
                    c0, c1 = math.floor(j * W / OW), math.ceil((j + 1) * W / OW)
                    y[n, c, i, j] = x[n, c, r0:r1, c0:c1].sum() / ((r1 - r0) * (c1 - c0))
    return y
