"""explain(): a method's map, upsampled to the input's size and normalised, every step explicit."""
from __future__ import annotations

import numpy as np

from minicam.cam.capture import as_image_batch
from minicam.cam.conventions import PRESET_NOTES, postprocess, resolve
from minicam.cam.registry import HAS_FINAL_RELU, METHODS


def explain(model, x, method, layer, target=None, *, convention="minicam", relu=None, normalize=None,
            eps=None, interpolation=None, order=None, **options) -> np.ndarray:
    """The map of `method` for each image of x, at the input's size: (N, H, W).

    Steps: the method's raw map at `layer` (N, h, w) -> ReLU -> resize to (H, W)
    -> per-image normalisation, in the order and with the choices of
    `convention` (a preset name, see minicam.cam.conventions.PRESETS):

      minicam           the method's own ReLU; bilinear half-pixel; exact min-max, constant -> 0
      paper             the method's own ReLU; bilinear half-pixel; no normalisation
      pytorch-grad-cam  ReLU always; min-max (eps 1e-7) at low res; bilinear; min-max again; float32
      torchcam          the method's own ReLU; min-max (eps 1e-8) at low res; then bilinear
      captum            no ReLU; nearest upsampling; no normalisation
      tf-keras-vis      ReLU always; corner-aligned bilinear; min-max (eps 1e-7)

    Any step can be overridden: relu ("method" | "none" | "always"), normalize
    ("minmax" | "max" | "none"), eps (a number, or "exact": a constant map -> 0), interpolation
    ("bilinear" | "bilinear-corners" | "nearest" | "bicubic"), order
    ("resize-then-normalize" | "normalize-then-resize" | "normalize-resize-normalize").
    `options` go to the method (e.g. score="softmax", variant="exact").
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}")
    pipeline = resolve(convention, relu=relu, normalize=normalize, eps=eps, interpolation=interpolation, order=order)
    x = as_image_batch(x)
    function = METHODS[method]
    has_relu = HAS_FINAL_RELU[method]
    raw = function(model, x, layer, target, relu=False, **options) if has_relu else function(model, x, layer, target, **options)
    return postprocess(raw, x.shape[2:], pipeline, has_relu)


def describe_convention(convention: str) -> str:
    """One line listing a preset's choices."""
    resolve(convention)  # raises for an unknown name
    return f"{convention}: {PRESET_NOTES[convention]}"
