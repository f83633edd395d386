"""Score-CAM (Wang et al. 2020, "Score-CAM: Score-Weighted Visual Explanations
for Convolutional Neural Networks", CVPR-W, Section 3 and Algorithm 1).

No gradient: each channel A_k of the layer is turned into a mask over the input,
and the channel's weight is how much the masked input alone raises the score.

    H_k   = s(Up(A_k))                  Up: upsample to the input size; s: min-max to [0, 1]
    C_k   = f(X * H_k) - f(X_b)         (Definition 2) f: the score of the class c, fixed
                                        from the unmasked input X; X_b a baseline image
    alpha = softmax_k(C)                (Algorithm 1; or alpha = C, as the authors' code)
    L     = ReLU(sum_k alpha_k A_k)     (the map, at the layer's resolution)

X * H_k multiplies every colour channel of X by the same mask. A constant
channel has no shape to show: its mask is H_k = 0 (not 0/0), so X * H_k is the
black image, and with the black baseline C_k = 0 exactly.

Peers make other choices (docs/peers.md, Score-CAM, SS-CAM and IS-CAM; silent
disagreements 6 and 7). These options reproduce them:

  paper (Algorithm 1)    score="softmax", channel_softmax=True, baseline="zeros",
                         mask_interpolation="bilinear", normalize_masks="after-upsample"
                         (the defaults)
  authors' code          score="softmax", channel_softmax=False, baseline=None; the rest as
  (haofanwang/Score-CAM) the paper. Two differences remain: their code skips a constant
                         channel (weight 0, where here it gets f(black image)), and it sums
                         the upsampled maps before its ReLU (ReLU after upsampling).
  torchcam ScoreCAM      score="logit", channel_softmax=True, mask_interpolation="bilinear",
                         normalize_masks="before-upsample", mask_eps=1e-8. torchcam subtracts
                         the unmasked input's score, a per-image constant that cancels in
                         the channel softmax, so `baseline` does not matter.
  pytorch-grad-cam       score="logit", channel_softmax=True, mask_interpolation="bilinear-corners"
  ScoreCAM               (torch.nn.UpsamplingBilinear2d is align_corners=True),
                         normalize_masks="after-upsample", mask_eps=1e-8; no baseline
                         (and none is needed: it would cancel in the softmax).
  tf-keras-vis Scorecam  score="softmax", channel_softmax=False, baseline=None,
                         mask_interpolation="bilinear-corners" (scipy zoom, order 1),
                         normalize_masks="after-upsample", mask_eps=1e-7.

Every library multiplies the masks into the tensor it is given, so "black" (0)
is whatever 0 means for the model's input (the dataset mean after the usual
normalisation). minicam does the same.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Tensor
from minicam.cam.capture import capture, checked_images, class_scores, predict
from minicam.cam.conventions import INTERPOLATIONS, normalize_maps, resize_maps
from minicam.cam.maps import final_relu, weighted_sum

MASK_ORDERS = ("after-upsample", "before-upsample")
BASELINES = ("zeros", None)
SCORES = ("softmax", "logit")
NO_EVIDENCE = ("zeros", "formula")


def scorecam(model, x, layer, target=None, *, score=None, channel_softmax=True, baseline="zeros",
             mask_interpolation="bilinear", normalize_masks="after-upsample", mask_eps=None, no_evidence="zeros",
             batch_size=32, relu=True):
    """The Score-CAM map (N, h, w) at the layer's resolution; see the module docstring.

    score               "softmax" (the class probability, as the paper; the default for class
                        targets) or "logit"; a callable target defines its own score (None)
    channel_softmax     True: alpha = softmax over channels of C (the paper); False: alpha = C
    baseline            "zeros": subtract f(black image); None: no subtraction. With
                        channel_softmax=True the baseline is a per-image constant and cancels.
    mask_interpolation  how A_k is upsampled: "bilinear" (half-pixel), "bilinear-corners",
                        "nearest", "bicubic" (as minicam.cam.conventions.resize_maps)
    normalize_masks     "after-upsample" (the paper: s(Up(A_k))) or "before-upsample" (Up(s(A_k)))
    mask_eps            None: exact min-max, a constant channel gives H_k = 0. A number:
                        (A - min) / (max - min + eps), as the peers compute it.
    no_evidence         an image whose C_k are all exactly 0 (no mask changes the score): "zeros"
                        gives it a zero map, "formula" the formula's (see scorecam_map)
    batch_size          masked images per forward pass (the passes are batched over channels)
    """
    if score is None:
        score = "logit" if callable(target) else "softmax"  # "logit": the callable's own score, taken as it is
    elif callable(target) and score != "logit":
        raise ValueError(f"a callable target defines the score itself; leave score unset (not {score!r}) "
                         "and compute the probability inside the callable if you want one")
    if score not in SCORES:
        raise ValueError(f"Score-CAM scores masked inputs with score='softmax' or 'logit', not {score!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be 'zeros' (the black image) or None (no subtraction), not {baseline!r}")
    if mask_interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown mask_interpolation {mask_interpolation!r}; choose one of {INTERPOLATIONS}")
    if normalize_masks not in MASK_ORDERS:
        raise ValueError(f"unknown normalize_masks {normalize_masks!r}; choose one of {MASK_ORDERS}")
    if no_evidence not in NO_EVIDENCE:
        raise ValueError(f"no_evidence must be one of {NO_EVIDENCE}, not {no_evidence!r}")
    if not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    x = checked_images(x)
    first = capture(model, x, layer, target, score)  # A, and the class of each image, from the unmasked input
    A = first.A
    n, k = A.shape[:2]
    classes = first.classes if first.classes is not None else target  # a callable target stays a callable

    # One row per (image, channel): row r masks image r // k with channel r % k.
    image_of_row = np.repeat(np.arange(n), k)
    channel_maps = A.reshape(n * k, *A.shape[2:])
    C = np.empty(n * k, dtype=A.dtype)
    for start in range(0, n * k, batch_size):
        rows = np.arange(start, min(start + batch_size, n * k))
        masks = channel_masks(channel_maps[rows], x.shape[2:], mask_interpolation, normalize_masks, mask_eps)
        masked = x.data[image_of_row[rows]] * masks[:, None]  # (rows, C, H, W): one mask for every colour channel
        C[rows] = _scores(model, masked, _rows_target(classes, image_of_row[rows]), score)
    C = C.reshape(n, k)
    if baseline == "zeros":
        C = C - _scores(model, np.zeros_like(x.data), classes, score)[:, None]
    return scorecam_map(A, C, channel_softmax=channel_softmax, no_evidence=no_evidence, relu=relu)


def scorecam_map(A, C, *, channel_softmax=True, no_evidence="zeros", relu=True):
    """Score-CAM from the activations A (N, K, h, w) and the channel scores C (N, K),
    C_k = f(X * H_k) - f(X_b) (Definition 2; with the baseline subtracted where one is used):

        alpha = softmax_k(C)   (Algorithm 1; channel_softmax=False: alpha = C, as the authors' code)
        L     = ReLU(sum_k alpha_k A_k)

    An image whose C_k are all exactly 0 (no mask changes the score, e.g. a score that does not
    depend on the input) has no evidence for any channel: no_evidence="zeros" (minicam's
    default) gives it a zero map, as every gradient method does for such a score; "formula"
    keeps the formula's answer, which with the channel softmax is the plain mean of the channels
    (softmax of equal numbers is uniform), as the peers compute it.
    """
    alpha = _softmax(C) if channel_softmax else C
    if no_evidence == "zeros":
        alpha = np.where(np.all(C == 0, axis=1)[:, None], 0, alpha).astype(A.dtype, copy=False)
    return final_relu(weighted_sum(alpha, A), relu)


def channel_masks(maps, size, interpolation="bilinear", order="after-upsample", eps=None):
    """H_k for a stack of channels (R, h, w) -> (R, H, W): each map scaled to [0, 1] on its own.

    order="after-upsample": H = s(Up(A)); "before-upsample": H = Up(s(A)).
    s is normalize_maps' per-map min-max (eps=None: a constant map gives 0).
    """
    if order == "after-upsample":
        return normalize_maps(resize_maps(maps, size, interpolation), "minmax", eps)
    return resize_maps(normalize_maps(maps, "minmax", eps), size, interpolation)


def _scores(model, images, target, score):
    """f(images): the score of each row's target class, without a graph, in eval mode."""
    y, _, _ = class_scores(Tensor(predict(model, images)), target, score)
    return y.data


def _rows_target(classes, image_of_row):
    return classes if callable(classes) else classes[image_of_row]


def _softmax(C):
    """softmax over channels, per image (shifted by the max, so exp never overflows)."""
    e = np.exp(C - C.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
