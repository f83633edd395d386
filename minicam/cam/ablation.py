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

Peers: pytorch-grad-cam 1.5.7's AblationCAM, option by option (docs/peers.md, Ablation-CAM):
  divide_by="y"                    it divides by y itself (its map flips for a negative logit;
                                   for y > 0 the two agree)
  weights_dtype="float32"          it rounds y and y_k to float32 (np.float32) and computes the
                                   weights in float32, even for a float64 net
  ablation_value="pytorch-grad-cam"  it ablates with 0 where the image's layer minimum is 0 (a
                                   layer after a ReLU), else with min(A) - 1e7; and because its
                                   AblationLayer takes the minimum again after each copy it has
                                   ablated, copy j of a batch of `batch_size` gets
                                   min(A) - (j + 1) 1e7

How: the batch trick of Grad-CAM++'s diagonal_derivatives. A forward hook
replaces the layer's output by K copies of one image's A, copy k with channel k
ablated; the layers above run once on all copies (in chunks of `batch_size`),
and the layers below run on the single image.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Tensor, no_grad
from minicam.cam.capture import capture, checked_images, class_scores, output_with_layer_output, overflow_fix
from minicam.cam.maps import final_relu, require_choice, weighted_sum
from minicam.errors import require_finite

SCORES = ("logit", "softmax")
DIVISORS = ("|y|", "y")


def ablationcam(model, x, layer, target=None, *, score="logit", ablation_value=0.0, divide_by="|y|", weights_dtype=None,
                batch_size=32, relu=True):
    """The Ablation-CAM map (N, h, w) at the layer's resolution; see the module docstring.

    score           "logit" (pytorch-grad-cam's default) or "softmax"
    ablation_value  the value an ablated channel takes everywhere (0: the channel is switched off),
                    or "pytorch-grad-cam" (its rule, module docstring)
    divide_by       "|y|" (minicam) or "y" (pytorch-grad-cam): see ablation_weights
    weights_dtype   None, or "float32": y and y_k rounded to float32 and the weights computed in
                    float32 (pytorch-grad-cam)
    batch_size      ablated copies per forward pass
    """
    if score not in SCORES:
        raise ValueError(f"Ablation-CAM compares scores with score='logit' or 'softmax', not {score!r}")
    if not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    peer_rule = isinstance(ablation_value, str)
    if peer_rule and ablation_value != "pytorch-grad-cam":
        raise ValueError(f"ablation_value must be a number or 'pytorch-grad-cam', not {ablation_value!r}")
    if not peer_rule and not np.isfinite(ablation_value):
        raise ValueError(f"ablation_value must be a finite number, got {ablation_value!r}")
    require_choice("divide_by", divide_by, DIVISORS)
    require_choice("weights_dtype", weights_dtype, (None, "float32"))
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
            values = pytorch_grad_cam_ablation_values(A[image], len(channels)) if peer_rule else ablation_value
            copies[np.arange(len(channels)), channels] = np.asarray(values)[..., None, None]  # copy p: channel p ablated
            with no_grad():
                output = output_with_layer_output(model, x.data[image : image + 1], layer, Tensor(copies))
                y_ablated[image, channels] = class_scores(output, _repeat(target_of_image, len(channels)), score)[0].data
    require_finite(y_ablated, "the scores with one channel ablated",
                   f"the layers above {layer!r} overflow when a channel is set to {ablation_value}: use a smaller "
                   f"ablation_value; {overflow_fix(A.dtype)}")
    return ablationcam_map(A, y, y_ablated, divide_by=divide_by, weights_dtype=weights_dtype, relu=relu)


def pytorch_grad_cam_ablation_values(activations, copies):
    """The values pytorch-grad-cam 1.5.7's AblationLayer gives the ablated channel of each of `copies`
    copies of one image's activations (K, h, w): 0 for every copy if their minimum is 0; otherwise
    it takes the minimum of the whole batch of copies again after ablating each one, so copy j gets
    min(A) - (j + 1) 1e7, each subtraction rounded in the activations' dtype as torch does."""
    low = activations.min()
    if low == 0:
        return np.zeros(copies, dtype=activations.dtype)
    values, value = [], low
    for _ in range(copies):
        value = (value - activations.dtype.type(1e7)).astype(activations.dtype)
        values.append(value)
    return np.array(values, dtype=activations.dtype)


def ablationcam_map(A, y, y_ablated, *, divide_by="|y|", weights_dtype=None, relu=True):
    """Ablation-CAM from the activations A (N, K, h, w), the scores y (N,) and the scores
    y_ablated (N, K) with each channel ablated: L = ReLU(sum_k w_k A_k), w = ablation_weights."""
    weights = ablation_weights(y, y_ablated, divide_by=divide_by, weights_dtype=weights_dtype)
    return final_relu(weighted_sum(weights.astype(A.dtype, copy=False), A), relu)



def ablation_weights(y, y_ablated, divide_by="|y|", weights_dtype=None):
    """w_k = (y - y_k) / |y| per image: y (N,), y_ablated (N, K) -> (N, K).

    Where |y| is below the machine epsilon of the dtype, w_k = y - y_k (no division).
    divide_by="y": (y - y_k) / y, as pytorch-grad-cam (no rule for a small y).
    weights_dtype="float32": y and y_k rounded to float32 first, the weights computed in float32.
    """
    y = np.asarray(y)[:, None]
    if weights_dtype == "float32":
        y, y_ablated = y.astype(np.float32), np.asarray(y_ablated).astype(np.float32)
    drop = y - y_ablated
    if divide_by == "y":
        return drop / y
    tiny = np.abs(y) < np.finfo(drop.dtype).eps
    return np.where(tiny, drop, drop / np.where(tiny, 1, np.abs(y)))


def _repeat(target, copies):
    return target if callable(target) else np.full(copies, int(target))
