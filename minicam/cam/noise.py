"""Gaussian noise for the smoothed methods (Smooth Grad-CAM++ on the input, SS-CAM on the masks).

    draw_noise(rng, n_samples, noise_std, shape, dtype)   (n_samples, *shape), N(0, noise_std^2)
    noise_samples(...)                                    the noise a method adds: drawn, or given

A method draws ONE noise for every image of the batch (so a map never depends on the other
images), unless the caller gives the noise itself, e.g. the noise a peer drew, which may hold
one sample per image: (samples, N, *shape).
"""
from __future__ import annotations

import numpy as np

from minicam.errors import require_finite


def draw_noise(rng, n_samples, noise_std, shape, dtype) -> np.ndarray:
    """(n_samples, *shape) samples of N(0, noise_std^2) from the generator rng, in dtype."""
    if not (isinstance(n_samples, (int, np.integer)) and n_samples >= 1):
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if not (np.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be a finite non-negative number, got {noise_std!r}")
    return rng.normal(0.0, noise_std, size=(n_samples, *shape)).astype(dtype)


def noise_samples(rng, n_samples, noise_std, noise, shape, batch, dtype) -> np.ndarray:
    """The noise to add: `noise` itself if given, checked to be (samples, *shape) for every image or
    (samples, batch, *shape) one per image; else drawn by draw_noise from rng (default
    np.random.default_rng(0), so that maps are reproducible)."""
    if noise is None:
        rng = np.random.default_rng(0) if rng is None else rng
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be an np.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
        return draw_noise(rng, n_samples, noise_std, shape, dtype)
    noise = np.asarray(noise)
    sizes = ", ".join(map(str, shape))
    if noise.shape[1:] not in (tuple(shape), (batch, *shape)) or len(noise) == 0:
        raise ValueError(f"noise must have shape (samples, {sizes}) for every image or (samples, {batch}, {sizes}) "
                         f"one per image, got {noise.shape}")
    require_finite(noise, "the noise", "give finite noise samples")
    return noise.astype(dtype, copy=False)
