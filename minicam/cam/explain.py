"""explain(): a method's map, upsampled to the input's size and normalised, every step explicit."""
from __future__ import annotations

import numpy as np

from minicam.cam.capture import checked_images
from minicam.cam.conventions import PRESETS, postprocess, resolve
from minicam.cam.registry import REGISTRY


def explain(model, x, method, layer, target=None, *, convention="minicam", relu=None, normalize=None,
            eps=None, interpolation=None, order=None, **options) -> np.ndarray:
    """The map of `method` for each image of x, at the input's size: (N, H, W).

    Steps: the method's raw map at `layer` (N, h, w) -> ReLU -> resize to (H, W)
    -> per-image normalisation, in the order and with the choices of `convention`,
    a preset name (minicam.cam.conventions.PRESETS, listed below).

    Any step can be overridden: relu ("method" | "none" | "always"), normalize
    ("minmax" | "max" | "none"), eps (a number, or "exact": a constant map -> 0), interpolation
    ("bilinear" | "bilinear-corners" | "nearest" | "bicubic"), order
    ("resize-then-normalize" | "normalize-then-resize" | "normalize-resize-normalize").
    `options` go to the method (e.g. score="softmax", variant="exact"); the methods and
    their options are listed in minicam.cam.REGISTRY. A library preset also passes the options
    that reproduce that library's own formula (its `method_options`, listed below), under
    `options`: an option given here wins, so each can be switched back one at a time.

    The presets:
    """
    if not isinstance(method, str):
        raise TypeError(f"method must be one name, a string such as 'gradcam', got {method!r}; call explain once "
                        "per method for several")
    if method not in REGISTRY:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(REGISTRY)}")
    pipeline = resolve(convention, relu=relu, normalize=normalize, eps=eps, interpolation=interpolation, order=order)
    x = checked_images(x)
    record = REGISTRY[method]
    options = {**pipeline.options_for(method), **options}  # the caller's options win over the preset's
    raw = record.function(model, x, layer, target, relu=False, **options)  # the ReLU is the pipeline's step
    return postprocess(raw, x.shape[2:], pipeline, record.final_relu)


def describe_convention(convention: str) -> str:
    """One line listing a preset's choices."""
    return f"{convention}: {resolve(convention).note}"


explain.__doc__ += "".join(
    f"\n      {name:<17} {preset.note}"
    + "".join(f"\n      {'':<17}   {method}: {', '.join(f'{k}={v!r}' for k, v in opts.items())}"
              for method, opts in preset.method_options.items())
    + (f"\n      {'':<17}   ({preset.method_note})" if preset.method_note else "")
    for name, preset in PRESETS.items()) + "\n"
