"""Ablation-CAM (Desai & Ramaswamy 2020, "Ablation-CAM: Visual Explanations for
Deep Convolutional Network via Gradient-free Localization", WACV, Section 3).

No gradient: a channel's weight is the fraction of the score lost when that
channel is removed ("ablated": set to a constant) and the layers above run again.

    y     the score of the class c with the layer intact
    y_k   the same score with A_k set to `ablation_value` everywhere
    w_k   = (y - y_k) / y               (the paper's weight: the relative drop)
    L     = ReLU(sum_k w_k A_k)

(The drop is sometimes quoted as a slope, (y - y_k) / ||A_k||; the relative
drop (y - y_k) / y is the form pytorch-grad-cam implements, and the one here.)

Non-positive denominators. The paper assumes y > 0. For a negative logit,
dividing by y would flip every weight, so "ablating k lowers the score" would
read as a negative weight. minicam divides by |y|: w_k > 0 always means that
ablating channel k lowers the score. Dividing by |y| only scales the map of an
image by a positive number, so its shape is (y - y_k) summed over channels.
If |y| is below the dtype's machine epsilon (2.2e-16 in float64, 1.2e-7 in
float32) the division would only amplify rounding noise: then w_k = y - y_k.

Peers: pytorch-grad-cam's AblationCAM divides by y itself (so its map flips for
a negative logit; for y > 0 the two agree) and ablates with 0 when the layer's
minimum is 0 (a layer after a ReLU), else with min(A) - 1e7.

How: the batch trick of Grad-CAM++'s diagonal_derivatives. A forward hook
replaces the layer's output by K copies of one image's A, copy k with channel k
ablated; the layers above run once on all copies (in chunks of `batch_size`),
and the layers below run on the single image.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Tensor, no_grad
from minicam.cam.capture import capture, checked_images, class_scores, output_with_layer_output, overflow_fix
from minicam.cam.maps import final_relu, weighted_sum
from minicam.errors import require_finite

SCORES = ("logit", "softmax")


def ablationcam(model, x, layer, target=None, *, score="logit", ablation_value=0.0, batch_size=32, relu=True):
    """The Ablation-CAM map (N, h, w) at the layer's resolution; see the module docstring.

    score           "logit" (pytorch-grad-cam's default) or "softmax"
    ablation_value  the value an ablated channel takes everywhere (0: the channel is switched off)
    batch_size      ablated copies per forward pass
    """
    if score not in SCORES:
        raise ValueError(f"Ablation-CAM compares scores with score='logit' or 'softmax', not {score!r}")
    if not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not np.isfinite(ablation_value):
        raise ValueError(f"ablation_value must be a finite number, got {ablation_value!r}")
    x = checked_images(x)
    first = capture(model, x, layer, target, score)  # A, y and the class of each image
    A, y = first.A, first.scores.data
    n, k = A.shape[:2]
    y_ablated = np.empty((n, k), dtype=A.dtype)
    for image in range(n):
        target_of_image = first.classes[image] if first.classes is not None else target
        for start in range(0, k, batch_size):
            channels = np.arange(start, min(start + batch_size, k))
            copies = np.repeat(A[image : image + 1], len(channels), axis=0)
            copies[np.arange(len(channels)), channels] = ablation_value  # copy p: channel channels[p] ablated
            with no_grad():
                output = output_with_layer_output(model, x.data[image : image + 1], layer, Tensor(copies))
                y_ablated[image, channels] = class_scores(output, _repeat(target_of_image, len(channels)), score)[0].data
    require_finite(y_ablated, "the scores with one channel ablated",
                   f"the layers above {layer!r} overflow when a channel is set to {ablation_value}: use a smaller "
                   f"ablation_value; {overflow_fix(A.dtype)}")
    return ablationcam_map(A, y, y_ablated, relu=relu)


def ablationcam_map(A, y, y_ablated, *, relu=True):
    """Ablation-CAM from the activations A (N, K, h, w), the scores y (N,) and the scores
    y_ablated (N, K) with each channel ablated: L = ReLU(sum_k w_k A_k), w = ablation_weights."""
    return final_relu(weighted_sum(ablation_weights(y, y_ablated), A), relu)


def ablation_weights(y, y_ablated):
    """w_k = (y - y_k) / |y| per image: y (N,), y_ablated (N, K) -> (N, K).

    Where |y| is below the machine epsilon of the dtype, w_k = y - y_k (no division).
    """
    y = np.asarray(y)[:, None]
    drop = y - y_ablated
    tiny = np.abs(y) < np.finfo(drop.dtype).eps
    return np.where(tiny, drop, drop / np.where(tiny, 1, np.abs(y)))


def _repeat(target, copies):
    return target if callable(target) else np.full(copies, int(target))
