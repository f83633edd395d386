"""Pipeline variants: minicam's method map, finished another way.

A key's stage says what happens after the method's map (cases.finish): for
"raw", only the method's final ReLU; for a preset, the preset's ReLU, resize
and normalisation (minicam.cam.conventions). Peers and tutorials differ in
exactly these steps (docs/peers.md, Shared plumbing; silent disagreements 2-5 and 12),
so each difference is a variant here. conventions.steps gives a preset's steps as a list,
so a variant can move or replace one step and keep the others:

    steps(pipeline, has_relu, size) -> [("relu", f), ("resize", f), ("normalize", f), ...]

Signature of a variant: f(pre_relu, lab, stage, has_relu) -> finished map, or None
where it does not apply (or changes nothing by construction).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from minicam.cam.conventions import PRESETS, normalize_maps, resize_maps, run_steps, steps
from minicam.cam.maps import final_relu, positive
from minicam.conformance.catalogue import register
from minicam.conformance.tfresize import tf_resize_maps


def preset_pipeline(stage):
    return replace(PRESETS[stage], dtype=None)


def _with(stage, lab, pre, has_relu, **changes):
    """The preset with some of its choices changed; None if the change changes nothing."""
    pipeline = preset_pipeline(stage)
    changed = replace(pipeline, **changes)
    if changed == pipeline:
        return None
    return run_steps(pre, steps(changed, has_relu, lab.case.size))


# ----------------------------------------------------------------------------
# The ReLU
# ----------------------------------------------------------------------------


@register("missing-relu", "pipeline", "no ReLU where the method (or the preset) has one",
          "captum LayerGradCam's default relu_attributions=False; torchcam CAM (docs/peers.md, Shared plumbing; silent disagreements 2)")
def missing_relu(pre, lab, stage, has_relu):
    """raw: the map before the method's ReLU; a preset: the preset with relu="none"."""
    if stage == "raw":
        return pre if has_relu else None
    return _with(stage, lab, pre, has_relu, relu="none")


@register("relu-always", "pipeline", "a ReLU on a method that has none (CAM, Eigen-CAM, ...)",
          "pytorch-grad-cam and tf-keras-vis ReLU every map (base_cam.py, activation_modifier)")
def relu_always(pre, lab, stage, has_relu):
    """raw: ReLU of a method that has none; a preset: the preset with relu="always"."""
    if stage == "raw":
        return None if has_relu else positive(pre)
    return _with(stage, lab, pre, has_relu, relu="always")


@register("normalise-before-relu", "pipeline", "min-max normalisation BEFORE the ReLU, which then does nothing",
          "pytorch-grad-cam before PR #152 (issue #149, October 2021)")
def normalise_before_relu(pre, lab, stage, has_relu):
    """The preset's steps with the ReLU moved right after the first normalisation."""
    return _relu_moved_after("normalize", pre, lab, stage, has_relu)


# ----------------------------------------------------------------------------
# Normalisation
# ----------------------------------------------------------------------------


@register("per-batch-normalisation", "pipeline", "one min and max for the whole batch instead of per image",
          "none of the peers (they all normalise per image, docs/peers.md, silent disagreements 5); a common hand-written mistake")
def per_batch_normalisation(pre, lab, stage, has_relu):
    """The preset's steps with each normalisation taken over all images at once."""
    pipeline = preset_pipeline(stage) if stage != "raw" else None
    if pipeline is None or pipeline.normalize == "none" or len(pre) < 2:
        return None

    def batch_normalize(maps):  # the batch's maps stacked into one tall map, normalised, split again
        tall = maps.reshape(1, -1, maps.shape[-1])
        return normalize_maps(tall, pipeline.normalize, pipeline.eps).reshape(maps.shape)

    order = [(name, batch_normalize if name == "normalize" else f)
             for name, f in steps(pipeline, has_relu, lab.case.size)]
    return run_steps(pre, order)


@register("minmax-normalisation", "pipeline", "min-max normalised where no normalisation is wanted",
          "a raw map (or a captum / paper map) given after a library's normalisation")
def minmax_normalisation(pre, lab, stage, has_relu):
    """raw: the map min-max normalised (exact); an unnormalised preset: with normalize="minmax"."""
    if stage == "raw":
        return normalize_maps(final_relu(pre, has_relu), "minmax")
    return _with(stage, lab, pre, has_relu, normalize="minmax", eps=None) if \
        preset_pipeline(stage).normalize == "none" else None


@register("torchcam-normalized", "pipeline", "(x - min) / (max - min + 1e-8) at the layer's resolution",
          "torchcam's default normalized=True (methods/core.py _normalize) given as a raw map")
def torchcam_normalized(pre, lab, stage, has_relu):
    """The raw map min-max normalised with 1e-8 added to the range."""
    if stage != "raw":
        return None
    return normalize_maps(final_relu(pre, has_relu), "minmax", 1e-8)


@register("uint8-before-resize", "pipeline", "min-max normalised and quantised to uint8 (255 levels) before resizing",
          "the CAM authors' pytorch_CAM.py: np.uint8(255 * cam) before cv2.resize (docs/peers.md, CAM; silent disagreements 12); here the "
          "quantised map is resized in floating point and divided by 255")
def uint8_before_resize(pre, lab, stage, has_relu):
    """The preset's steps with min-max and floor(255 x) / 255 inserted before the resize."""
    if stage == "raw" or preset_pipeline(stage).normalize == "none":
        return None
    order = steps(preset_pipeline(stage), has_relu, lab.case.size)
    where = [name for name, _ in order].index("resize")
    order[where:where] = [("normalize-exact", lambda m: normalize_maps(m, "minmax")),
                          ("quantise", lambda m: np.floor(255 * m).astype(m.dtype) / 255)]
    return run_steps(pre, order)


# ----------------------------------------------------------------------------
# One choice of the preset changed: normalisation, eps, resizing, and their order
# ----------------------------------------------------------------------------


def _preset_with(field, value):
    """The variant "the key's preset with `field` = `value`" (None for raw maps, and for a change
    of eps or order on a preset that does not normalise: it would change nothing)."""
    def variant(pre, lab, stage, has_relu):
        if stage == "raw" or (field in ("eps", "order") and preset_pipeline(stage).normalize == "none"):
            return None
        return _with(stage, lab, pre, has_relu, **{field: value})
    variant.__doc__ = f"the preset with {field}={value!r}"
    return variant


DISAGREE = "docs/peers.md, silent disagreements"
for _name, _field, _value, _summary, _source in (
    ("max-normalisation", "normalize", "max", "divided by the max, without subtracting the min",
     "keras-io grad_cam.py (relu(h) / max(h)); the Grad-CAM++ authors' cam / max(cam) (docs/peers.md, Shared plumbing)"),
    ("no-normalisation", "normalize", "none", "not normalised where the preset normalises",
     "captum returns unnormalised maps (docs/peers.md, Shared plumbing)"),
    ("eps-1e-7", "eps", 1e-7, "1e-7 added to the range (max - min + 1e-7)",
     f"pytorch-grad-cam scale_cam_image, tf-keras-vis normalize ({DISAGREE} 5)"),
    ("eps-1e-8", "eps", 1e-8, "1e-8 added to the range (max - min + 1e-8)", f"torchcam _normalize ({DISAGREE} 5)"),
    ("eps-none", "eps", None, "exact scaling, no eps added to the range",
     f"minicam's own preset; keras-io, the CAM and Grad-CAM++ authors ({DISAGREE} 5)"),
    ("half-pixel-upsampling", "interpolation", "bilinear", "bilinear with half-pixel centres (align_corners=False)",
     "cv2 INTER_LINEAR, torch F.interpolate(mode='bilinear') with its default align_corners=False, skimage "
     f"resize ({DISAGREE} 4)"),
    ("corner-aligned-upsampling", "interpolation", "bilinear-corners",
     "bilinear with corner-aligned grid (align_corners=True)",
     f"scipy.ndimage.zoom(order=1) in tf-keras-vis; torch UpsamplingBilinear2d ({DISAGREE} 4)"),
    ("nearest-upsampling", "interpolation", "nearest", "nearest-neighbour upsampling",
     "captum LayerAttribution.interpolate's default (docs/peers.md, Shared plumbing)"),
    ("bicubic-upsampling", "interpolation", "bicubic", "bicubic upsampling (torch's, a = -0.75)",
     "torchcam overlay_mask and keras-io use PIL's bicubic, whose kernel is not torch's (not reproduced exactly) "
     f"({DISAGREE} 4)"),
    ("resize-then-normalise", "order", "resize-then-normalize", "resized first, then normalised",
     f"tf-keras-vis (zoom, then normalize) ({DISAGREE} 3)"),
    ("normalise-then-resize", "order", "normalize-then-resize", "normalised at the layer's resolution, then resized",
     f"torchcam's maps, upsampled afterwards ({DISAGREE} 3)"),
    ("normalise-resize-normalise", "order", "normalize-resize-normalize", "normalised, resized, normalised again",
     f"pytorch-grad-cam base_cam.py scale_cam_image twice ({DISAGREE} 3)"),
):
    register(_name, "pipeline", _summary, _source)(_preset_with(_field, _value))


# ----------------------------------------------------------------------------
# Another framework's resize kernel, and the ReLU in another place
# ----------------------------------------------------------------------------


def _with_resize(resize):
    """The variant "the key's preset with its resize step replaced by `resize(maps, size)`"."""
    def variant(pre, lab, stage, has_relu):
        if stage == "raw":
            return None
        size = lab.case.size
        order = [(name, (lambda maps: resize(maps, size)) if name == "resize" else f)
                 for name, f in steps(preset_pipeline(stage), has_relu, size)]
        return run_steps(pre, order)
    return variant


for _name, _kernel, _antialias, _summary, _source in (
    ("tf-bicubic-upsampling", "bicubic", False,
     "TensorFlow's bicubic: Keys a = -0.5, half-pixel centres, border taps dropped (tf.image.resize)",
     "tf.image.resize(method='bicubic'), keras.ops.image.resize and keras.layers.Resizing "
     "(minicam/conformance/tfresize.py); with antialias=True the same when upsampling by an integer factor, "
     "and its bilinear with or without antialias is half-pixel bilinear when upsampling"),
):
    def _resize(maps, size, kernel=_kernel, antialias=_antialias):
        return tf_resize_maps(maps, size, kernel, antialias)
    _function = _with_resize(_resize)
    _function.__doc__ = f"the preset with its resize done by tf.image.resize(method={_kernel!r}, antialias={_antialias})"
    register(_name, "pipeline", _summary, _source)(_function)


@register("relu-after-resize", "pipeline", "the ReLU applied after upsampling instead of before",
          "a pipeline that resizes the signed map and clips afterwards (bicubic and other kernels with negative "
          "lobes, and bilinear on signed maps, then differ)")
def relu_after_resize(pre, lab, stage, has_relu):
    """The preset's steps with the ReLU moved right after the resize."""
    return _relu_moved_after("resize", pre, lab, stage, has_relu)


def _relu_moved_after(step, pre, lab, stage, has_relu):
    """The preset's steps with the ReLU moved right after the first `step` (None where there is no ReLU,
    no such step, or no normalisation to move it after)."""
    if stage == "raw" or (step == "normalize" and preset_pipeline(stage).normalize == "none"):
        return None
    order = steps(preset_pipeline(stage), has_relu, lab.case.size)
    names = [name for name, _ in order]
    if "relu" not in names or step not in names:
        return None
    relu_step = order.pop(names.index("relu"))
    order.insert([name for name, _ in order].index(step) + 1, relu_step)
    return run_steps(pre, order)


@register("keras-io-heatmap", "pipeline",
          "the keras-io tutorial's pipeline: ReLU, divided by the max at the layer's resolution, then upsampled "
          "bilinearly (no min subtracted, no normalisation after the resize)",
          "keras-io examples/vision/grad_cam.py: np.maximum(heatmap, 0) / np.max(heatmap), then resized for display")
def keras_io_heatmap(pre, lab, stage, has_relu):
    """positive(pre) / max at the layer's resolution, then bilinear half-pixel upsampling (cv2 INTER_LINEAR)."""
    if stage == "raw":
        return None
    return resize_maps(normalize_maps(positive(pre), "max"), lab.case.size, "bilinear")
