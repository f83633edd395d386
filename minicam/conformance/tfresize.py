"""TensorFlow's resize kernels as matrices, for verify's pipeline variants.

Keras and TensorFlow users upsample maps with tf.image.resize (keras.ops.image.resize
and the Resizing layer call it), whose kernels are not torch's:

  bicubic, antialias=False   Keys' cubic convolution with a = -0.5 (torch's and cv2's use
                             a = -0.75), half-pixel centres, four taps; taps outside the image
                             get weight 0 and the others are divided by their sum (TensorFlow's
                             resize_bicubic with half_pixel_centers=True; torch clamps the index);
                             the position between pixels is rounded to 1/1024, as TensorFlow
                             reads the kernel from a table of 1024 steps
  any kernel, antialias=True TensorFlow's scale_and_translate: output pixel i samples
                             s = (i + 0.5) in/out - 0.5; the kernel is widened by
                             max(1, in/out) (it only widens when downsampling); taps outside
                             the image are DROPPED and the remaining weights divided by their sum
                             (instead of clamping the index)
  bilinear, antialias=False  half-pixel bilinear, torch's align_corners=False (minicam's own)

As minicam.ops.resize.interpolation_matrix, each function returns the (out, in) matrix M
of a 1-D resize (out = M @ x); a map (N, h, w) is resized by M_h @ maps @ M_w^T.
Measured against tf.image.resize in tests/test_conformance_tensorflow.py. Where they
coincide: bilinear with antialias equals half-pixel bilinear when upsampling (a tap at
s in [-0.5, 0) has its only in-image neighbour at 0, and clamping gives the same).
"""
from __future__ import annotations

import functools

import numpy as np

KERNELS = ("bilinear", "bicubic")
TABLE = 1024  # resize_bicubic's kernel table: positions are rounded to 1/1024 of a pixel


def keys_cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel: (a+2)|t|^3 - (a+3)|t|^2 + 1 on |t| <= 1,
    a|t|^3 - 5a|t|^2 + 8a|t| - 4a on 1 < |t| < 2, 0 beyond."""
    t = np.abs(t)
    return np.where(t <= 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                    np.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0))


def triangle(t: np.ndarray) -> np.ndarray:
    """The bilinear (tent) kernel max(0, 1 - |t|)."""
    return np.maximum(0.0, 1.0 - np.abs(t))


def tf_resize_matrix(in_size: int, out_size: int, kernel: str = "bicubic", antialias: bool = False) -> np.ndarray:
    """The (out_size, in_size) matrix of tf.image.resize(method=kernel, antialias=antialias) along one axis."""
    if kernel not in KERNELS:
        raise ValueError(f"tf_resize_matrix: unknown kernel {kernel!r}; choose one of {KERNELS}")
    return _matrix(int(in_size), int(out_size), kernel, bool(antialias))


@functools.lru_cache(maxsize=128)
def _matrix(in_size, out_size, kernel, antialias):
    scale = in_size / out_size
    centre = (np.arange(out_size) + 0.5) * scale - 0.5  # half-pixel centres
    function = triangle if kernel == "bilinear" else keys_cubic
    if antialias:  # scale_and_translate: widened kernel, out-of-image taps dropped, weights renormalised
        width = max(scale, 1.0)
        pixels = np.arange(in_size)
        weights = function((pixels[None, :] - centre[:, None]) / width)
        totals = weights.sum(axis=1, keepdims=True)
        matrix = np.where(np.abs(totals) > 0, weights / np.where(totals == 0, 1, totals), 0.0)
    elif kernel == "bilinear":
        source = np.maximum(centre, 0.0)
        index = np.minimum(np.floor(source).astype(int), in_size - 1)
        frac = source - index
        matrix = np.zeros((out_size, in_size))
        rows = np.arange(out_size)
        np.add.at(matrix, (rows, index), 1 - frac)
        np.add.at(matrix, (rows, np.minimum(index + 1, in_size - 1)), frac)
    else:  # resize_bicubic: four taps floor(s) - 1 .. floor(s) + 2, a = -0.5; taps outside the image dropped
        index = np.floor(centre).astype(int)  # and the other weights divided by their sum
        frac = np.rint((centre - index) * TABLE) / TABLE  # TensorFlow reads the kernel from a table of 1024 steps
        taps = index[:, None] + np.arange(-1, 3)
        weights = keys_cubic(frac[:, None] - np.arange(-1, 3))
        weights = np.where((taps >= 0) & (taps < in_size), weights, 0.0)
        weights = weights / weights.sum(axis=1, keepdims=True)
        matrix = np.zeros((out_size, in_size))
        np.add.at(matrix, (np.arange(out_size)[:, None], np.clip(taps, 0, in_size - 1)), weights)
    matrix.flags.writeable = False
    return matrix


def tf_resize_maps(maps: np.ndarray, size, kernel: str = "bicubic", antialias: bool = False) -> np.ndarray:
    """Maps (N, h, w) resized to size (H, W) as tf.image.resize does (on maps[..., None])."""
    (h, w), (H, W) = maps.shape[1:], tuple(size)
    rows = tf_resize_matrix(h, H, kernel, antialias).astype(maps.dtype)
    cols = tf_resize_matrix(w, W, kernel, antialias).astype(maps.dtype)
    return rows @ maps @ cols.T
