"""Pipeline variants: minicam's method map, finished another way.

A key's stage says what happens after the method's map (cases.finish): for
"raw", only the method's final ReLU; for a preset, the preset's ReLU, resize
and normalisation (minicam.cam.conventions). Peers and tutorials differ in
exactly these steps (docs/peers.md, Shared plumbing; silent disagreements 2-5; silent disagreements 12), so each
difference is a variant here. The steps are written as a list, so a variant
can move or replace one step and keep the others:

    steps(pipeline, has_relu, size) -> [("relu", f), ("resize", f), ("normalize", f), ...]

Signature of a variant: f(pre_relu, lab, stage, has_relu) -> finished map, or None
where it does not apply (or changes nothing by construction).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from minicam.cam.conventions import PRESETS, normalize_maps, resize_maps
from minicam.conformance.catalogue import register


def preset_pipeline(stage):
    return replace(PRESETS[stage], dtype=None)


def steps(pipeline, has_relu, size):
    """The preset's steps in order, as (name, function) pairs (= conventions.postprocess)."""
    relu_applies = pipeline.relu == "always" or (pipeline.relu == "method" and has_relu)
    result = [("relu", lambda m: np.maximum(m, 0))] if relu_applies else []
    normalize = ("normalize", lambda m: normalize_maps(m, pipeline.normalize, pipeline.eps))
    resize = ("resize", lambda m: resize_maps(m, size, pipeline.interpolation))
    if pipeline.order == "resize-then-normalize":
        result += [resize, normalize]
    elif pipeline.order == "normalize-then-resize":
        result += [normalize, resize]
    else:
        result += [normalize, resize, normalize]
    return result


def run(maps, step_list):
    for _, function in step_list:
        maps = function(maps)
    return maps


def _with(stage, lab, pre, has_relu, **changes):
    """The preset with some of its choices changed; None if the change changes nothing."""
    pipeline = preset_pipeline(stage)
    changed = replace(pipeline, **changes)
    if changed == pipeline:
        return None
    return run(pre, steps(changed, has_relu, lab.case.size))


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
        return None if has_relu else np.maximum(pre, 0)
    return _with(stage, lab, pre, has_relu, relu="always")


@register("normalise-before-relu", "pipeline", "min-max normalisation BEFORE the ReLU, which then does nothing",
          "pytorch-grad-cam before PR #152 (issue #149, October 2021)")
def normalise_before_relu(pre, lab, stage, has_relu):
    """The preset's steps with the ReLU moved right after the first normalisation."""
    if stage == "raw":
        return None
    order = steps(preset_pipeline(stage), has_relu, lab.case.size)
    names = [name for name, _ in order]
    if "relu" not in names or "normalize" not in names or preset_pipeline(stage).normalize == "none":
        return None
    relu_step = order.pop(names.index("relu"))
    first_normalize = [name for name, _ in order].index("normalize")
    order.insert(first_normalize + 1, relu_step)
    return run(pre, order)


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
    return run(pre, order)


@register("max-normalisation", "pipeline", "divided by the max, without subtracting the min",
          "keras-io grad_cam.py (relu(h) / max(h)); the Grad-CAM++ authors' cam / max(cam) (docs/peers.md, Shared plumbing)")
def max_normalisation(pre, lab, stage, has_relu):
    """The preset with normalize="max" (x / max)."""
    return None if stage == "raw" else _with(stage, lab, pre, has_relu, normalize="max")


@register("minmax-normalisation", "pipeline", "min-max normalised where no normalisation is wanted",
          "a raw map (or a captum / paper map) given after a library's normalisation")
def minmax_normalisation(pre, lab, stage, has_relu):
    """raw: the map min-max normalised (exact); an unnormalised preset: with normalize="minmax"."""
    if stage == "raw":
        return normalize_maps(np.maximum(pre, 0) if has_relu else pre, "minmax")
    return _with(stage, lab, pre, has_relu, normalize="minmax", eps=None) if \
        preset_pipeline(stage).normalize == "none" else None


@register("torchcam-normalized", "pipeline", "(x - min) / (max - min + 1e-8) at the layer's resolution",
          "torchcam's default normalized=True (methods/core.py _normalize) given as a raw map")
def torchcam_normalized(pre, lab, stage, has_relu):
    """The raw map min-max normalised with 1e-8 added to the range."""
    if stage != "raw":
        return None
    return normalize_maps(np.maximum(pre, 0) if has_relu else pre, "minmax", 1e-8)


@register("no-normalisation", "pipeline", "not normalised where the preset normalises",
          "captum returns unnormalised maps (docs/peers.md, Shared plumbing)")
def no_normalisation(pre, lab, stage, has_relu):
    """The preset with normalize="none"."""
    return None if stage == "raw" else _with(stage, lab, pre, has_relu, normalize="none")


def _eps(value, who):
    def variant(pre, lab, stage, has_relu):
        if stage == "raw" or preset_pipeline(stage).normalize == "none":
            return None
        return _with(stage, lab, pre, has_relu, eps=value)
    variant.__doc__ = f"the preset's normalisation with eps={value} ({who})"
    return variant


register("eps-1e-7", "pipeline", "1e-7 added to the range (max - min + 1e-7)",
         "pytorch-grad-cam scale_cam_image, tf-keras-vis normalize (docs/peers.md, silent disagreements 5)")(_eps(1e-7, "pytorch-grad-cam"))
register("eps-1e-8", "pipeline", "1e-8 added to the range (max - min + 1e-8)",
         "torchcam _normalize (docs/peers.md, silent disagreements 5)")(_eps(1e-8, "torchcam"))
register("eps-none", "pipeline", "exact scaling, no eps added to the range",
         "minicam's own preset; keras-io, the CAM and Grad-CAM++ authors (docs/peers.md, silent disagreements 5)")(_eps(None, "exact"))


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
    return run(pre, order)


# ----------------------------------------------------------------------------
# Resizing, and the order of resizing and normalising
# ----------------------------------------------------------------------------


def _interpolation(value):
    def variant(pre, lab, stage, has_relu):
        return None if stage == "raw" else _with(stage, lab, pre, has_relu, interpolation=value)
    variant.__doc__ = f"the preset with interpolation={value!r}"
    return variant


for _name, _value, _summary, _source in (
    ("half-pixel-upsampling", "bilinear", "bilinear with half-pixel centres (align_corners=False)",
     "cv2 INTER_LINEAR, torch F.interpolate(mode='bilinear') with its default align_corners=False, skimage resize (docs/peers.md, silent disagreements 4)"),
    ("corner-aligned-upsampling", "bilinear-corners", "bilinear with corner-aligned grid (align_corners=True)",
     "scipy.ndimage.zoom(order=1) in tf-keras-vis; torch UpsamplingBilinear2d (docs/peers.md, silent disagreements 4)"),
    ("nearest-upsampling", "nearest", "nearest-neighbour upsampling",
     "captum LayerAttribution.interpolate's default (docs/peers.md, Shared plumbing)"),
    ("bicubic-upsampling", "bicubic", "bicubic upsampling (torch's, a = -0.75)",
     "torchcam overlay_mask and keras-io use PIL's bicubic, whose kernel is not torch's (not reproduced exactly) (docs/peers.md, silent disagreements 4)"),
):
    register(_name, "pipeline", _summary, _source)(_interpolation(_value))


def _order(value):
    def variant(pre, lab, stage, has_relu):
        if stage == "raw" or preset_pipeline(stage).normalize == "none":
            return None
        return _with(stage, lab, pre, has_relu, order=value)
    variant.__doc__ = f"the preset with order={value!r}"
    return variant


for _name, _value, _summary, _source in (
    ("resize-then-normalise", "resize-then-normalize", "resized first, then normalised",
     "tf-keras-vis (zoom, then normalize) (docs/peers.md, silent disagreements 3)"),
    ("normalise-then-resize", "normalize-then-resize", "normalised at the layer's resolution, then resized",
     "torchcam's maps, upsampled afterwards (docs/peers.md, silent disagreements 3)"),
    ("normalise-resize-normalise", "normalize-resize-normalize", "normalised, resized, normalised again",
     "pytorch-grad-cam base_cam.py scale_cam_image twice (docs/peers.md, silent disagreements 3)"),
):
    register(_name, "pipeline", _summary, _source)(_order(_value))
