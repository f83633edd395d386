"""One record per method: everything minicam says about a method comes from here.

    REGISTRY[name]   a Method: the model-facing function, the formula, whether the paper ends
                     with a ReLU, the paper and its equation, the one-line formula, the options
    METHODS[name]    the model-facing function alone: f(model, x, layer, target=None, **options)
                     -> the raw map (N, h, w) at the layer's resolution

explain(), the README's method table (method_table()), the README that `minicam
export-cases` writes, verify's catalogue of variants and the lessons all read these records.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from minicam.cam.ablation import ablationcam, ablationcam_map
from minicam.cam.cam import cam, cam_map
from minicam.cam.eigen import eigencam, eigencam_map, eigengradcam, eigengradcam_map, kpcacam, kpcacam_map
from minicam.cam.gradcampp import gradcampp, gradcampp_map, smoothgradcampp, smoothgradcampp_map
from minicam.cam.gradient import (
    gradcam, gradcam_elementwise, gradcam_elementwise_map, gradcam_map, gradcam_plus, gradcam_plus_map,
    hirescam, hirescam_map, layercam, layercam_map, xgradcam, xgradcam_map,
)
from minicam.cam.guided import guided_backprop, guided_gradcam, guided_gradcam_map, reduce_channels
from minicam.cam.scorecam import iscam, scorecam, scorecam_map, sscam


@dataclass(frozen=True)
class Method:
    """What minicam knows about one method.

    name            the key ("gradcam++")
    function        f(model, x, layer, target=None, *, score=..., relu=..., **options) -> (N, h, w)
    formula         the map from what the method needs, e.g. formula(A, g, relu=...) for the
                    gradient family; `needs` names its positional arguments
    needs           what the formula takes, in order (A: activations, g: dy/dA, ...)
    final_relu      whether the method's paper ends with a ReLU of the map (the default of relu=)
    paper           authors, year, and the equation or section the formula is
    summary         the formula in one line, precise enough to reproduce the raw map
    options         the method's options beyond score= and relu=, in one line ("" if none)
    """

    name: str
    function: Callable
    formula: Callable
    needs: tuple
    final_relu: bool
    paper: str
    summary: str
    options: str = ""

    @property
    def from_gradients(self) -> bool:
        """Whether the formula is a function of A and g alone (and so of any other gradients)."""
        return self.needs == ("A", "g")


_A_G = ("A", "g")

_RECORDS = (
    Method("cam", cam, cam_map, ("A", "W_c"), False, "Zhou et al. 2016, eq. 2",
           "sum_k W[c, k] A_k, W the final Linear layer's weight after global average pooling (checked "
           "numerically; a clear error otherwise); no bias, no ReLU"),
    Method("gradcam", gradcam, gradcam_map, _A_G, True, "Selvaraju et al. 2017, eq. 1-2",
           "ReLU(sum_k mean_ij(g_k) A_k)", "counterfactual=True negates g (the paper's counterfactual explanations)"),
    Method("gradcam++", gradcampp, gradcampp_map, _A_G, True, "Chattopadhay et al. 2018, eq. 9, 10, 19",
           "ReLU(sum_k w_k A_k), w_k = sum_ij alpha_kij ReLU(g_kij), alpha = 1 / (2 + g sum_ab A_kab) (eq. 19) "
           "where g > 0 and that denominator is > 0, else 0; no exp(S) factor, no renormalisation of alpha",
           'variant="paper" (eq. 19), "authors" (alpha renormalised as their code), "exact" (eq. 10 with true '
           '2nd and 3rd derivatives); the peers\' choices: alpha_eps (in the denominator), keep="g != 0" (no pole rule), '
           'denominator="sum(g^3 A)", divide_alpha=False (torchcam\'s lost division), renormalise="positive" or '
           '"all", exp_score=True (derivatives times exp(S); overflows float32 above S = 88.7)'),
    Method("gradcam+", gradcam_plus, gradcam_plus_map, _A_G, True, "Lerma & Lucas 2022",
           "ReLU(sum_k mean_ij(ReLU(g_k)) A_k): what many tutorials call Grad-CAM++"),
    Method("hirescam", hirescam, hirescam_map, _A_G, True, "Draelos & Carin 2020",
           "ReLU(sum_k g_k * A_k)"),
    Method("gradcam-elementwise", gradcam_elementwise, gradcam_elementwise_map, _A_G, False,
           "pytorch-grad-cam's GradCAMElementWise", "sum_k ReLU(g_k * A_k): the ReLU inside the channel sum"),
    Method("xgradcam", xgradcam, xgradcam_map, _A_G, True, "Fu et al. 2020, eq. 11",
           "ReLU(sum_k w_k A_k), w_k = sum_ij(g A) / sum_ij(A), and w_k = 0 where sum_ij(A) <= 0 (no eps)",
           "weight_eps=e: sum(g A) / (sum(A) + e) for every channel, as the peers"),
    Method("layercam", layercam, layercam_map, _A_G, True, "Jiang et al. 2021, eq. 5-6",
           "ReLU(sum_k ReLU(g_k) * A_k)"),
    Method("scorecam", scorecam, scorecam_map, ("A", "C"), True, "Wang et al. 2020, Algorithm 1",
           "ReLU(sum_k alpha_k A_k), alpha = softmax over k of C_k, C_k = p(X * H_k) - p(0), p the target's "
           "softmax probability, H_k = min-max (exact; a constant channel gives 0) of A_k upsampled bilinearly "
           "(half-pixel) to the input size, the same mask for every colour channel; an image whose C_k are all 0 "
           "gets a zero map",
           "score, channel_softmax, baseline, mask_interpolation, normalize_masks, mask_eps, no_evidence, "
           "weights_dtype (each peer's choice)"),
    Method("sscam", sscam, scorecam_map, ("A", "C"), True, "Wang et al. 2020 (SS-CAM), Section 3",
           "Score-CAM with C_k = mean_s p(X * (H_k + delta_s)) - p(0), delta_s ~ N(0, noise_std^2) per pixel "
           "(35 samples, std 2.0), the same noise for every image; alpha = softmax over k of C_k",
           "n_samples, noise_std, rng, noise, and Score-CAM's options"),
    Method("iscam", iscam, scorecam_map, ("A", "C"), True, "Naidu et al. 2020 (IS-CAM)",
           "Score-CAM with C_k = (1/N) sum_i p(c_i X * H_k) - p(0), c_i = i (i - 1) / (2N), i = 1..N (N = 10); "
           "alpha = softmax over k of C_k",
           'n_samples, coefficients="paper" or "torchcam" (i (i + 1) / (2N)), and Score-CAM\'s options'),
    Method("ablationcam", ablationcam, ablationcam_map, ("A", "y", "y_ablated"), True,
           "Desai & Ramaswamy 2020, Section 3",
           "ReLU(sum_k w_k A_k), w_k = (y - y_k) / |y|, y_k the logit with channel k of the layer set to 0 "
           "(|y|, so that a negative logit does not flip the map)",
           'ablation_value (a number, or "pytorch-grad-cam": 0 or min - 1e7), divide_by="y", '
           'weights_dtype="float32"'),
    Method("eigencam", eigencam, eigencam_map, ("A",), False, "Muhammad & Yeasin 2020",
           "per image, O = A as (h*w, K), uncentred; the map is O v1 (v1 the first right singular vector), signed "
           "so that its sum is positive (if the sum is 0 to rounding: its largest-|.| element positive); no ReLU",
           'center=True: centre each channel first, as pytorch-grad-cam; sign="lapack": the sign LAPACK returns'),
    Method("eigengradcam", eigengradcam, eigengradcam_map, _A_G, False, "pytorch-grad-cam's EigenGradCAM",
           "eigencam of g * A", 'center=True, sign="lapack"'),
    Method("kpcacam", kpcacam, kpcacam_map, ("A",), False, "Karmani et al. 2024 (KPCA-CAM)",
           "per image, the positions' rows of A, each channel centred; kernel matrix tanh(<x_p, x_q> / K + 1), "
           "centred; the map is sqrt(lambda1) v1 of its first eigenpair, v1's largest-|.| element positive; no ReLU",
           'kernel ("sigmoid", "rbf", "poly", "linear"), gamma, coef0, degree, center'),
    Method("smoothgradcam++", smoothgradcampp, smoothgradcampp_map, ("A", "S_samples", "g_samples"), True,
           "Omeiza et al. 2019",
           "Grad-CAM++ with derivatives averaged over noisy inputs x + noise[s]: D_p = mean_s exp(S_s - max_s S_s) "
           "g_s^p for p = 1, 2, 3; alpha = D2 / (2 D2 + sum_ab A_ab D3) where D1 > 0 and alpha > 0, else 0; "
           "w_k = sum_ij alpha ReLU(D1); A of the clean input; the target class fixed from the clean input",
           "n_samples, noise_std, rng, noise; torchcam's choices: exp_weights=False, denominator, alpha_eps, "
           'relu_gradient="last", activations="last-sample"'),
    Method("guided-backprop", guided_backprop, reduce_channels, ("guided gradients",), False,
           "Springenberg et al. 2015",
           "the gradient of the logit with respect to the input with every nn.ReLU passing back only positive "
           "gradients where its input was positive, then max over the colour channels of |value|: (N, H, W)",
           'channel_reduction="max-abs" or "sum"'),
    Method("guided-gradcam", guided_gradcam, guided_gradcam_map, ("guided gradients", "Grad-CAM map"), False,
           "Selvaraju et al. 2017 (Guided Grad-CAM)",
           "guided backpropagation (N, C, H, W) times Grad-CAM (with ReLU) upsampled bilinearly (half-pixel) to "
           "the input size and min-max normalised per image, then max over colour channels of |value|",
           'channel_reduction="max-abs" or "sum"; gradcam_interpolation="nearest" and normalize_gradcam=False '
           "(captum's GuidedGradCam)"),
)

REGISTRY = {method.name: method for method in _RECORDS}
METHODS = {method.name: method.function for method in _RECORDS}


def method_table() -> str:
    """The README's table of methods, as markdown."""
    rows = ["| name | paper | raw map (N, h, w) | options |", "|---|---|---|---|"]
    rows += [f"| `{m.name}` | {m.paper} | {_cell(m.summary)} | {_cell(m.options)} |" for m in _RECORDS]
    return "\n".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", r"\|")  # a literal | inside a markdown table cell
