"""The steps after a method's raw map, each one explicit: ReLU, resize, normalise; and, per
preset, the options a library's own formulas imply.

Implementations that agree on a method's formula still return different maps
because they differ here (docs/peers.md, silent disagreements 2 to 5): where the
ReLU sits, which upsampling grid, min-max or max scaling, which
eps, and whether maps are normalised before or after resizing. A `Pipeline` names
every choice; `PRESETS` holds one record per peer's choices, with its note.

A preset means "as that library computes it": besides the steps after the map, a
library preset carries `method_options`, per method, the options of minicam's method
function that reproduce that library's formula, eps, upsampling and bugs (each option is
documented in its method's module and in docs/peers.md). explain() applies them under the
caller's own options, so any one of them can be switched back.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np

from minicam.cam.maps import positive
from minicam.errors import require_finite
from minicam.ops.resize import interpolation_matrix

RELU_CHOICES = ("method", "none", "always")
NORMALIZE_CHOICES = ("minmax", "max", "none")
INTERPOLATIONS = ("bilinear", "bilinear-corners", "nearest", "bicubic")
ORDERS = ("resize-then-normalize", "normalize-then-resize", "normalize-resize-normalize")


@dataclass(frozen=True)
class Pipeline:
    """How a raw map (N, h, w) becomes a map at the input's size (N, H, W).

    relu           "method": the method's own final ReLU, where its paper has one;
                   "none": no ReLU (signed maps; the method's final ReLU is skipped);
                   "always": a ReLU on every map, even CAM's and Eigen-CAM's.
    normalize      per image: "minmax" (x - min) / (max - min); "max" x / max; "none".
    eps            None: exact scaling, and a map with no range (constant, or max <= 0
                   for "max") becomes all zeros, never NaN. A number: added to the
                   denominator, as peers do: (x - min) / (max - min + eps), x / (max + eps).
    interpolation  "bilinear" (half-pixel centres: torch align_corners=False, cv2
                   INTER_LINEAR, skimage), "bilinear-corners" (torch align_corners=True,
                   scipy.ndimage.zoom order=1), "nearest" (torch's legacy nearest),
                   "bicubic" (torch's, A = -0.75).
    order          "resize-then-normalize", "normalize-then-resize", or
                   "normalize-resize-normalize" (normalise at both resolutions).
    dtype          None keeps the map's dtype; "float32" casts the result.
    note           one line: where these choices come from
    method_options per method name, the options explain() passes to that method (under the
                   caller's own): the library's method-internal choices
    method_note    one line: what those options reproduce
    """

    name: str = "custom"
    relu: str = "method"
    normalize: str = "minmax"
    eps: float | None = None
    interpolation: str = "bilinear"
    order: str = "resize-then-normalize"
    dtype: str | None = None
    note: str = ""
    method_options: "MappingProxyType[str, MappingProxyType]" = field(default_factory=dict)
    method_note: str = ""

    def options_for(self, method: str) -> dict:
        """The options this preset implies for `method` ({} if none)."""
        return dict(self.method_options.get(method, {}))

    def __post_init__(self):
        frozen = {method: MappingProxyType(dict(options)) for method, options in dict(self.method_options).items()}
        object.__setattr__(self, "method_options", MappingProxyType(frozen))
        for field, value, choices in (
            ("relu", self.relu, RELU_CHOICES),
            ("normalize", self.normalize, NORMALIZE_CHOICES),
            ("interpolation", self.interpolation, INTERPOLATIONS),
            ("order", self.order, ORDERS),
        ):
            if value not in choices:
                raise ValueError(f"unknown {field} {value!r}; choose one of {choices}")
        if self.eps is not None and (isinstance(self.eps, bool) or not isinstance(self.eps, (int, float, np.floating))):
            raise TypeError(f"eps must be a number (or None, or 'exact' in explain), got {self.eps!r} of type "
                            f"{type(self.eps).__name__}")
        if self.eps is not None and not (np.isfinite(self.eps) and self.eps >= 0):
            raise ValueError(f"eps must be None or a finite non-negative number, got {self.eps!r}")

    def __hash__(self):
        return hash((self.name, self.relu, self.normalize, self.eps, self.interpolation, self.order, self.dtype))


# The options each library's formulas imply (docs/peers.md, each method's section, names the file)
PYTORCH_GRAD_CAM_OPTIONS = {
    "gradcam++": {"alpha_eps": 1e-6, "keep": "g != 0"},
    "xgradcam": {"weight_eps": 1e-7},
    "scorecam": {"score": "logit", "baseline": None, "mask_interpolation": "bilinear-corners", "mask_eps": 1e-8,
                 "no_evidence": "formula", "weights_dtype": "float32"},
    "ablationcam": {"ablation_value": "pytorch-grad-cam", "divide_by": "y", "weights_dtype": "float32"},
    "eigencam": {"center": True, "sign": "lapack"},
    "eigengradcam": {"center": True, "sign": "lapack"},
}
TORCHCAM_SCORE_OPTIONS = {"score": "logit", "baseline": None, "normalize_masks": "before-upsample", "mask_eps": 1e-8,
                          "no_evidence": "formula"}
TORCHCAM_OPTIONS = {
    "gradcam++": {"divide_alpha": False, "denominator": "sum(g^3 A)", "alpha_eps": 1e-8, "keep": "g != 0"},
    "smoothgradcam++": {"n_samples": 4, "noise_std": 0.3, "exp_weights": False, "denominator": "sum(g^3 A)",
                        "alpha_eps": 1e-8, "relu_gradient": "last", "activations": "last-sample"},
    "xgradcam": {"weight_eps": 1e-8},
    "scorecam": TORCHCAM_SCORE_OPTIONS,
    "sscam": {**TORCHCAM_SCORE_OPTIONS, "n_samples": 35, "noise_std": 2.0},
    "iscam": {**TORCHCAM_SCORE_OPTIONS, "n_samples": 10, "coefficients": "torchcam"},
}
CAPTUM_OPTIONS = {"guided-gradcam": {"gradcam_interpolation": "nearest", "normalize_gradcam": False}}
TF_KERAS_VIS_OPTIONS = {
    "gradcam++": {"exp_score": True, "keep": "g != 0", "renormalise": "all"},
    "scorecam": {"score": "softmax", "channel_softmax": False, "baseline": None, "mask_interpolation": "bilinear-corners",
                 "mask_eps": 1e-7, "no_evidence": "formula", "weights_dtype": "float32"},
}


PRESETS = {preset.name: preset for preset in (
    Pipeline("minicam", relu="method", normalize="minmax", eps=None, interpolation="bilinear",
             order="resize-then-normalize",
             note="the method's own ReLU; bilinear half-pixel upsampling; exact per-image min-max (a constant map "
                  "gives 0)"),
    Pipeline("paper", relu="method", normalize="none", interpolation="bilinear", order="resize-then-normalize",
             note="the method's own ReLU; bilinear half-pixel upsampling (the papers' 'upsample to the image "
                  "size'); no normalisation"),
    Pipeline("pytorch-grad-cam", relu="always", normalize="minmax", eps=1e-7, interpolation="bilinear",
             order="normalize-resize-normalize", dtype="float32",
             note="ReLU on every map; min-max with eps 1e-7 at the layer's resolution; cv2 bilinear (half-pixel) "
                  "resize; min-max again at full size; float32 (base_cam.py, scale_cam_image)",
             method_options=PYTORCH_GRAD_CAM_OPTIONS,
             method_note="1.5.7: Grad-CAM++ eps 1e-6 in alpha's denominator and alpha wherever g != 0 (no pole rule); "
                         "XGrad-CAM eps 1e-7; Score-CAM on logits, masks upsampled corner-aligned "
                         "(UpsamplingBilinear2d), eps 1e-8, float32 weights; Ablation-CAM divides by y (not |y|), "
                         "float32 weights, ablates with 0 or min - 1e7; Eigen-CAM and EigenGrad-CAM centred, with "
                         "LAPACK's sign"),
    Pipeline("torchcam", relu="method", normalize="minmax", eps=1e-8, interpolation="bilinear",
             order="normalize-then-resize",
             note="ReLU only where torchcam's method has one (not CAM); min-max with eps 1e-8 at the layer's "
                  "resolution (_normalize); bilinear align_corners=False upsampling as in its fuse_cams and metrics",
             method_options=TORCHCAM_OPTIONS,
             method_note="0.5.0: GradCAMpp's lost division (alpha = g^2, a bug: the paper divides by "
                         "2 g^2 + g^3 sum(A)); SmoothGradCAMpp without exp(S), the sum(g^3 A) denominator + 1e-8, "
                         "ReLU of the last sample's gradient and the last noisy sample's activations (a bug: the "
                         "paper averages, on the clean activations); XGradCAM eps 1e-8; ScoreCAM, SSCAM, ISCAM on "
                         "logits with masks normalised (eps 1e-8) before upsampling; ISCAM's coefficients "
                         "i (i + 1) / (2N)"),
    Pipeline("captum", relu="none", normalize="none", interpolation="nearest", order="resize-then-normalize",
             note="no ReLU (relu_attributions=False) and no normalisation; nearest upsampling "
                  "(LayerAttribution.interpolate's default)",
             method_options=CAPTUM_OPTIONS,
             method_note="0.9.0: GuidedGradCam multiplies the guided gradients by the ReLU'd Grad-CAM upsampled by "
                         "nearest (interpolate_mode's default) and not normalised"),
    Pipeline("tf-keras-vis", relu="always", normalize="minmax", eps=1e-7, interpolation="bilinear-corners",
             order="resize-then-normalize",
             note="ReLU on every map (activation_modifier); scipy zoom(order=1), a corner-aligned linear grid; "
                  "then (x - min) / (max - min + 1e-7)",
             method_options=TF_KERAS_VIS_OPTIONS,
             method_note="0.8.7: GradcamPlusPlus's exp(S) factor (float32 overflow above S = 88.7: NaN maps there, an "
                         "error here) and alpha renormalised over all positions (the authors' code renormalises over "
                         "g > 0; the paper not at all); Scorecam weights = the softmax probability of the masked input "
                         "(no channel softmax, no baseline), corner-aligned masks (zoom), eps 1e-7, float32 weights"),
)}


def preset_table() -> str:
    """The README's tables of presets, as markdown, from the records: the steps after the map,
    then the method options of each library preset."""
    rows = ["| preset | ReLU | normalisation | upsampling | order | dtype | where it comes from |",
            "|---|---|---|---|---|---|---|"]
    for p in PRESETS.values():
        normalisation = p.normalize if p.normalize == "none" else f"{p.normalize}, eps {p.eps or 'none (exact)'}"
        rows.append(f"| `{p.name}` | {p.relu} | {normalisation} | {p.interpolation} | {p.order} | "
                    f"{p.dtype or 'as the input'} | {p.note} |")
    rows += ["", "| preset | method | options that reproduce the library |", "|---|---|---|"]
    for p in PRESETS.values():
        for method, options in p.method_options.items():
            said = ", ".join(f"{key}={value!r}" for key, value in options.items())
            rows.append(f"| `{p.name}` | `{method}` | {said.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


def resolve(convention: str = "minicam", **overrides) -> Pipeline:
    """The preset `convention` with some steps overridden.

    An override of None keeps the preset's choice; eps="exact" asks for exact
    scaling (Pipeline.eps = None) on a preset that adds an eps.
    """
    if not isinstance(convention, str) or convention not in PRESETS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {tuple(PRESETS)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if not changes:
        return PRESETS[convention]
    preset = PRESETS[convention]
    said = ", ".join(f"{k}={v!r}" for k, v in changes.items())
    if changes.get("eps") == "exact":
        changes["eps"] = None
    return replace(preset, **changes, note=f"{preset.note}; overridden: {said}")


# ----------------------------------------------------------------------------
# The steps
# ----------------------------------------------------------------------------


def normalize_maps(maps: np.ndarray, how: str = "minmax", eps: float | None = None) -> np.ndarray:
    """Scale each map of a batch (N, H, W) on its own; see Pipeline for the rules.
    A map with a NaN or an infinity is an error (NonFiniteError): only a finite map with
    no range becomes zeros."""
    require_finite(maps, "the map to normalise", "the method's raw map must be finite; see the error's source")
    if how == "none":
        return maps
    flat = maps.reshape(len(maps), -1)
    top = flat.max(axis=1)[:, None, None]
    if how == "minmax":
        bottom = flat.min(axis=1)[:, None, None]
        shifted, scale = maps - bottom, top - bottom
    else:  # "max"
        shifted, scale = maps, top
    if eps is not None:
        return shifted / (scale + eps)
    usable = scale > 0
    return np.where(usable, shifted / np.where(usable, scale, 1), 0.0).astype(maps.dtype, copy=False)


def resize_maps(maps: np.ndarray, size: tuple[int, int], interpolation: str = "bilinear") -> np.ndarray:
    """Resize each map (N, h, w) -> (N, H, W): rows mixed by M_h (H, h), columns by M_w (W, w)."""
    (h, w), (H, W) = maps.shape[1:], size
    if (h, w) == (H, W) and interpolation != "bicubic":
        return maps
    mode = "bilinear" if interpolation == "bilinear-corners" else interpolation
    corners = interpolation == "bilinear-corners" if mode != "nearest" else None
    rows = interpolation_matrix(h, H, mode, corners).astype(maps.dtype)
    cols = interpolation_matrix(w, W, mode, corners).astype(maps.dtype)
    return rows @ maps @ cols.T  # (H, h) @ (N, h, w) @ (w, W) -> (N, H, W): two small products


def steps(pipeline: Pipeline, method_has_relu: bool, size: tuple[int, int]) -> list:
    """The pipeline's steps in order, as (name, function) pairs: "relu" (if it applies), then
    "resize" and "normalize" in the pipeline's order. postprocess runs them; verify's pipeline
    variants move or replace one of them."""
    relu = pipeline.relu == "always" or (pipeline.relu == "method" and method_has_relu)
    normalize = ("normalize", lambda maps: normalize_maps(maps, pipeline.normalize, pipeline.eps))
    resize = ("resize", lambda maps: resize_maps(maps, size, pipeline.interpolation))
    order = {"resize-then-normalize": [resize, normalize], "normalize-then-resize": [normalize, resize],
             "normalize-resize-normalize": [normalize, resize, normalize]}[pipeline.order]
    return ([("relu", positive)] if relu else []) + order


def run_steps(maps: np.ndarray, step_list: list) -> np.ndarray:
    for _, step in step_list:
        maps = step(maps)
    return maps


def postprocess(raw: np.ndarray, size: tuple[int, int], pipeline: Pipeline, method_has_relu: bool) -> np.ndarray:
    """ReLU, resize and normalise `raw` (N, h, w) as `pipeline` says (steps), then its dtype.

    `raw` is the method's map WITHOUT its final ReLU; method_has_relu says
    whether the method's paper has one (used by relu="method").
    """
    maps = run_steps(raw, steps(pipeline, method_has_relu, size))
    return maps.astype(np.float32) if pipeline.dtype == "float32" else maps
