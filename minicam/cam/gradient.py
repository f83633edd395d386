"""The gradient family: maps built from the activations A and the gradients g = dy/dA alone.

Each method is written once, as a formula on arrays,
    <method>_map(A, g, ..., relu=...) -> (N, h, w)
and its model-facing function (the registry's signature) is the capture plus that call:
    <method>(model, x, layer, target=None, *, score="logit", ..., relu=...) -> (N, h, w).
Both return the raw map at the layer's resolution: the formula and, where the
method's paper has one, its final ReLU (relu=False skips it; explain() then places the
ReLU where a convention wants it), before upsampling and normalisation.

Notation: A (N, K, h, w) activations, g = dy/dA, Z = h*w; sums over i, j run
over the h x w positions.
"""
from __future__ import annotations

import numpy as np

from minicam.cam.capture import activations_and_gradients
from minicam.cam.maps import final_relu, positive, weighted_sum


def gradcam_map(A, g, *, counterfactual=False, relu=True):
    """Grad-CAM (Selvaraju et al. 2017, eq. 1 and 2).

    alpha_k = (1/Z) sum_ij g_kij              (eq. 1: global-average-pooled gradients)
    L       = ReLU(sum_k alpha_k A_k)         (eq. 2)
    counterfactual=True negates the gradients (the paper's counterfactual explanations): the map
    shows the regions whose removal would RAISE the score.
    """
    alpha = (-g if counterfactual else g).mean(axis=(2, 3))
    return final_relu(weighted_sum(alpha, A), relu)


def gradcam(model, x, layer, target=None, *, score="logit", counterfactual=False, relu=True):
    """Grad-CAM of the model's score at `layer`: gradcam_map of the captured A and g."""
    A, g = activations_and_gradients(model, x, layer, target, score)
    return gradcam_map(A, g, counterfactual=counterfactual, relu=relu)


def gradcam_plus_map(A, g, *, relu=True):
    """Grad-CAM with positive gradients, "Grad-CAM+" (Lerma & Lucas 2022).

    w_k = (1/Z) sum_ij ReLU(g_kij),   L = ReLU(sum_k w_k A_k)

    Many tutorials present exactly this as Grad-CAM++. It is not: Grad-CAM++
    (gradcampp.py) weights each ReLU(g_kij) by alpha_kij = 1 / (2 + g_kij sum_ab A_kab)
    (eq. 19, where g != 0). Lerma & Lucas show alpha is close to 1/2 when
    g * sum(A) is small, so the two maps are often similar, but not equal.
    """
    return final_relu(weighted_sum(positive(g).mean(axis=(2, 3)), A), relu)


def gradcam_plus(model, x, layer, target=None, *, score="logit", relu=True):
    """Grad-CAM+ of the model's score at `layer`: gradcam_plus_map of the captured A and g."""
    return gradcam_plus_map(*activations_and_gradients(model, x, layer, target, score), relu=relu)


def hirescam_map(A, g, *, relu=True):
    """HiResCAM (Draelos & Carin 2020): element-wise gradient times activation.

    L = ReLU(sum_k g_k * A_k)   (no spatial averaging of the gradients)
    For a flatten -> Linear head, sum_ij of the un-ReLU'd map equals the score
    minus the bias: the map shows exactly the locations the score used.
    """
    return final_relu(np.sum(g * A, axis=1), relu)


def hirescam(model, x, layer, target=None, *, score="logit", relu=True):
    """HiResCAM of the model's score at `layer`: hirescam_map of the captured A and g."""
    return hirescam_map(*activations_and_gradients(model, x, layer, target, score), relu=relu)


def gradcam_elementwise_map(A, g, *, relu=False):
    """Grad-CAM element-wise (pytorch-grad-cam's GradCAMElementWise).

    L = sum_k ReLU(g_k * A_k): HiResCAM with the ReLU INSIDE the channel sum, so the
    map is never negative and the method has no final ReLU of its own (relu=True adds one,
    which changes nothing).
    """
    return final_relu(np.sum(positive(g * A), axis=1), relu)


def gradcam_elementwise(model, x, layer, target=None, *, score="logit", relu=False):
    """Grad-CAM element-wise at `layer`: gradcam_elementwise_map of the captured A and g."""
    return gradcam_elementwise_map(*activations_and_gradients(model, x, layer, target, score), relu=relu)


def xgradcam_map(A, g, *, weight_eps=None, relu=True):
    """XGrad-CAM (Fu et al. 2020, eq. 11): activation-weighted gradients.

    w_k = sum_ij (A_kij / sum_ab A_kab) g_kij,   L = ReLU(sum_k w_k A_k)

    Non-positive denominators: the paper's weights treat A_k / sum(A_k) as a
    distribution over positions, which needs sum(A_k) > 0 (true after a ReLU
    unless the channel is all zero). With weight_eps=None (minicam's rule) a channel with
    sum_ab A_kab <= 0 gets w_k = 0. weight_eps=a number computes sum(g A) / (sum(A) + weight_eps)
    for every channel, as the peers do (pytorch-grad-cam 1e-7, torchcam 1e-8; for signed
    activations it can flip or blow up a weight).
    """
    total = A.sum(axis=(2, 3))
    products = (g * A).sum(axis=(2, 3))
    if weight_eps is not None:
        return final_relu(weighted_sum(products / (total + weight_eps), A), relu)
    usable = total > 0
    w = np.where(usable, products / np.where(usable, total, 1), 0.0)
    return final_relu(weighted_sum(w, A), relu)


def xgradcam(model, x, layer, target=None, *, score="logit", weight_eps=None, relu=True):
    """XGrad-CAM of the model's score at `layer`: xgradcam_map of the captured A and g."""
    return xgradcam_map(*activations_and_gradients(model, x, layer, target, score), weight_eps=weight_eps, relu=relu)


def layercam_map(A, g, *, relu=True):
    """LayerCAM (Jiang et al. 2021, eq. 5 and 6): element-wise positive gradients.

    L = ReLU(sum_k ReLU(g_k) * A_k)
    """
    return final_relu(np.sum(positive(g) * A, axis=1), relu)


def layercam(model, x, layer, target=None, *, score="logit", relu=True):
    """LayerCAM of the model's score at `layer`: layercam_map of the captured A and g."""
    return layercam_map(*activations_and_gradients(model, x, layer, target, score), relu=relu)
