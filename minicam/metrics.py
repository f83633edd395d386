"""Metrics for saliency maps: does a map agree with the model, and does it point at the object?

Faithfulness (run the model on images changed according to the map):
    confidence_scores        (Y, O): the class score on the image and on E = map * image
    relative_drops           max(0, Y - O) / Y per image
    average_drop             Average Drop %                 } Grad-CAM++ paper
    increase_in_confidence   % Increase in Confidence       } (Chattopadhay et al. 2018)
    win_percent              Win %                          }
    torchcam_average_drop, torchcam_confidence_increase, pytorch_grad_cam_drop_in_confidence
                             the libraries' quantities under their own names: NOT the paper's units
    importance_rank, deletion_curve, insertion_curve, area_under_curve   RISE (Petsiuk et al. 2018)
Localisation (no model; masks are the ground truth of minicam.data):
    peak_locations, pointing_game                           Zhang et al. 2016
    energy_pointing_game                                    Score-CAM paper (Wang et al. 2020)
    instance_coverage, instance_coverage_batch              Grad-CAM++'s multi-instance claim
Similarity between two maps (sanity checks, Adebayo et al. 2018):
    average_ranks, spearman_rank_correlation, ssim

Conventions. x is a batch of images (N, C, H, W); maps are (N, H, W) at the
input's size, with values in [0, 1] (what minicam.cam.explain returns);
classes holds one target class per image (N,). score="softmax" (default)
uses the class probability, score="logit" the pre-softmax output. The model
runs in eval mode without a graph (minicam.cam.capture.predict), `batch_size`
images at a time.

The three "Average Drop" numbers in use are different quantities (research/peers.md,
(C) and trap 8): the paper's is a percentage of Y; torchcam's a fraction with
1e-7 added to Y; pytorch-grad-cam's an absolute difference. Numbers computed
with different definitions cannot be compared.

Where the map multiplies the image. E = map * x on the x you pass. The paper
multiplies the image; torchcam and pytorch-grad-cam multiply the NORMALISED
input tensor, where 0 is the data set's mean colour, not black. Pass the
tensor your model actually takes, and say which one you used.
"""
from __future__ import annotations

import numpy as np

from minicam import ops
from minicam.autograd import Tensor
from minicam.cam.capture import as_image_batch, predict

SCORES = ("softmax", "logit")
MAP_TOLERANCE = 1e-6  # maps may overshoot [0, 1] by float rounding, no more

# ----------------------------------------------------------------------------
# Input checks: each says what was wrong and what to do
# ----------------------------------------------------------------------------


def _array(obj) -> np.ndarray:
    return obj.data if isinstance(obj, Tensor) else np.asarray(obj)


def _check_finite(array: np.ndarray, what: str) -> None:
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{what} must hold real numbers; got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array)))
        raise ValueError(f"{what} holds {bad} NaN or infinite values; fix the map (or the input it came from) first")


def _check_maps(maps, shape=None, unit_interval: bool = True, what: str = "maps") -> np.ndarray:
    """maps as a float array (N, H, W): finite, of `shape` if given, in [0, 1] if asked."""
    maps = _array(maps)
    if maps.dtype.kind != "f":
        raise TypeError(f"{what} must be floating point, like the maps explain() returns; got dtype {maps.dtype}. "
                        "Convert with maps.astype(np.float64)")
    if maps.ndim != 3 or (shape is not None and maps.shape != tuple(shape)):
        wanted = f"{tuple(shape)}" if shape is not None else "(N, H, W)"
        raise ValueError(f"{what} must have shape {wanted}: one map per image at the input's size; "
                         f"got {maps.shape}. Use explain(...) (maps at input size) or maps[None] for one map")
    _check_finite(maps, what)
    if unit_interval and (maps.min() < -MAP_TOLERANCE or maps.max() > 1 + MAP_TOLERANCE):
        raise ValueError(f"{what} must lie in [0, 1] (found values in [{maps.min():.4g}, {maps.max():.4g}]); "
                         "normalise them, e.g. explain(..., convention='minicam')")
    return maps


def _check_classes(classes, n: int) -> np.ndarray:
    classes = _array(classes)
    if classes.shape != (n,) or classes.dtype.kind not in "iu":
        raise ValueError(f"classes must be {n} integers, one target class per image; got {classes.dtype} array of "
                         f"shape {classes.shape}. E.g. dataset.labels, or predict(model, x).argmax(1)")
    return classes.astype(np.int64)


def _check_score(score: str) -> str:
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose 'softmax' (the class probability) or 'logit'")
    return score


def _check_positive_int(value, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def _union_masks(masks, shape, what: str = "masks") -> np.ndarray:
    """Ground truth as (N, H, W) bool: the union of each image's instances.

    masks: an (N, H, W) or (N, k, H, W) bool array, or a list of N bool arrays
    (k_i, H, W) or (H, W) (a ShapesDataset's .masks). Every image needs an object."""
    n, h, w = shape
    if isinstance(masks, (list, tuple)):
        if len(masks) != n:
            raise ValueError(f"{what} holds {len(masks)} entries but there are {n} maps; give one per image")
        masks = [_array(m) for m in masks]
        for i, m in enumerate(masks):
            if m.ndim not in (2, 3) or m.shape[-2:] != (h, w):
                raise ValueError(f"{what}[{i}] has shape {m.shape}; expected (k, {h}, {w}) or ({h}, {w})")
        kinds = {m.dtype for m in masks}
        union = np.stack([m if m.ndim == 2 else m.any(axis=0) for m in masks])
    else:
        masks = _array(masks)
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


# ----------------------------------------------------------------------------
# Running the model
# ----------------------------------------------------------------------------


def _class_scores(output: np.ndarray, classes: np.ndarray, score: str) -> np.ndarray:
    """The score of each image's class: the logit, or its softmax probability."""
    if output.ndim != 2:
        raise ValueError(f"the model output has shape {output.shape}; these metrics need class scores (N, classes)")
    bad = classes[(classes < 0) | (classes >= output.shape[1])]
    if bad.size:
        raise ValueError(f"class {int(bad[0])} is out of range: the model has {output.shape[1]} classes "
                         f"(0 to {output.shape[1] - 1})")
    if score == "softmax":
        output = ops.softmax(Tensor(output), dim=1).data
    return output[np.arange(len(classes)), classes]


def _scores(model, images: np.ndarray, classes: np.ndarray, score: str, batch_size: int) -> np.ndarray:
    """The class scores of many images, computed `batch_size` images per model call."""
    parts = []
    for start in range(0, len(images), batch_size):
        stop = start + batch_size
        parts.append(_class_scores(predict(model, images[start:stop]), classes[start:stop], score))
    return np.concatenate(parts)


# ----------------------------------------------------------------------------
# Average Drop, Increase in Confidence, Win % (the Grad-CAM++ paper)
# ----------------------------------------------------------------------------


def confidence_scores(model, x, maps, classes, score: str = "softmax", batch_size: int = 64):
    """(Y, O), each (N,): the class score on each full image, and on its explanation map.

    Chattopadhay et al. 2018 (Grad-CAM++, arXiv 1710.11063), objective evaluation
    for object recognition: the explanation map is E_c = L_c o I, the [0, 1] map
    upsampled to the image and multiplied into it point by point (the same map in
    every channel). Y_i = score of image i, O_i = score of E_c for image i.
    """
    x = as_image_batch(x)
    n, _, h, w = x.shape
    maps = _check_maps(maps, (n, h, w))
    classes = _check_classes(classes, n)
    score, batch_size = _check_score(score), _check_positive_int(batch_size, "batch_size")
    explanation = (maps[:, None] * x.data).astype(x.dtype)  # E = L o I
    Y = _scores(model, x.data, classes, score, batch_size)
    O = _scores(model, explanation, classes, score, batch_size)
    return Y, O


def relative_drops(Y, O) -> np.ndarray:
    """max(0, Y_i - O_i) / Y_i per image (N,): the terms of the paper's Average Drop.

    The ratio is a share of Y only when Y > 0. A logit can be negative, and then
    (Y - O)/Y changes sign and means nothing: hence softmax scores by default,
    and an error for any Y <= 0.
    """
    Y, O = _array(Y).astype(np.float64), _array(O).astype(np.float64)
    if Y.shape != O.shape or Y.ndim != 1:
        raise ValueError(f"Y and O must be two (N,) arrays of scores; got shapes {Y.shape} and {O.shape}")
    if np.any(Y <= 0):
        i = int(np.flatnonzero(Y <= 0)[0])
        raise ValueError(f"the score on image {i} is Y = {Y[i]:.4g} <= 0, so the drop (Y - O) / Y is meaningless "
                         "(a negative logit flips its sign). Use score='softmax'")
    return np.maximum(0.0, Y - O) / Y


def average_drop(model, x, maps, classes, score: str = "softmax", batch_size: int = 64) -> float:
    """Average Drop % = 100/N * sum_i max(0, Y_i - O_i) / Y_i   (Grad-CAM++ paper). Lower is better.

    Y_i: the score on image i; O_i: on its explanation map map * image (see
    confidence_scores). A percentage of Y; raises if any Y <= 0 (relative_drops).
    """
    Y, O = confidence_scores(model, x, maps, classes, score, batch_size)
    return float(100.0 * relative_drops(Y, O).mean())


def increase_in_confidence(model, x, maps, classes, score: str = "softmax", batch_size: int = 64) -> float:
    """% Increase in Confidence = 100/N * sum_i 1[Y_i < O_i]   (Grad-CAM++ paper). Higher is better.

    The share of images whose score RISES when only the explanation is shown.
    Strict: an unchanged score (Y = O) does not count.
    """
    Y, O = confidence_scores(model, x, maps, classes, score, batch_size)
    return float(100.0 * np.mean(Y < O))


def win_percent(drops_a, drops_b, ties: str = "half") -> float:
    """Win % of method A over B: the share (in %) of images where A's drop is LOWER than B's.

    Grad-CAM++ paper, objective evaluation. drops_a, drops_b: per-image drops (N,)
    of the two methods on the same images, e.g. relative_drops(*confidence_scores(...)).
    The paper does not say how ties count; they are common, since every image
    whose score rises has a drop of exactly 0. ties="half" (default) gives each
    method half a win, so win_percent(a, b) + win_percent(b, a) = 100 (the
    paper reports the two methods' Win % as shares of one whole); ties="lose"
    gives a tie to neither method.
    """
    a, b = _array(drops_a).astype(np.float64), _array(drops_b).astype(np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"drops_a and drops_b must be two (N,) arrays for the same N > 0 images; "
                         f"got shapes {a.shape} and {b.shape}")
    _check_finite(a, "drops_a")
    _check_finite(b, "drops_b")
    if ties not in ("half", "lose"):
        raise ValueError(f"unknown ties rule {ties!r}; choose 'half' or 'lose'")
    wins = np.mean(a < b) + (0.5 * np.mean(a == b) if ties == "half" else 0.0)
    return float(100.0 * wins)


# ----------------------------------------------------------------------------
# The libraries' quantities, under their own names
# ----------------------------------------------------------------------------


def torchcam_average_drop(model, x, maps, classes, score: str = "softmax", batch_size: int = 64) -> float:
    """torchcam's avg_drop (torchcam.metrics.ClassificationMetric): mean_i relu(Y_i - O_i) / (Y_i + 1e-7).

    Differs from the paper's Average Drop %: a FRACTION (not %, so 100x
    smaller), 1e-7 added to the denominator, and no check on the sign of Y
    (with logits, a negative Y gives a negative "drop"). To reproduce torchcam:
    it scores the model's top class (classes=predict(model, x).argmax(1)), its
    benchmark uses logits_fn=softmax (score="softmax"), and it computes the CAM
    from those same scores: explain(..., convention="torchcam", score="softmax").
    """
    Y, O = confidence_scores(model, x, maps, classes, score, batch_size)
    return float(np.mean(np.maximum(Y - O, 0.0) / (Y + 1e-7)))


def torchcam_confidence_increase(model, x, maps, classes, score: str = "softmax", batch_size: int = 64) -> float:
    """torchcam's conf_increase: mean_i 1[Y_i < O_i]. The paper's quantity as a FRACTION, not %."""
    Y, O = confidence_scores(model, x, maps, classes, score, batch_size)
    return float(np.mean(Y < O))


def pytorch_grad_cam_drop_in_confidence(model, x, maps, classes, score: str = "softmax",
                                        batch_size: int = 64) -> np.ndarray:
    """pytorch-grad-cam's DropInConfidence (metrics/cam_mult_image.py): max(0, Y_i - O_i) per image, (N,).

    Differs from the paper's: ABSOLUTE (not divided by Y), not averaged, not %.
    Its score is whatever target you pass; its default target is the logit
    (score="logit"), its README's metric examples use the softmax.
    """
    Y, O = confidence_scores(model, x, maps, classes, score, batch_size)
    return np.maximum(Y - O, 0.0)


# ----------------------------------------------------------------------------
# Deletion and insertion (RISE)
# ----------------------------------------------------------------------------


def importance_rank(map_) -> np.ndarray:
    """(H*W,) ints: 0 for the pixel with the largest value, 1 for the next...

    Ties keep row-major order (a stable sort of -map), so results are deterministic:
    of two equal pixels, the one met first reading row by row goes first.
    """
    order = np.argsort(-_array(map_).ravel(), kind="stable")  # pixel indices, most important first
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return rank


def _changed_counts(pixels: int, steps: int, chunks: str) -> np.ndarray:
    """How many pixels are changed after each step, from 0 to all of them.

    "equal": exactly `steps` chunks, the first k * pixels // steps after step k
    (sizes differ by one pixel at most). "torchcam": chunks of ceil(pixels / steps)
    and a shorter last one, as torchcam 0.5's DeletionInsertionMetric (224 x 224
    in 20 steps: chunks of 2509, the last 2505; 4 pixels in 3 steps: only 2
    chunks). The two agree when steps divides H * W.
    """
    if chunks == "equal":
        return (np.arange(steps + 1) * pixels) // steps
    if chunks == "torchcam":
        size = -(-pixels // steps)  # ceil
        return np.r_[np.arange(0, pixels, size), pixels]
    raise ValueError(f"unknown chunks {chunks!r}; choose 'equal' or 'torchcam'")


def _perturbation_curve(model, x, maps, classes, steps, baseline, score, batch_size, chunks, insertion: bool):
    x = as_image_batch(x)
    n, _, h, w = x.shape
    maps = _check_maps(maps, (n, h, w))
    classes = _check_classes(classes, n)
    score, batch_size = _check_score(score), _check_positive_int(batch_size, "batch_size")
    pixels = h * w
    steps = _check_positive_int(steps, "steps")
    if steps > pixels:
        raise ValueError(f"steps = {steps} is more than the {pixels} pixels of an image; choose at most {pixels}")
    base = _array(baseline)
    _check_finite(base, "baseline")
    try:
        base = np.broadcast_to(base, x.shape).astype(x.dtype)
    except ValueError:
        raise ValueError(f"baseline must be a number or an array that broadcasts to x's shape {x.shape} "
                         f"(e.g. (C, H, W), or (C, 1, 1) for a colour); got shape {base.shape}") from None
    counts = _changed_counts(pixels, steps, chunks)  # pixels changed after each step: 0 ... H*W
    scores = np.empty((n, counts.size))
    for i in range(n):
        changed = importance_rank(maps[i])[None, :] < counts[:, None]  # (points, H*W)
        changed = changed.reshape(counts.size, 1, h, w)  # a pixel is changed in every channel
        if insertion:  # start from the baseline, reveal the most important pixels first
            images = np.where(changed, x.data[i], base[i])
        else:  # start from the image, delete the most important pixels first
            images = np.where(changed, base[i], x.data[i])
        scores[i] = _scores(model, images, np.full(counts.size, classes[i]), score, batch_size)
    return counts / pixels, scores


def deletion_curve(model, x, maps, classes, steps: int = 20, baseline=0.0, score: str = "softmax",
                   batch_size: int = 64, chunks: str = "equal"):
    """RISE deletion (Petsiuk et al. 2018, BMVC: the "causal metrics" deletion and insertion):
    delete pixels, most important first, and watch the score fall. Lower AUC is better.

    The H*W pixels are ranked by decreasing map value (ties: row-major order, see
    importance_rank) and cut into `steps` equal chunks (the first k*H*W // steps
    pixels after step k; chunks="torchcam" for torchcam's grid, see _changed_counts).
    A deleted pixel is set to `baseline` in every channel.
    Returns fractions (steps+1,), the share of pixels deleted (0 ... 1, the actual
    share, as torchcam), and scores (N, steps+1), column 0 being the full image.
    baseline: a number (default 0, RISE's deletion and torchcam's) or an array
    broadcasting to x. The steps+1 images of each image go through the model in
    batches of `batch_size`.
    """
    return _perturbation_curve(model, x, maps, classes, steps, baseline, score, batch_size, chunks,
                               insertion=False)


def insertion_curve(model, x, maps, classes, steps: int = 20, baseline=0.0, score: str = "softmax",
                    batch_size: int = 64, chunks: str = "equal"):
    """RISE insertion: start from `baseline`, reveal pixels, most important first. Higher AUC is better.

    Same ranking, chunks and return values as deletion_curve; column 0 is the
    baseline image, the last column the full image. Default baseline: zeros (as
    torchcam), so insertion and deletion use the same substrate. The RISE authors
    insert into a BLURRED copy of the image instead (an 11 x 11 Gaussian kernel,
    sigma 5); close to it: baseline=scipy.ndimage.gaussian_filter(x, sigma=(0, 0, 5, 5),
    truncate=1.0) (their kernel and zero padding differ slightly near the borders).
    On a normalised input, 0 is the mean colour, not black.
    """
    return _perturbation_curve(model, x, maps, classes, steps, baseline, score, batch_size, chunks,
                               insertion=True)


def area_under_curve(fractions, scores):
    """The trapezoid rule per image: sum_k (f_k+1 - f_k) * (s_k + s_k+1) / 2.

    fractions (S,) increasing from 0 to 1; scores (N, S) -> (N,), or (S,) -> a float.
    """
    f, s = _array(fractions).astype(np.float64), _array(scores).astype(np.float64)
    if f.ndim != 1 or f.size < 2 or s.shape[-1:] != f.shape or s.ndim not in (1, 2):
        raise ValueError(f"fractions must be (S,) with S >= 2 and scores (N, S) or (S,); "
                         f"got shapes {f.shape} and {s.shape}")
    _check_finite(f, "fractions")
    _check_finite(s, "scores")
    if np.any(np.diff(f) < 0):
        raise ValueError("fractions must not decrease; pass the fractions returned with the scores")
    area = np.sum(np.diff(f) * (s[..., 1:] + s[..., :-1]) / 2, axis=-1)
    return float(area) if s.ndim == 1 else area


# ----------------------------------------------------------------------------
# Localisation: pointing game, energy, instances
# ----------------------------------------------------------------------------


def peak_locations(maps) -> np.ndarray:
    """(N, 2) ints (row, col): where each map is largest; on ties the FIRST
    maximum in row-major order (np.argmax's rule, and torch's max)."""
    maps = _check_maps(maps, unit_interval=False)
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
    maps = _check_maps(maps, unit_interval=False)
    masks = _union_masks(masks, maps.shape)
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
    maps = _check_maps(maps, unit_interval=False)
    if maps.min() < 0:
        raise ValueError(f"maps must be >= 0 for an energy share (minimum {maps.min():.4g}); "
                         "apply a ReLU or normalise them to [0, 1]")
    masks = _union_masks(masks, maps.shape)
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
    map_ = _array(map_)
    instance_masks = _array(instance_masks)
    if map_.ndim != 2:
        raise ValueError(f"map_ must be one map (H, W); got shape {map_.shape}. "
                         "For a batch use instance_coverage_batch")
    map_ = _check_maps(map_[None], what="map_")[0]
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
    maps = _check_maps(maps)
    if len(masks) != len(maps):
        raise ValueError(f"masks holds {len(masks)} entries but there are {len(maps)} maps; give one per image")
    return np.array([instance_coverage(m, k, threshold) for m, k in zip(maps, masks)])


# ----------------------------------------------------------------------------
# Similarity between two maps (Adebayo et al. 2018, "Sanity checks for saliency maps")
# ----------------------------------------------------------------------------


def _pair(a, b):
    a, b = _array(a), _array(b)
    if a.shape != b.shape:
        raise ValueError(f"the two maps must have the same shape; got {a.shape} and {b.shape}")
    _check_finite(a, "a")
    _check_finite(b, "b")
    return a.astype(np.float64), b.astype(np.float64)


def average_ranks(values) -> np.ndarray:
    """Ranks 1..n of the flattened values; tied values share the mean of their
    ranks (scipy.stats.rankdata's default, method="average")."""
    v = _array(values).ravel()
    order = np.argsort(v, kind="stable")
    sorted_v = v[order]
    starts_group = np.r_[True, sorted_v[1:] != sorted_v[:-1]]
    group = np.cumsum(starts_group) - 1  # the group of each sorted position
    first = np.flatnonzero(starts_group)  # 0-based first position of each group
    end = np.r_[first[1:], v.size]  # one past its last position
    mean_rank = (first + 1 + end) / 2  # the mean of ranks first+1 ... end
    ranks = np.empty(v.size)
    ranks[order] = mean_rank[group]
    return ranks


def spearman_rank_correlation(a, b) -> float:
    """Spearman's rho of two maps: the Pearson correlation of their average ranks.

    Adebayo et al. 2018 compare a map with the map after randomising the
    model's weights (they report it with and without absolute values: pass
    np.abs(a) for the latter). The maps are flattened. A constant map has no
    ranking: rho is then 0 here (scipy.stats.spearmanr returns NaN).
    """
    a, b = _pair(a, b)
    if a.size < 2:
        raise ValueError(f"a rank correlation needs at least 2 values; got {a.size}")
    ra, rb = average_ranks(a), average_ranks(b)
    da, db = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt(np.sum(da**2) * np.sum(db**2))
    return float(np.sum(da * db) / denominator) if denominator > 0 else 0.0


def ssim(a, b, data_range: float = 1.0, win_size: int = 7) -> float:
    """Structural similarity of two maps (Wang et al. 2004, IEEE TIP, eq. 13 and 17).

    For every win_size x win_size window lying fully inside the image:
        S = (2 mu_a mu_b + C1)(2 cov_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2))
    with C1 = (0.01 R)^2, C2 = (0.03 R)^2, R = data_range, and the SAMPLE
    (co)variances (divided by win_size^2 - 1); the result is the mean of S.
    This is skimage.metrics.structural_similarity's default (uniform 7 x 7
    window, K1 = 0.01, K2 = 0.03, use_sample_covariance=True): skimage computes S
    at every pixel with padding, then averages only the pixels at least
    (win_size-1)/2 from the border, which are exactly these windows. Wang et
    al.'s own version uses an 11 x 11 Gaussian window (sigma 1.5). C1, C2 > 0, so
    constant maps give a number, never NaN.
    """
    a, b = _pair(a, b)
    win_size = _check_positive_int(win_size, "win_size")
    if a.ndim != 2 or min(a.shape) < win_size:
        raise ValueError(f"ssim needs two 2-D maps of at least {win_size} x {win_size} pixels; got shape {a.shape}")
    if not np.isscalar(data_range) or not data_range > 0:
        raise ValueError(f"data_range must be > 0 (the value range of the maps, 1 for [0, 1]); got {data_range!r}")
    C1, C2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    wa = np.lib.stride_tricks.sliding_window_view(a, (win_size, win_size))  # (H', W', win, win)
    wb = np.lib.stride_tricks.sliding_window_view(b, (win_size, win_size))
    mu_a, mu_b = wa.mean(axis=(2, 3)), wb.mean(axis=(2, 3))
    da, db = wa - mu_a[..., None, None], wb - mu_b[..., None, None]
    n = win_size * win_size
    var_a, var_b = (da**2).sum(axis=(2, 3)) / (n - 1), (db**2).sum(axis=(2, 3)) / (n - 1)
    cov_ab = (da * db).sum(axis=(2, 3)) / (n - 1)
    S = ((2 * mu_a * mu_b + C1) * (2 * cov_ab + C2)) / ((mu_a**2 + mu_b**2 + C1) * (var_a + var_b + C2))
    return float(S.mean())
