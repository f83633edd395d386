"""interpolate: resizing images as a product with two small matrices.

Every mode here is LINEAR in the input and treats the two axes separately, so
for each image and channel

    out = M_h @ x @ M_w^T        M_h: (OH, H),  x: (H, W),  M_w: (OW, W)

where row i of M_h holds the weights that output row i gives to the input
rows (M_w likewise for columns). The op is then a composite of matmul: its
gradient is M_h^T @ g @ M_w, it is exact at every order (the second
derivative in x is zero), and the whole specification of a mode is the
function that builds its matrix, `interpolation_matrix`. The matrices follow
torch's CPU kernels (aten/src/ATen/native/UpSample.h) rule for rule: the
coordinate mapping, its clamps, and its special cases.

One known difference: when a scale_factor leaves
both sizes unchanged (a 2-pixel axis times 1.3 is still 2 pixels), torch's
bicubic forward resamples with ratio 1/1.3 but its CPU backward copies the
gradient, so torch's gradient is not the derivative of its own output there.
minicam's gradient is (tests/test_nnfunc_extra.py checks it).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from minicam.autograd import Tensor, as_tensor
from minicam.ops.linalg import matmul
from minicam.ops.pool import bin_averaging_matrix

MODES = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")
CUBIC_A = -0.75  # Keys (1981) cubic convolution kernel with a = -0.75, as in torch and OpenCV


def interpolation_matrix(in_size: int, out_size: int, mode: str = "bilinear", align_corners: bool = False,
                         scale: float | None = None) -> np.ndarray:
    """The (out_size, in_size) float64 matrix M of a 1-D resize: out = M @ x.

    mode           one of MODES; align_corners only matters for bilinear and bicubic
    scale          the scale_factor the user gave (out/in, torch's `scales`), or None.
                   If given, torch maps coordinates with ratio 1/scale instead of
                   in_size/out_size (e.g. 5 -> 7 pixels with scale 1.5 uses 2/3, not 5/7).
    Each row sums to 1 (the weights of one output pixel). The matrix is built once per
    set of arguments and kept (a CAM of one image resizes with the same two matrices every
    call), so it is read-only: copy it to change it.
    """
    if not (_is_int(in_size) and _is_int(out_size) and in_size >= 1 and out_size >= 1):
        raise ValueError(f"interpolation_matrix: sizes must be positive integers, got {in_size} -> {out_size}")
    if mode not in MODES:
        raise ValueError(f"interpolation_matrix: unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    return _built_matrix(int(in_size), int(out_size), mode, align_corners, scale)


@functools.lru_cache(maxsize=256)
def _built_matrix(in_size, out_size, mode, align_corners, scale):
    matrix = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    if mode in ("nearest", "nearest-exact"):
        matrix[rows, _nearest_source(in_size, out_size, scale, exact=mode == "nearest-exact")] = 1.0
    elif mode == "area":  # adaptive average pooling: output i averages input [floor(i*in/out), ceil((i+1)*in/out))
        matrix[...] = bin_averaging_matrix(in_size, out_size)
    elif mode == "bilinear":
        index, frac = _source_position(in_size, out_size, align_corners, scale, cubic=False)
        upper = np.minimum(index + 1, in_size - 1)  # the last pixel has no right neighbour
        np.add.at(matrix, (rows, index), 1 - frac)  # add.at: both taps may be the same pixel
        np.add.at(matrix, (rows, upper), frac)
    else:  # bicubic: 4 taps at index-1 .. index+2, clamped to the border (replicate padding)
        index, frac = _source_position(in_size, out_size, align_corners, scale, cubic=True)
        taps = np.clip(index[:, None] + np.arange(-1, 3), 0, in_size - 1)
        np.add.at(matrix, (rows[:, None], taps), _cubic_weights(frac))
    matrix.flags.writeable = False
    return matrix


def _nearest_source(in_size, out_size, scale, exact):
    """torch's nearest: src = floor(dst * ratio); nearest-exact: floor((dst + 0.5) * ratio).

    torch computes these in float32 even for float64 tensors, and the floor
    jumps where the product is an integer, so we round exactly as it does.
    """
    dst = np.arange(out_size)
    if not exact and out_size == in_size:  # legacy special cases, even if a scale_factor says otherwise
        return dst
    if not exact and out_size == 2 * in_size:
        return dst // 2
    if scale is not None and scale > 0:
        ratio = np.float32(1.0 / scale)
    else:
        ratio = np.float32(in_size) / np.float32(out_size)
    position = dst.astype(np.float32) + (np.float32(0.5) if exact else np.float32(0))
    src = np.floor(position * ratio)  # float32 * float32 stays float32
    return np.minimum(src.astype(np.int64), in_size - 1)


def _source_position(in_size, out_size, align_corners, scale, cubic):
    """For each output pixel, the input coordinate it samples, split into
    (floor index, fraction in [0, 1]), as torch's area_pixel_compute_source_index."""
    dst = np.arange(out_size, dtype=np.float64)
    if not cubic and out_size == in_size:  # torch copies when a size is unchanged (bilinear only)
        return dst.astype(np.int64), np.zeros(out_size)
    if align_corners:  # corner pixels' centres coincide: src = dst * (in - 1) / (out - 1)
        ratio = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = ratio * dst
    else:  # half-pixel centres: src + 0.5 = (dst + 0.5) * ratio
        ratio = 1.0 / scale if scale is not None and scale > 0 else in_size / out_size
        src = ratio * (dst + 0.5) - 0.5
        if not cubic:
            src = np.maximum(src, 0.0)  # linear clamps the left border at pixel 0; cubic does not
    index = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    frac = np.clip(src - index, 0.0, 1.0)
    return index, frac


def _cubic_weights(t):
    """Keys' cubic convolution weights of the taps at distances 1 + t, t, 1 - t, 2 - t; shape (len(t), 4)."""
    a = CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)


def interpolate(input, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None, antialias: bool = False):
    """torch.nn.functional.interpolate for 4-D input (N, C, H, W) -> (N, C, OH, OW).

    size            OH or (OH, OW);  or scale_factor: s or (s_h, s_w), then OH = floor(H * s_h)
    mode            "nearest" (torch's legacy rule src = floor(dst * H / OH)), "nearest-exact",
                    "bilinear", "bicubic" (Keys, a = -0.75, border replicated), "area"
    align_corners   bilinear/bicubic only. False (default): half-pixel centres, as cv2
                    INTER_LINEAR; True: the corner pixels' centres map onto each other
    recompute_scale_factor  True: map coordinates with H / OH instead of 1 / s_h

    out = M_h @ x @ M_w^T with constant matrices (see interpolation_matrix),
    so the derivatives of every order are exact.
    """
    input = as_tensor(input)
    if input.ndim != 4:
        raise ValueError(f"interpolate: input must be 4-D (N, C, H, W), got shape {input.shape}")
    if mode not in MODES:
        raise ValueError(f"interpolate: unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    if mode in ("nearest", "nearest-exact", "area"):
        if align_corners is not None:
            raise ValueError(f"interpolate: align_corners can only be set with mode 'bilinear' or 'bicubic', "
                             f"not {mode!r}; leave it as None")
    align_corners = bool(align_corners)
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    (height, width) = input.shape[2:]
    (out_h, out_w), (scale_h, scale_w) = _output_geometry((height, width), size, scale_factor, recompute_scale_factor)
    if mode == "area":  # torch's area is adaptive average pooling: it uses the sizes only
        scale_h = scale_w = None
    rows = Tensor(interpolation_matrix(height, out_h, mode, align_corners, scale_h).astype(input.dtype))
    cols_t = Tensor(interpolation_matrix(width, out_w, mode, align_corners, scale_w).T.astype(input.dtype))
    # (OH, H) @ (N, C, H, W) -> (N, C, OH, W);  (N, C, OH, W) @ (W, OW) -> (N, C, OH, OW)
    return matmul(matmul(rows, input), cols_t)


def _output_geometry(in_sizes, size, scale_factor, recompute_scale_factor):
    """((OH, OW), (scale_h, scale_w)) from torch's size / scale_factor arguments."""
    if size is not None and scale_factor is not None:
        raise ValueError("interpolate: only one of size or scale_factor should be given, not both")
    if size is None and scale_factor is None:
        raise ValueError("interpolate: give either size (OH, OW) or scale_factor")
    if size is not None:
        if recompute_scale_factor:
            raise ValueError("interpolate: recompute_scale_factor is not meaningful with an explicit size")
        sizes = _number_or_pair(size, "size")
        if not all(_is_int(s) and s >= 1 for s in sizes):
            raise ValueError(f"interpolate: size must hold positive integers, got {size}")
        return tuple(int(s) for s in sizes), (None, None)
    scales = tuple(float(s) for s in _number_or_pair(scale_factor, "scale_factor"))
    if not all(math.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"interpolate: scale_factor must be positive and finite, got {scale_factor}")
    sizes = tuple(math.floor(n * s) for n, s in zip(in_sizes, scales))  # torch: int(n * s)
    if min(sizes) < 1:
        raise ValueError(f"interpolate: scale_factor {scale_factor} turns size {tuple(in_sizes)} into {sizes}; "
                         "every output size must be at least 1")
    return sizes, ((None, None) if recompute_scale_factor else scales)


def _number_or_pair(value, name):
    """size or scale_factor as (for H, for W): one number or a pair. Not ops.as_pair, which takes
    ints only: a scale factor is any positive number (the sizes are checked by the caller)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"interpolate: {name} must be one number or a pair (for H and W), got {value}")
        return tuple(value)
    return (value, value)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
