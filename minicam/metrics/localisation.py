"""Localisation against ground-truth masks: pointing game, energy pointing game, instance coverage."""
from __future__ import annotations

import numpy as np

from minicam.metrics.checks import plain_array, check_maps, union_masks


# ----------------------------------------------------------------------------
# Localisation: pointing game, energy, instances
# ----------------------------------------------------------------------------


def peak_locations(maps) -> np.ndarray:
    """(N, 2) ints (row, col): where each map is largest; on ties the FIRST
    maximum in row-major order (np.argmax's rule, and torch's max)."""
    maps = check_maps(maps, unit_interval=False)
    n, _, w = maps.shape
    flat = maps.reshape(n, -1).argmax(axis=1)
    return np.stack([flat // w, flat % w], axis=1)


def pointing_game(maps, masks, tolerance: float = 0) -> np.ndarray:
    """Pointing game (Zhang et al. 2016, "Top-down neural attention by excitation
    backprop", ECCV): a hit if the map's maximum lies on the object. (N,) bool.

    masks: the ground truth, one entry per image ((N, H, W) bool, or a list of
    (k, H, W) instance masks: their union counts). Hit when some object pixel
    lies within `tolerance` pixels (Euclidean, <=) of the peak; the paper uses
    15 px at 224 x 224, minicam's default 0 asks for the peak pixel itself.
    (TorchRay counts distance < tolerance: its 15 equals 14.99 here.)
    Ties: only the FIRST maximum in row-major order counts (peak_locations).
    Counting "any maximum" would let a constant map, tied everywhere, hit every
    object; with this rule it points at pixel (0, 0), like any tie-broken argmax.
    """
    maps = check_maps(maps, unit_interval=False)
    masks = union_masks(masks, maps.shape)
    if not np.isscalar(tolerance) or not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a number of pixels >= 0; got {tolerance!r}")
    peaks = peak_locations(maps)
    rows, cols = np.ogrid[0:maps.shape[1], 0:maps.shape[2]]
    distance2 = (rows[None] - peaks[:, 0, None, None]) ** 2 + (cols[None] - peaks[:, 1, None, None]) ** 2
    return np.any(masks & (distance2 <= tolerance**2), axis=(1, 2))


def energy_pointing_game(maps, masks) -> np.ndarray:
    """Energy-based pointing game (Wang et al. 2020, Score-CAM, "Localization
    evaluation"): the share of the map's energy inside the object, (N,).

        proportion = sum_{in mask} L / (sum_{in mask} L + sum_{outside} L)

    The paper uses bounding boxes; here the object masks (their union for
    several instances). Maps must be >= 0. A map summing to 0 gives 0, never NaN.
    """
    maps = check_maps(maps, unit_interval=False)
    if maps.min() < 0:
        raise ValueError(f"maps must be >= 0 for an energy share (minimum {maps.min():.4g}); "
                         "apply a ReLU or normalise them to [0, 1]")
    masks = union_masks(masks, maps.shape)
    inside = np.sum(maps * masks, axis=(1, 2))
    total = np.sum(maps, axis=(1, 2))
    return np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0)


def instance_coverage(map_, instance_masks, threshold: float = 0.5) -> float:
    """The share of the k instances that the map FINDS: those whose largest map
    value inside the instance is >= threshold.

    Measures the Grad-CAM++ paper's multi-instance claim (Chattopadhay et al.
    2018: Grad-CAM misses some of several objects of a class): a map min-max
    normalised to [0, 1] reaches 1 on one object at most; threshold 0.5 asks
    every other object to reach at least half that peak somewhere inside it.
    map_: (H, W) in [0, 1]; instance_masks: (k, H, W) bool, k >= 1, none empty.
    """
    map_ = plain_array(map_)
    instance_masks = plain_array(instance_masks)
    if map_.ndim != 2:
        raise ValueError(f"map_ must be one map (H, W); got shape {map_.shape}. "
                         "For a batch use instance_coverage_batch")
    map_ = check_maps(map_[None], what="map_")[0]
    if instance_masks.ndim != 3 or instance_masks.shape[1:] != map_.shape or instance_masks.shape[0] == 0:
        raise ValueError(f"instance_masks must be (k, {map_.shape[0]}, {map_.shape[1]}) with k >= 1, one mask per "
                         f"instance; got shape {instance_masks.shape}")
    if instance_masks.dtype != bool:
        raise TypeError(f"instance_masks must be boolean; got dtype {instance_masks.dtype}. Convert with mask > 0.5")
    empty = np.flatnonzero(~instance_masks.any(axis=(1, 2)))
    if empty.size:
        raise ValueError(f"instance {int(empty[0])} has an empty mask; leave it out")
    if not np.isscalar(threshold) or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold!r}")
    peak_inside = np.where(instance_masks, map_[None], -np.inf).max(axis=(1, 2))  # (k,)
    return float(np.mean(peak_inside >= threshold))


def instance_coverage_batch(maps, masks, threshold: float = 0.5) -> np.ndarray:
    """instance_coverage for every image, (N,): maps (N, H, W) and masks a list of
    N arrays (k_i, H, W), like a ShapesDataset's .masks."""
    maps = check_maps(maps)
    if len(masks) != len(maps):
        raise ValueError(f"masks holds {len(masks)} entries but there are {len(maps)} maps; give one per image")
    return np.array([instance_coverage(m, k, threshold) for m, k in zip(maps, masks)])
