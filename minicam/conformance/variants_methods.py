"""Method variants: the method's map at the layer computed another way.

Each function recomputes, for one case, the map (before the method's final
ReLU) the way a known implementation or a known mistake computes it. Sources
are in docs/peers.md (each method's section names the library file) unless stated.
Signature: f(lab, method) -> map (N, h, w), or (map, has_final_relu), or None
where the variant does not apply to this case.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from minicam import nn, ops
from minicam.cam.capture import predict
from minicam.cam.guided import guided_gradcam_map, input_gradients, reduce_channels
from minicam.cam.maps import positive
from minicam.cam.registry import REGISTRY
from minicam.conformance.catalogue import register, register_context

GRADIENT = tuple(name for name, m in REGISTRY.items() if m.from_gradients)  # maps from A and g alone
GUIDED = ("guided-backprop", "guided-gradcam")
CLASS_DEPENDENT = tuple(m for m in REGISTRY if m != "eigencam")


def formula(method, A, g, **options):
    """The method's own formula (minicam.cam) on these A and g, before its final ReLU."""
    return REGISTRY[method].formula(A, g, relu=False, **options)


def _per_image(values):
    return np.asarray(values)[:, None, None]


# ----------------------------------------------------------------------------
# The score and the target
# ----------------------------------------------------------------------------


@register_context("softmax-score", "gradients of the softmax probability instead of the logit",
                  "docs/peers.md, Shared plumbing; silent disagreements 6: the papers differentiate the pre-softmax "
                  "logit, and so do the peers when given logits (captum and tf-keras-vis take whatever the model "
                  "outputs); a model that ends in a softmax (or a score taken after it) gives this",
                  GRADIENT + GUIDED + ("ablationcam",))
def softmax_score(lab):
    """y = softmax(S)_c instead of the logit S_c: g = p_c (dS_c/dA - sum_j p_j dS_j/dA)."""
    return None if lab.score == "softmax" else {"score": "softmax"}


@register("exp-score", "method", "gradients of exp(logit) instead of the logit",
          "Grad-CAM++ eq. 19 takes Y = exp(S) (docs/peers.md, Grad-CAM++); applied naively it multiplies g by exp(S) "
          "before the method's formula", GRADIENT + GUIDED)
def exp_score(lab, method):
    """g -> exp(S) g, the true exp(S) of each image's logit (not shifted)."""
    A, g, S = lab.activations_and_gradients()
    scale = np.exp(S)
    if method in GRADIENT:
        return formula(method, A, g * scale[:, None, None, None])
    return lab.pre(method) * _per_image(scale)  # guided maps are linear in the score's gradient


@register("negated-score", "method", "gradients of -y: the counterfactual map of Selvaraju et al.",
          "a sign error in the gradient, or counterfactual Grad-CAM given for Grad-CAM (docs/peers.md, Grad-CAM)", GRADIENT)
def negated_score(lab, method):
    """g -> -g in the method's formula: the map of what LOWERS the score."""
    A, g, _ = lab.activations_and_gradients()
    return formula(method, A, -g)


@register_context("predicted-class", "the predicted class (argmax) explained instead of the given target",
                  "the default target of pytorch-grad-cam (targets=None) and of many tutorials", CLASS_DEPENDENT)
def predicted_class(lab):
    """The method for argmax(output) of each image instead of the case's targets (None if they agree)."""
    predicted = np.argmax(predict(lab.case.model, lab.case.x), axis=1)
    return None if np.array_equal(predicted, lab.case.targets) else {"targets": predicted}


@register_context("first-target-for-all", "the first image's target class used for every image",
                  "class_idx given as one int for the whole batch (torchcam, captum accept both forms)",
                  CLASS_DEPENDENT)
def first_target_for_all(lab):
    """The method with targets[0] for every image (None if all targets are equal already)."""
    targets = np.full_like(lab.case.targets, lab.case.targets[0])
    return None if np.array_equal(targets, lab.case.targets) else {"targets": targets}


@register("batch-mean-gradients", "method", "Grad-CAM weights averaged over the batch as well as the positions",
          "keras-io examples/vision/grad_cam.py: reduce_mean(grads, axis=(0, 1, 2)), valid for one image only "
          "(docs/peers.md, Shared plumbing; Grad-CAM)", ("gradcam",))
def batch_mean_gradients(lab, method):
    """w_k = mean over (n, i, j) of g: one set of weights for the whole batch."""
    A, g, _ = lab.activations_and_gradients()
    if len(A) < 2:
        return None
    return np.einsum("k,nkhw->nhw", g.mean(axis=(0, 2, 3)), A)


class BatchStatisticsNorm(nn.Module):
    """BatchNorm2d as in training mode: each channel normalised with the BATCH's mean and
    (biased) variance, whatever the module's mode; the running statistics are not touched."""

    def __init__(self, bn):
        super().__init__()
        self.weight, self.bias, self.eps = bn.weight, bn.bias, bn.eps

    def forward(self, input):
        return ops.batch_norm(input, None, None, self.weight, self.bias, training=True, eps=self.eps)


def _train_mode_model(lab):
    """A copy of the case's net whose BatchNorm layers use batch statistics."""
    def build():
        layers = OrderedDict()
        for name, module in lab.case.model.named_children():
            layers[name] = BatchStatisticsNorm(module) if isinstance(module, nn.BatchNorm2d) else module
        return nn.Sequential(layers)
    return lab.cached("train-mode-model", build)


@register_context("batchnorm-train-mode", "BatchNorm in training mode (batch statistics): model.eval() forgotten",
                  "torch modules start in training mode; pytorch-grad-cam calls model.eval() in its constructor, "
                  "torchcam only in ScoreCAM, a hand-written hook never (docs/peers.md, Shared plumbing); in Keras, "
                  "model(x, training=True)", GRADIENT + GUIDED + ("cam",))
def batchnorm_train_mode(lab):
    """The method on a copy of the net whose BatchNorm layers use the batch's statistics."""
    return {"model": _train_mode_model(lab)} if lab.has_batch_norm else None


# ----------------------------------------------------------------------------
# Grad-CAM++ (docs/peers.md, Grad-CAM++; silent disagreements 1): at least five formulas in the wild.
# Each is minicam's gradcampp with the options that name its choices (minicam/cam/gradcampp.py).
# ----------------------------------------------------------------------------


@register("gradcampp-alpha-renormalised", "method",
          "alpha renormalised to sum to 1 over the positive-gradient positions of each channel",
          "the Grad-CAM++ authors' extra step (adityac94 misc/utils.py), minicam's variant='authors'", ("gradcam++",))
def gradcampp_alpha_renormalised(lab, method):
    """alpha_kij / sum over {g_k > 0} of alpha_k: minicam's gradcampp(variant="authors")."""
    return lab.pre("gradcam++", variant="authors")


@register("gradcampp-authors-code", "method",
          "the authors' code: alpha renormalised over positive-gradient positions, weights ReLU(exp(S) g), no pole rule",
          "adityac94/Grad_CAM_plus_plus misc/utils.py grad_CAM_plus (docs/peers.md, Grad-CAM++)", ("gradcam++",))
def gradcampp_authors_code(lab, method):
    """gradcampp(variant="authors", exp_score=True, keep="g != 0"): alpha = exp(S) g^2 / (2 exp(S) g^2 +
    sum(A) exp(S) g^3) wherever g != 0, renormalised over g > 0; w_k = sum_ij alpha ReLU(exp(S) g)."""
    return lab.pre("gradcam++", variant="authors", exp_score=True, keep="g != 0")


@register("gradcampp-tf-keras-vis", "method",
          "alpha renormalised over ALL positions (not only g > 0), weights ReLU(exp(S) g)",
          "tf-keras-vis 0.8.7 gradcam_plus_plus.py (docs/peers.md, Grad-CAM++); the tf-keras-vis preset's options",
          ("gradcam++",))
def gradcampp_tf_keras_vis(lab, method):
    """gradcampp(exp_score=True, keep="g != 0", renormalise="all")."""
    return lab.pre("gradcam++", exp_score=True, keep="g != 0", renormalise="all")


@register("gradcampp-sum-g3A", "method",
          "the denominator 2 g^2 + sum_ij(g^3 A) (a sum over the product) instead of 2 g^2 + sum_ij(A) g^3",
          "1Konny/gradcam_plus_plus-pytorch issue #2 / PR #3, yiskw713 issue #2; torchcam's formula had its "
          "division worked (docs/peers.md, Grad-CAM++)", ("gradcam++",))
def gradcampp_sum_g3A(lab, method):
    """gradcampp(denominator="sum(g^3 A)", keep="g != 0"). On a GAP head g is constant over the
    positions of a channel, so sum(g^3 A) = g^3 sum(A) and this equals eq. 19 there."""
    return lab.pre("gradcam++", denominator="sum(g^3 A)", keep="g != 0")


@register("gradcampp-1konny", "method",
          "sum_ij(g^3 A) denominator + 1e-7, weights ReLU(exp(S) g)",
          "1Konny/gradcam_plus_plus-pytorch gradcam.py, copied into many projects", ("gradcam++",))
def gradcampp_1konny(lab, method):
    """gradcampp(denominator="sum(g^3 A)", alpha_eps=1e-7, keep="g != 0") times exp(S) of each image: its alpha is
    built from the plain g, and exp(S) enters only the ReLU'd weights, a per-image factor."""
    pre = lab.pre("gradcam++", denominator="sum(g^3 A)", alpha_eps=1e-7, keep="g != 0")
    return pre * _per_image(np.exp(lab.logits()))


@register("torchcam-0.5.0-gradcampp", "method",
          "no-op alpha division: alpha = g^2, weights sum_ij g^2 ReLU(g) = sum_ij ReLU(g)^3",
          "torchcam 0.3.2-0.5.0 GradCAMpp._get_weights: alpha[mask].div_(...) divides a "
          "copy made by boolean indexing (docs/peers.md, Grad-CAM++); the torchcam preset's options", ("gradcam++",))
def torchcam_gradcampp(lab, method):
    """gradcampp(divide_alpha=False): w_k = sum_ij g^2 ReLU(g), the alpha torchcam meant to divide."""
    return lab.pre("gradcam++", divide_alpha=False)


@register("gradcampp-pytorch-grad-cam", "method",
          "eq. 19 with 1e-6 added to the denominator, alpha = 0 where g = 0, no pole rule",
          "pytorch-grad-cam 1.5.7 grad_cam_plusplus.py (docs/peers.md, Grad-CAM++); the pytorch-grad-cam preset's "
          "options", ("gradcam++",))
def gradcampp_pytorch_grad_cam(lab, method):
    """gradcampp(alpha_eps=1e-6, keep="g != 0"): alpha = g^2 / (2 g^2 + sum(A) g^3 + 1e-6) where g != 0."""
    return lab.pre("gradcam++", alpha_eps=1e-6, keep="g != 0")


@register("gradcampp-unguarded", "method",
          "eq. 19 without minicam's pole rule (alpha kept where 2 + g sum(A) <= 0, signed layers only)",
          "eq. 19 as printed; pytorch-grad-cam without its eps", ("gradcam++",))
def gradcampp_unguarded(lab, method):
    """gradcampp(keep="g != 0"): alpha = g^2 / (2 g^2 + sum(A) g^3) where g != 0, even where 2 + g sum(A) <= 0."""
    return lab.pre("gradcam++", keep="g != 0")


@register("torchcam-0.5.0-smoothgradcampp", "method",
          "Smooth Grad-CAM++ without exp(S), the sum(g^3 A) denominator + 1e-8, ReLU of the last sample's "
          "gradient, and the last noisy sample's activations in the map",
          "torchcam 0.5.0 SmoothGradCAMpp (docs/peers.md, Smooth Grad-CAM++); the torchcam preset's options "
          "(with the case's noise)", ("smoothgradcam++",))
def torchcam_smoothgradcampp(lab, method):
    """smoothgradcampp(exp_weights=False, denominator="sum(g^3 A)", alpha_eps=1e-8, relu_gradient="last",
    activations="last-sample"), the case's noise."""
    return lab.pre("smoothgradcam++", exp_weights=False, denominator="sum(g^3 A)", alpha_eps=1e-8, relu_gradient="last",
                   activations="last-sample")


# ----------------------------------------------------------------------------
# XGrad-CAM (docs/peers.md, XGrad-CAM)
# ----------------------------------------------------------------------------


@register("xgradcam-eps-1e-7", "method", "weights sum(g A) / (sum(A) + 1e-7) for every channel",
          "pytorch-grad-cam xgrad_cam.py", ("xgradcam",))
def xgradcam_eps_1e7(lab, method):
    """w_k = sum(g A) / (sum(A) + 1e-7), also for channels with sum(A) <= 0."""
    A, g, _ = lab.activations_and_gradients()
    return formula("xgradcam", A, g, weight_eps=1e-7)


@register("xgradcam-eps-1e-8", "method", "weights sum(g A) / (sum(A) + 1e-8) for every channel",
          "torchcam methods/gradient.py XGradCAM", ("xgradcam",))
def xgradcam_eps_1e8(lab, method):
    """w_k = sum(g A) / (sum(A) + 1e-8), also for channels with sum(A) <= 0."""
    A, g, _ = lab.activations_and_gradients()
    return formula("xgradcam", A, g, weight_eps=1e-8)


# ----------------------------------------------------------------------------
# Score-CAM (docs/peers.md, Score-CAM, SS-CAM and IS-CAM; silent disagreements 6-7); minicam's default is the paper's Algorithm 1
# ----------------------------------------------------------------------------


def _scorecam(summary, source, **options):
    def variant(lab, method):
        return lab.pre("scorecam", **options)
    variant.__doc__ = f"{summary}: scorecam({', '.join(f'{k}={v!r}' for k, v in options.items())})"
    return summary, source, variant


def _torchcam_score_cam(method):
    def variant(lab, method):
        return lab.pre(method, score="logit", baseline=None, normalize_masks="before-upsample", mask_eps=1e-8,
                       no_evidence="formula", **({"coefficients": "torchcam"} if method == "iscam" else {}))
    variant.__doc__ = (f"{method} with torchcam 0.5.0's choices: logits, masks normalised (eps 1e-8) before "
                       "upsampling" + (", coefficients i (i + 1) / (2N)" if method == "iscam" else ""))
    return variant


for _method in ("sscam", "iscam"):
    register(f"torchcam-{_method}", "method",
             f"torchcam: {_method} on logits, masks normalised (eps 1e-8) before upsampling"
             + (", scales i (i + 1) / (2N)" if _method == "iscam" else ""),
             "torchcam 0.5.0 methods/activation.py (docs/peers.md, Score-CAM, SS-CAM and IS-CAM); the torchcam "
             "preset's options", (_method,))(_torchcam_score_cam(_method))


for _name, (_summary, _source, _function) in {
    "scorecam-logit": _scorecam(
        "logits instead of softmax probabilities (with the channel softmax)",
        "pytorch-grad-cam score_cam.py and torchcam ScoreCAM score the logit", score="logit"),
    "scorecam-no-channel-softmax": _scorecam(
        "channel weights = the masked inputs' probabilities, no softmax over channels, no baseline",
        "the Score-CAM authors' code (haofanwang/Score-CAM cam/scorecam.py)", channel_softmax=False, baseline=None),
    "scorecam-masks-before-upsample": _scorecam(
        "masks min-max normalised at the layer's resolution, then upsampled",
        "torchcam ScoreCAM (_normalize on the activations, then F.interpolate)", normalize_masks="before-upsample"),
    "torchcam-scorecam": _scorecam(
        "torchcam: logits, masks normalised (eps 1e-8) before bilinear upsampling, channel softmax",
        "torchcam 0.5.0 methods/activation.py ScoreCAM; the torchcam preset's options", score="logit", baseline=None,
        normalize_masks="before-upsample", mask_eps=1e-8, no_evidence="formula"),
    "pytorch-grad-cam-scorecam": _scorecam(
        "pytorch-grad-cam: logits, masks upsampled corner-aligned then normalised (eps 1e-8), channel softmax, "
        "float32 weights",
        "pytorch-grad-cam 1.5.7 score_cam.py (UpsamplingBilinear2d is align_corners=True); the pytorch-grad-cam "
        "preset's options", score="logit", baseline=None, mask_interpolation="bilinear-corners", mask_eps=1e-8,
        no_evidence="formula", weights_dtype="float32"),
    "tf-keras-vis-scorecam": _scorecam(
        "tf-keras-vis: probabilities as weights (no channel softmax, no baseline), corner-aligned masks, eps 1e-7, "
        "float32 weights",
        "tf-keras-vis 0.8.7 scorecam.py; the tf-keras-vis preset's options", score="softmax", channel_softmax=False,
        baseline=None, mask_interpolation="bilinear-corners", mask_eps=1e-7, no_evidence="formula",
        weights_dtype="float32"),
}.items():
    register(_name, "method", _summary, _source, ("scorecam",))(_function)


# ----------------------------------------------------------------------------
# Eigen-CAM (docs/peers.md, Eigen-CAM and EigenGrad-CAM): the SVD's sign and the centring
# ----------------------------------------------------------------------------

EIGEN = ("eigencam", "eigengradcam")


@register("eigen-sign-flipped", "method", "the first principal direction with the other sign (-v1)",
          "an SVD fixes v1 only up to its sign: pytorch-grad-cam issues #315, #364", EIGEN)
def eigen_sign_flipped(lab, method):
    """minus minicam's map: the projection on -v1."""
    return -lab.pre(method)


@register("eigen-centred", "method", "each channel centred over the positions before the SVD (PCA proper)",
          "pytorch-grad-cam utils/svd_on_activations.py get_2d_projection; the paper projects uncentred A", EIGEN)
def eigen_centred(lab, method):
    """minicam's map with center=True (each channel's mean over positions subtracted)."""
    return lab.pre(method, center=True)


@register("eigen-centred-flipped", "method", "centred, and the other sign of v1",
          "pytorch-grad-cam get_2d_projection with the sign its LAPACK returned", EIGEN)
def eigen_centred_flipped(lab, method):
    """minus minicam's centred map."""
    return -lab.pre(method, center=True)


@register("eigen-pytorch-grad-cam", "method", "centred, with the sign LAPACK returns (np.linalg.svd, full_matrices)",
          "pytorch-grad-cam 1.5.7 utils/svd_on_activations.py get_2d_projection; the pytorch-grad-cam preset's "
          "options", EIGEN)
def eigen_pytorch_grad_cam(lab, method):
    """minicam's map with center=True, sign="lapack"."""
    return lab.pre(method, center=True, sign="lapack")


# ----------------------------------------------------------------------------
# Ablation-CAM (docs/peers.md, Ablation-CAM)
# ----------------------------------------------------------------------------


@register("ablation-divide-by-y", "method", "weights (y - y_k) / y: divided by the signed score, not |y|",
          "pytorch-grad-cam ablation_cam.py: the map flips for a negative logit", ("ablationcam",))
def ablation_divide_by_y(lab, method):
    """ablationcam(divide_by="y"): (y - y_k) / y = sign(y) (y - y_k) / |y|."""
    return lab.pre(method, divide_by="y")


@register("ablation-pytorch-grad-cam", "method",
          "divided by y, float32 weights, ablation with 0 (or min - 1e7 where the layer's minimum is not 0)",
          "pytorch-grad-cam 1.5.7 ablation_cam.py and ablation_layer.py; the pytorch-grad-cam preset's options",
          ("ablationcam",))
def ablation_pytorch_grad_cam(lab, method):
    """ablationcam(ablation_value="pytorch-grad-cam", divide_by="y", weights_dtype="float32")."""
    return lab.pre(method, ablation_value="pytorch-grad-cam", divide_by="y", weights_dtype="float32")


@register("ablation-no-division", "method", "weights y - y_k: the drop itself, not divided by y",
          "the score drop without the paper's normalisation", ("ablationcam",))
def ablation_no_division(lab, method):
    """minicam's map times |y|: the weights y - y_k."""
    return lab.pre(method) * _per_image(np.abs(lab.logits()))


# ----------------------------------------------------------------------------
# CAM and the guided methods
# ----------------------------------------------------------------------------


@register("cam-mean-over-positions", "method", "sum_k (W_ck / (h w)) A_k: Grad-CAM's weights on a GAP head, no ReLU",
          "captum LayerGradCam on a GAP head (relu_attributions=False) returns CAM / (h w) (docs/peers.md, CAM)", ("cam",))
def cam_mean_over_positions(lab, method):
    """CAM divided by the number of positions h w."""
    pre = lab.pre("cam")
    return pre / (pre.shape[1] * pre.shape[2])


@register("guided-channel-sum", "method", "the colour channels summed instead of max |.| over channels",
          "minicam's channel_reduction='sum'; the peers return (N, C, H, W) and leave the reduction to the user",
          GUIDED)
def guided_channel_sum(lab, method):
    """minicam's guided map with channel_reduction="sum"."""
    return lab.pre(method, channel_reduction="sum")


@register("plain-gradient", "method", "the plain input gradient instead of guided backpropagation",
          "vanilla saliency (Simonyan et al. 2014) in place of Springenberg et al.'s guided ReLUs", GUIDED)
def plain_gradient(lab, method):
    """max over colour channels of |d y / d x| (times the normalised Grad-CAM for guided-gradcam)."""
    gradients, _ = input_gradients(lab.case.model, lab.case.x, lab.case.targets, guided=False)
    if method == "guided-gradcam":
        return guided_gradcam_map(gradients, positive(lab.pre("gradcam")))
    return reduce_channels(gradients, "max-abs")


@register("captum-guided-gradcam", "method",
          "Grad-CAM (with ReLU) upsampled by NEAREST and not normalised, times guided backpropagation",
          "captum attr/_core/guided_grad_cam.py (interpolate_mode='nearest' by default), reduced by max |.| "
          "over the colour channels; the captum preset's options", ("guided-gradcam",))
def captum_guided_gradcam(lab, method):
    """guided_gradcam(gradcam_interpolation="nearest", normalize_gradcam=False)."""
    return lab.pre("guided-gradcam", gradcam_interpolation="nearest", normalize_gradcam=False)


# ----------------------------------------------------------------------------
# Another method altogether
# ----------------------------------------------------------------------------


def _another_method(other):
    def variant(lab, method):
        if other == method or other not in lab.case.methods or lab.pre(other).shape != lab.pre(method).shape:
            return None  # the same method, one that does not apply, or one at another resolution
        return lab.pre(other), REGISTRY[other].final_relu
    variant.__doc__ = f"minicam's {other} map (with {other}'s own final ReLU rule)"
    return variant


for _other in REGISTRY:
    register(f"method-{_other}", "method", f"the map of {_other}, not of the method in the key",
             "a mix-up of methods, or two methods equal on this case (e.g. Grad-CAM = HiResCAM on a GAP head)",
             )(_another_method(_other))
