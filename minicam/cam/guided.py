"""Guided backpropagation (Springenberg et al. 2015, "Striving for Simplicity:
The All Convolutional Net", ICLR workshop, Figure 1) and Guided Grad-CAM
(Selvaraju et al. 2017, its Guided Grad-CAM).

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

import contextlib

import numpy as np

from minicam import nn
from minicam.autograd import Tensor, enable_grad, grad
from minicam.ops.elementwise import MaskOp, ReLUOp
from minicam.cam.capture import check_forward, checked_images, class_scores, layer_output, overflow_fix
from minicam.errors import require_finite
from minicam.cam.conventions import normalize_maps, resize_maps
from minicam.cam.gradient import gradcam
from minicam.cam.maps import final_relu

CHANNEL_REDUCTIONS = ("max-abs", "sum")


class GuidedReLUOp(ReLUOp):
    """y = max(x, 0) (ReLUOp's forward);  dx = g * [x > 0] * [g > 0]  (guided backpropagation).

    Both masks are constants of the backward, so it is linear in g on each side
    of g = 0, like ReLU's own backward."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        passes = (x.data > 0) & (g.data > 0)
        return (MaskOp.apply(g, mask=passes),)


def guided_gradients(model, x, target=None, score="logit") -> np.ndarray:
    """Guided backpropagation: d score / d x with guided ReLUs, (N, C, H, W)."""
    gradients, _ = input_gradients(model, x, target, score)
    return gradients


def guided_backprop(model, x, layer=None, target=None, *, score="logit", channel_reduction="max-abs", relu=False):
    """Guided backpropagation reduced over the colour channels: (N, H, W) at the input's size.

    layer is ignored (the image itself is explained); it is accepted so that the
    method has the registry's signature. channel_reduction: "max-abs" (max over
    channels of |value|) or "sum". For the (N, C, H, W) gradients use guided_gradients.
    The method has no final ReLU (relu=True adds one).
    """
    _check_reduction(channel_reduction)
    gradients, _ = input_gradients(model, x, target, score)
    return final_relu(reduce_channels(gradients, channel_reduction), relu)


def guided_gradcam_map(gradients, coarse, *, channel_reduction="max-abs", gradcam_interpolation="bilinear",
                       normalize_gradcam=True, relu=False):
    """Guided Grad-CAM (Selvaraju et al. 2017) from the guided gradients (N, C, H, W)
    and Grad-CAM's map L (N, h, w), with its ReLU: L upsampled bilinearly (half-pixel centres,
    the paper's "bilinear interpolation") to (H, W) and min-max normalised per image (not in the
    paper: it only rescales each image's map, and makes the product comparable across images),
    times the guided gradients, then reduced over the colour channels.

    captum 0.9.0's GuidedGradCam: gradcam_interpolation="nearest" (its interpolate_mode's default),
    normalize_gradcam=False (it multiplies the upsampled map as it is)."""
    fine = resize_maps(coarse, gradients.shape[2:], gradcam_interpolation)
    if normalize_gradcam:
        fine = normalize_maps(fine, "minmax")
    return final_relu(reduce_channels(gradients * fine[:, None], channel_reduction), relu)


def guided_gradcam(model, x, layer, target=None, *, score="logit", channel_reduction="max-abs",
                   gradcam_interpolation="bilinear", normalize_gradcam=True, relu=False):
    """Guided Grad-CAM (N, H, W) at the input's size: guided_gradcam_map of the guided gradients
    and Grad-CAM at `layer`, both for the class chosen by the first (guided) pass."""
    _check_reduction(channel_reduction)
    x = checked_images(x)
    gradients, classes = input_gradients(model, x, target, score)
    coarse = gradcam(model, x, layer, classes if classes is not None else target, score=score)
    return guided_gradcam_map(gradients, coarse, channel_reduction=channel_reduction,
                              gradcam_interpolation=gradcam_interpolation, normalize_gradcam=normalize_gradcam,
                              relu=relu)


def input_gradients(model, x, target=None, score="logit", guided=True):
    """d y / d x (N, C, H, W), through guided ReLUs (guided=True) or plain ones (the plain
    gradient, "vanilla saliency"), and the target classes (N,), or None for a callable target."""
    x = checked_images(x)
    relus = [module for module in model.modules() if isinstance(module, nn.ReLU)] if guided else []
    if guided and not relus:
        raise ValueError(
            f"guided backpropagation changes the backward pass of nn.ReLU modules, and "
            f"{type(model).__name__} has none (a ReLU called as a function cannot be guided)"
        )
    with contextlib.ExitStack() as guided, enable_grad():
        for relu in relus:
            guided.enter_context(layer_output(model, relu, replace=lambda inputs, output: GuidedReLUOp.apply(inputs[0])))
        image = Tensor(x.data, requires_grad=True)
        output = model(image)
        check_forward(model, x, output.data)
        y, classes, _ = class_scores(output, target, score)
    (gradients,) = grad(y.sum(), image, allow_unused=True)  # images are independent: one pass for all
    gradients = np.zeros_like(x.data) if gradients is None else gradients.data
    require_finite(gradients, "the input gradients dy/dx", f"the backward pass overflowed; {overflow_fix(gradients.dtype)}")
    return gradients, classes


def _check_reduction(channel_reduction):
    if channel_reduction == "none":
        raise ValueError("channel_reduction='none' is not available here; call guided_gradients() for the (N, C, H, W) gradients")
    if channel_reduction not in CHANNEL_REDUCTIONS:
        raise ValueError(f"unknown channel_reduction {channel_reduction!r}; choose one of {CHANNEL_REDUCTIONS}")


def reduce_channels(values, channel_reduction):
    """(N, C, H, W) -> (N, H, W): max over channels of |value| ("max-abs") or their "sum"."""
    if channel_reduction == "max-abs":
        return np.abs(values).max(axis=1)
    return values.sum(axis=1)
