"""Faithfulness: Average Drop %, Increase in Confidence, Win % (the Grad-CAM++ paper), the
libraries' versions under their own names, and RISE deletion/insertion curves.

See minicam/metrics/__init__.py for the conventions.
"""
from __future__ import annotations

import numpy as np

from minicam import ops
from minicam.autograd import Tensor
from minicam.cam.capture import checked_images, predict
from minicam.metrics.checks import plain_array, check_finite, check_maps, check_classes, check_score, check_positive_int


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
    x = checked_images(x)
    n, _, h, w = x.shape
    maps = check_maps(maps, (n, h, w))
    classes = check_classes(classes, n)
    score, batch_size = check_score(score), check_positive_int(batch_size, "batch_size")
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
    Y, O = plain_array(Y).astype(np.float64), plain_array(O).astype(np.float64)
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
    a, b = plain_array(drops_a).astype(np.float64), plain_array(drops_b).astype(np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"drops_a and drops_b must be two (N,) arrays for the same N > 0 images; "
                         f"got shapes {a.shape} and {b.shape}")
    check_finite(a, "drops_a")
    check_finite(b, "drops_b")
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
    order = np.argsort(-plain_array(map_).ravel(), kind="stable")  # pixel indices, most important first
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
    x = checked_images(x)
    n, _, h, w = x.shape
    maps = check_maps(maps, (n, h, w))
    classes = check_classes(classes, n)
    score, batch_size = check_score(score), check_positive_int(batch_size, "batch_size")
    pixels = h * w
    steps = check_positive_int(steps, "steps")
    if steps > pixels:
        raise ValueError(f"steps = {steps} is more than the {pixels} pixels of an image; choose at most {pixels}")
    base = plain_array(baseline)
    check_finite(base, "baseline")
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
    f, s = plain_array(fractions).astype(np.float64), plain_array(scores).astype(np.float64)
    if f.ndim != 1 or f.size < 2 or s.shape[-1:] != f.shape or s.ndim not in (1, 2):
        raise ValueError(f"fractions must be (S,) with S >= 2 and scores (N, S) or (S,); "
                         f"got shapes {f.shape} and {s.shape}")
    check_finite(f, "fractions")
    check_finite(s, "scores")
    if np.any(np.diff(f) < 0):
        raise ValueError("fractions must not decrease; pass the fractions returned with the scores")
    area = np.sum(np.diff(f) * (s[..., 1:] + s[..., :-1]) / 2, axis=-1)
    return float(area) if s.ndim == 1 else area
