"""Input checks shared by the metrics: each error says what was wrong and what to do."""
from __future__ import annotations

import numpy as np

from minicam.autograd import Tensor

SCORES = ("softmax", "logit")
MAP_TOLERANCE = 1e-6  # maps may overshoot [0, 1] by float rounding, no more


def plain_array(obj) -> np.ndarray:
    return obj.data if isinstance(obj, Tensor) else np.asarray(obj)


def check_finite(array: np.ndarray, what: str) -> None:
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{what} must hold real numbers; got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array)))
        raise ValueError(f"{what} holds {bad} NaN or infinite values; fix the map (or the input it came from) first")


def check_maps(maps, shape=None, unit_interval: bool = True, what: str = "maps") -> np.ndarray:
    """maps as a float array (N, H, W): finite, of `shape` if given, in [0, 1] if asked."""
    maps = plain_array(maps)
    if maps.dtype.kind != "f":
        raise TypeError(f"{what} must be floating point, like the maps explain() returns; got dtype {maps.dtype}. "
                        "Convert with maps.astype(np.float64)")
    if maps.ndim != 3 or (shape is not None and maps.shape != tuple(shape)):
        wanted = f"{tuple(shape)}" if shape is not None else "(N, H, W)"
        raise ValueError(f"{what} must have shape {wanted}: one map per image at the input's size; "
                         f"got {maps.shape}. Use explain(...) (maps at input size) or maps[None] for one map")
    check_finite(maps, what)
    if unit_interval and (maps.min() < -MAP_TOLERANCE or maps.max() > 1 + MAP_TOLERANCE):
        raise ValueError(f"{what} must lie in [0, 1] (found values in [{maps.min():.4g}, {maps.max():.4g}]); "
                         "normalise them, e.g. explain(..., convention='minicam')")
    return maps


def check_classes(classes, n: int) -> np.ndarray:
    classes = plain_array(classes)
    if classes.shape != (n,) or classes.dtype.kind not in "iu":
        raise ValueError(f"classes must be {n} integers, one target class per image; got {classes.dtype} array of "
                         f"shape {classes.shape}. E.g. dataset.labels, or predict(model, x).argmax(1)")
    return classes.astype(np.int64)


def check_score(score: str) -> str:
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose 'softmax' (the class probability) or 'logit'")
    return score


def check_positive_int(value, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def union_masks(masks, shape, what: str = "masks") -> np.ndarray:
    """Ground truth as (N, H, W) bool: the union of each image's instances.

    masks: an (N, H, W) or (N, k, H, W) bool array, or a list of N bool arrays
    (k_i, H, W) or (H, W) (a ShapesDataset's .masks). Every image needs an object."""
    n, h, w = shape
    if isinstance(masks, (list, tuple)):
        if len(masks) != n:
            raise ValueError(f"{what} holds {len(masks)} entries but there are {n} maps; give one per image")
        masks = [plain_array(m) for m in masks]
        for i, m in enumerate(masks):
            if m.ndim not in (2, 3) or m.shape[-2:] != (h, w):
                raise ValueError(f"{what}[{i}] has shape {m.shape}; expected (k, {h}, {w}) or ({h}, {w})")
        kinds = {m.dtype for m in masks}
        union = np.stack([m if m.ndim == 2 else m.any(axis=0) for m in masks])
    else:
        masks = plain_array(masks)
        if masks.ndim not in (3, 4) or masks.shape[0] != n or masks.shape[-2:] != (h, w):
            raise ValueError(f"{what} must have shape ({n}, {h}, {w}) or ({n}, k, {h}, {w}), matching the maps; "
                             f"got {masks.shape}")
        kinds = {masks.dtype}
        union = masks if masks.ndim == 3 else masks.any(axis=1)
    if kinds != {np.dtype(bool)}:
        raise TypeError(f"{what} must be boolean (True inside the object); got dtype "
                        f"{', '.join(map(str, kinds))}. Convert with mask > 0.5")
    empty = np.flatnonzero(~union.any(axis=(1, 2)))
    if empty.size:
        raise ValueError(f"image {int(empty[0])} has an empty ground-truth mask: there is no object to point at. "
                         "Leave such images out")
    return union
