"""Guided backpropagation (Springenberg et al. 2015, "Striving for Simplicity:
The All Convolutional Net", ICLR workshop, Figure 1) and Guided Grad-CAM
(Selvaraju et al. 2017, Section 3.1).

Guided backpropagation is the gradient of the score with respect to the input
image, except that every ReLU passes back only positive gradients, and only
where its input was positive:

    plain backprop through a ReLU      R_in = [x > 0] * R_out
    guided backprop                    R_in = [x > 0] * [R_out > 0] * R_out

(R_out: the gradient arriving from above, x: the ReLU's input). What comes back
to the image shows the pixels that INCREASE the score, at full resolution, but
it is hardly class-specific. Guided Grad-CAM multiplies it, pixel by pixel,
with the (upsampled) Grad-CAM map, which is class-specific but coarse.

How: a forward hook on every nn.ReLU module replaces its output by
GuidedReLU.apply(input): the same values, with the guided backward. The hooks
are removed afterwards, so the model is left unchanged. Only nn.ReLU modules are
guided; a ReLU called as a function inside a custom forward (minicam.ops.relu)
is not (pytorch-grad-cam and captum guide ReLU modules too).
"""
from __future__ import annotations

import numpy as np

from minicam import nn
from minicam.autograd import Function, Tensor, enable_grad, grad
from minicam.ops.elementwise import MaskOp as Mask
from minicam.cam.capture import as_image_batch, class_scores, evaluation_mode
from minicam.cam.conventions import normalize_maps, resize_maps
from minicam.cam.gradient import gradcam

CHANNEL_REDUCTIONS = ("max-abs", "sum")


class GuidedReLU(Function):
    """y = max(x, 0);  dx = g * [x > 0] * [g > 0]  (guided backpropagation).

    Both masks are constants of the backward, so it is linear in g on each side
    of g = 0, like ReLU's own backward."""

    @staticmethod
    def forward(ctx, x):
        return np.maximum(x, 0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        passes = (x.data > 0) & (g.data > 0)
        return (Mask.apply(g, mask=passes),)


def guided_gradients(model, x, target=None, score="logit") -> np.ndarray:
    """Guided backpropagation: d score / d x with guided ReLUs, (N, C, H, W)."""
    gradients, _ = _guided_gradients(model, x, target, score)
    return gradients


def guided_backprop(model, x, layer=None, target=None, *, score="logit", channel_reduction="max-abs"):
    """Guided backpropagation reduced over the colour channels: (N, H, W) at the input's size.

    layer is ignored (the image itself is explained); it is accepted so that the
    method has the registry's signature. channel_reduction: "max-abs" (max over
    channels of |value|) or "sum". For the (N, C, H, W) gradients use guided_gradients.
    """
    _check_reduction(channel_reduction)
    gradients, _ = _guided_gradients(model, x, target, score)
    return _reduce_channels(gradients, channel_reduction)


def guided_gradcam(model, x, layer, target=None, *, score="logit", channel_reduction="max-abs"):
    """Guided Grad-CAM (Selvaraju et al. 2017, Section 3.1), (N, H, W) at the input's size.

    Grad-CAM's map L (with its ReLU), upsampled bilinearly (half-pixel centres, as
    the paper's "bilinear interpolation") to the input size and min-max normalised
    per image (not in the paper: it only rescales each image's map, and makes the
    product comparable across images), times the guided gradients, then reduced
    over the colour channels. Both factors explain the same class: the one chosen
    for the first (guided) pass.
    """
    _check_reduction(channel_reduction)
    x = as_image_batch(x)
    gradients, classes = _guided_gradients(model, x, target, score)
    coarse = gradcam(model, x, layer, classes if classes is not None else target, score=score)
    fine = normalize_maps(resize_maps(coarse, x.shape[2:], "bilinear"), "minmax")
    return _reduce_channels(gradients * fine[:, None], channel_reduction)


def _guided_gradients(model, x, target, score):
    """The guided gradients (N, C, H, W) and the target classes (N,), or None for a callable target."""
    x = as_image_batch(x)
    relus = [module for module in model.modules() if isinstance(module, nn.ReLU)]
    if not relus:
        raise ValueError(
            f"guided backpropagation changes the backward pass of nn.ReLU modules, and "
            f"{type(model).__name__} has none (a ReLU called as a function cannot be guided)"
        )
    handles = [relu.register_forward_hook(lambda mod, inputs, output: GuidedReLU.apply(inputs[0])) for relu in relus]
    try:
        with evaluation_mode(model), enable_grad():
            image = Tensor(x.data, requires_grad=True)
            output = model(image)
            y, classes, _ = class_scores(output, target, score)
            (gradients,) = grad(y.sum(), image, allow_unused=True)  # images are independent: one pass for all
    finally:
        for handle in handles:
            handle.remove()
    return (np.zeros_like(x.data) if gradients is None else gradients.data), classes


def _check_reduction(channel_reduction):
    if channel_reduction == "none":
        raise ValueError("channel_reduction='none' is not available here; call guided_gradients() for the (N, C, H, W) gradients")
    if channel_reduction not in CHANNEL_REDUCTIONS:
        raise ValueError(f"unknown channel_reduction {channel_reduction!r}; choose one of {CHANNEL_REDUCTIONS}")


def _reduce_channels(values, channel_reduction):
    if channel_reduction == "max-abs":
        return np.abs(values).max(axis=1)
    return values.sum(axis=1)
