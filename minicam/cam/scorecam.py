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
from minicam.cam.maps import final_relu, require_choice, weighted_sum
from minicam.cam.noise import noise_samples

MASK_ORDERS = ("after-upsample", "before-upsample")
BASELINES = ("zeros", None)
SCORES = ("softmax", "logit")
NO_EVIDENCE = ("zeros", "formula")


def scorecam(model, x, layer, target=None, *, score=None, channel_softmax=True, baseline="zeros",
             mask_interpolation="bilinear", normalize_masks="after-upsample", mask_eps=None, no_evidence="zeros",
             weights_dtype=None, batch_size=32, relu=True):
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
    weights_dtype       None: the weights in the activations' dtype; "float32": C rounded to
                        float32 and alpha computed in float32, as pytorch-grad-cam (torch.Tensor of
                        the scores) and tf-keras-vis (np.float32 weights) do even for float64 nets
    batch_size          masked images per forward pass (the passes are batched over channels)
    """
    x, first, classes, score = _checked_scorecam_call(model, x, layer, target, score, baseline, mask_interpolation,
                                                      normalize_masks, no_evidence, batch_size)
    masks = _mask_maker(first.A, x, mask_interpolation, normalize_masks, mask_eps)
    C = channel_scores(model, x, masks, first.A.shape[1], classes, score, batch_size)
    C = C - _baseline_scores(model, x, classes, score, baseline)
    return scorecam_map(first.A, C, channel_softmax=channel_softmax, no_evidence=no_evidence,
                        weights_dtype=weights_dtype, relu=relu)


def sscam(model, x, layer, target=None, *, n_samples=35, noise_std=2.0, rng=None, noise=None, score=None,
          channel_softmax=True, baseline="zeros", mask_interpolation="bilinear", normalize_masks="after-upsample",
          mask_eps=None, no_evidence="zeros", weights_dtype=None, batch_size=32, relu=True):
    """SS-CAM (Wang et al. 2020, "SS-CAM: Smoothed Score-CAM for Sharper Visual Feature
    Localization", arXiv 2006.14255): Score-CAM whose channel scores are averaged over masks
    with Gaussian noise added,

        C_k = (1/S) sum_s [ f(X * (H_k + delta_s)) - f(X_b) ],   delta_s ~ N(0, noise_std^2) per pixel
        alpha = softmax_k(C),   L = ReLU(sum_k alpha_k A_k)

    The noise is drawn once from rng (default np.random.default_rng(0)), (n_samples, K, H, W):
    the same for every image, so a map does not depend on the other images of the batch; or
    given as `noise`, (samples, K, H, W) or (samples, N, K, H, W) (e.g. the noise a peer drew).
    n_samples=35 and noise_std=2.0 are torchcam's defaults. The other options are Score-CAM's;
    torchcam 0.5.0's SSCAM is score="logit", normalize_masks="before-upsample", mask_eps=1e-8.
    """
    x, first, classes, score = _checked_scorecam_call(model, x, layer, target, score, baseline, mask_interpolation,
                                                      normalize_masks, no_evidence, batch_size)
    A = first.A
    noise = noise_samples(rng, n_samples, noise_std, noise, (A.shape[1], *x.shape[2:]), A.shape[0], A.dtype)
    masks = _mask_maker(A, x, mask_interpolation, normalize_masks, mask_eps)
    per_row = [sample.reshape(-1, *x.shape[2:]) if sample.ndim == 4 else np.tile(sample, (A.shape[0], 1, 1))
               for sample in noise]  # one (N * K, H, W) noise per sample, row r = (image r // K, channel r % K)
    base = _baseline_scores(model, x, classes, score, baseline)
    C = sum(channel_scores(model, x, lambda rows, delta=delta: masks(rows) + delta[rows], A.shape[1], classes, score,
                           batch_size) - base for delta in per_row) / len(noise)
    return scorecam_map(A, C, channel_softmax=channel_softmax, no_evidence=no_evidence, weights_dtype=weights_dtype,
                        relu=relu)


ISCAM_COEFFICIENTS = ("paper", "torchcam")


def iscam_coefficients(n_samples, rule="paper"):
    """The scales c_i (i = 1..N) of IS-CAM's masked inputs c_i * (X * H_k).

    "paper":    c_i = sum_{j=0}^{i-1} j / N = i (i - 1) / (2N)   (IS-CAM, as torch-cam issue #154
                transcribes the paper's M_i; with a black baseline its i = 0 term is 0)
    "torchcam": c_i = sum_{j=1}^{i} j / N = i (i + 1) / (2N)     (torchcam 0.5.0's running coefficient:
                the paper's sequence shifted by one, ending at (N + 1) / 2 instead of (N - 1) / 2)
    """
    require_choice("IS-CAM coefficients", rule, ISCAM_COEFFICIENTS)
    if not (isinstance(n_samples, (int, np.integer)) and n_samples >= 1):
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    i = np.arange(1, n_samples + 1)
    return i * (i - 1) / (2 * n_samples) if rule == "paper" else np.cumsum(i / n_samples)


def iscam(model, x, layer, target=None, *, n_samples=10, coefficients="paper", score=None, channel_softmax=True,
          baseline="zeros", mask_interpolation="bilinear", normalize_masks="after-upsample", mask_eps=None,
          no_evidence="zeros", weights_dtype=None, batch_size=32, relu=True):
    """IS-CAM (Naidu et al. 2020, "IS-CAM: Integrated Score-CAM for axiomatic-based explanations",
    arXiv 2010.03023): Score-CAM whose channel scores are averaged along a path of scaled masked
    inputs,

        C_k = (1/N) sum_{i=1}^{N} [ f(c_i X * H_k) - f(X_b) ],   c_i = iscam_coefficients(N, coefficients)
        alpha = softmax_k(C),   L = ReLU(sum_k alpha_k A_k)

    torchcam 0.5.0's ISCAM is coefficients="torchcam", score="logit", normalize_masks="before-upsample",
    mask_eps=1e-8 (docs/peers.md, Score-CAM, SS-CAM and IS-CAM).
    """
    x, first, classes, score = _checked_scorecam_call(model, x, layer, target, score, baseline, mask_interpolation,
                                                      normalize_masks, no_evidence, batch_size)
    scales = iscam_coefficients(n_samples, coefficients)
    masks = _mask_maker(first.A, x, mask_interpolation, normalize_masks, mask_eps)
    base = _baseline_scores(model, x, classes, score, baseline)
    C = sum(channel_scores(model, x, masks, first.A.shape[1], classes, score, batch_size, scale=c) - base
            for c in scales) / n_samples
    return scorecam_map(first.A, C, channel_softmax=channel_softmax, no_evidence=no_evidence,
                        weights_dtype=weights_dtype, relu=relu)


def _checked_scorecam_call(model, x, layer, target, score, baseline, mask_interpolation, normalize_masks,
                           no_evidence, batch_size):
    """The checked images, the unmasked capture (A and each image's class), the classes and the score."""
    if score is None:
        score = "logit" if callable(target) else "softmax"  # "logit": the callable's own score, taken as it is
    elif callable(target) and score != "logit":
        raise ValueError(f"a callable target defines the score itself; leave score unset (not {score!r}) "
                         "and compute the probability inside the callable if you want one")
    if score not in SCORES:
        raise ValueError(f"Score-CAM scores masked inputs with score='softmax' or 'logit', not {score!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be 'zeros' (the black image) or None (no subtraction), not {baseline!r}")
    require_choice("mask_interpolation", mask_interpolation, INTERPOLATIONS)
    require_choice("normalize_masks", normalize_masks, MASK_ORDERS)
    if no_evidence not in NO_EVIDENCE:
        raise ValueError(f"no_evidence must be one of {NO_EVIDENCE}, not {no_evidence!r}")
    if not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    x = checked_images(x)
    first = capture(model, x, layer, target, score)  # A, and the class of each image, from the unmasked input
    classes = first.classes if first.classes is not None else target  # a callable target stays a callable
    return x, first, classes, score


def _mask_maker(A, x, interpolation, order, eps):
    """rows -> the masks H of those rows (rows, H, W); row r is image r // K, channel r % K."""
    channel_maps = A.reshape(-1, *A.shape[2:])
    return lambda rows: channel_masks(channel_maps[rows], x.shape[2:], interpolation, order, eps)


def channel_scores(model, x, masks, channels, classes, score, batch_size, scale=1.0):
    """C (N, K) before any baseline: f(scale * X * H_k) for each image and channel. masks(rows) gives
    the masks (rows, H, W) of a chunk of rows, row r being image r // K and channel r % K; one mask
    multiplies every colour channel. The rows run through the model in batches of `batch_size`."""
    n = x.shape[0]
    C = np.empty(n * channels, dtype=x.data.dtype)
    for start in range(0, n * channels, batch_size):
        rows = np.arange(start, min(start + batch_size, n * channels))
        image_of_row = rows // channels
        masked = x.data[image_of_row] * masks(rows)[:, None]  # (rows, C, H, W)
        if scale != 1.0:
            masked = masked.dtype.type(scale) * masked  # IS-CAM: a point on the path from 0 to the masked input
        C[rows] = _scores(model, masked, _rows_target(classes, image_of_row), score)
    return C.reshape(n, channels)


def _baseline_scores(model, x, classes, score, baseline):
    """f(X_b) per image, (N, 1): the black image's score, or 0 without a baseline."""
    if baseline != "zeros":
        return 0.0
    return _scores(model, np.zeros_like(x.data), classes, score)[:, None]


def scorecam_map(A, C, *, channel_softmax=True, no_evidence="zeros", weights_dtype=None, relu=True):
    """Score-CAM from the activations A (N, K, h, w) and the channel scores C (N, K),
    C_k = f(X * H_k) - f(X_b) (Definition 2; with the baseline subtracted where one is used):

        alpha = softmax_k(C)   (Algorithm 1; channel_softmax=False: alpha = C, as the authors' code)
        L     = ReLU(sum_k alpha_k A_k)

    An image whose C_k are all exactly 0 (no mask changes the score, e.g. a score that does not
    depend on the input) has no evidence for any channel: no_evidence="zeros" (minicam's
    default) gives it a zero map, as every gradient method does for such a score; "formula"
    keeps the formula's answer, which with the channel softmax is the plain mean of the channels
    (softmax of equal numbers is uniform), as the peers compute it. weights_dtype="float32":
    C rounded to float32 and alpha computed in float32 (pytorch-grad-cam, tf-keras-vis).
    """
    require_choice("weights_dtype", weights_dtype, (None, "float32"))
    weights_of = C.astype(np.float32) if weights_dtype == "float32" else C
    alpha = _softmax(weights_of) if channel_softmax else weights_of
    if no_evidence == "zeros":
        alpha = np.where(np.all(C == 0, axis=1)[:, None], 0, alpha).astype(alpha.dtype, copy=False)
    return final_relu(weighted_sum(alpha.astype(A.dtype, copy=False), A), relu)


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
