"""The gradient family: maps built from A and g = dy/dA alone.

Each function has the registry's signature
    f(model, x, layer, target=None, *, score="logit", ...) -> (N, h, w) array
and returns the raw map at the layer's resolution, after the method's own
ReLU, before upsampling and normalisation (see minicam.cam.explain).
relu=False skips the method's final ReLU (explain uses it to place the ReLU
where a convention wants it). `relu_` is the element-wise ReLU inside formulas.

Notation: A (N, K, h, w) activations, g = dy/dA, Z = h*w, sums over i, j run
over the h x w positions.
"""
from __future__ import annotations

import numpy as np

from minicam.cam.capture import capture, final_relu, weighted_sum
from minicam.cam.capture import relu as relu_


def _activations_and_gradients(model, x, layer, target, score):
    cap = capture(model, x, layer, target, score)
    return cap.A, cap.gradients().data


def gradcam(model, x, layer, target=None, *, score="logit", counterfactual=False, relu=True):
    """Grad-CAM (Selvaraju et al. 2017, eq. 1 and 2).

    alpha_k = (1/Z) sum_ij g_kij              (eq. 1: global-average-pooled gradients)
    L       = ReLU(sum_k alpha_k A_k)         (eq. 2)
    counterfactual=True negates the gradients (Section 5 of the paper): the map
    shows the regions whose removal would RAISE the score.
    """
    A, g = _activations_and_gradients(model, x, layer, target, score)
    if counterfactual:
        g = -g
    alpha = g.mean(axis=(2, 3))
    return final_relu(weighted_sum(alpha, A), relu)


def gradcam_plus(model, x, layer, target=None, *, score="logit", relu=True):
    """Grad-CAM with positive gradients, "Grad-CAM+" (Lerma & Lucas 2022).

    w_k = (1/Z) sum_ij ReLU(g_kij),   L = ReLU(sum_k w_k A_k)

    Many tutorials present exactly this as Grad-CAM++. It is not: Grad-CAM++
    (gradcampp.py) weights each ReLU(g_kij) by alpha_kij = 1 / (2 + g_kij sum_ab A_kab)
    (eq. 19, where g != 0). Lerma & Lucas show alpha is close to 1/2 when
    g * sum(A) is small, so the two maps are often similar, but not equal.
    """
    A, g = _activations_and_gradients(model, x, layer, target, score)
    return final_relu(weighted_sum(relu_(g).mean(axis=(2, 3)), A), relu)


def hirescam(model, x, layer, target=None, *, score="logit", relu=True):
    """HiResCAM (Draelos & Carin 2020): element-wise gradient times activation.

    L = ReLU(sum_k g_k * A_k)   (no spatial averaging of the gradients)
    For a flatten -> Linear head, sum_ij of the un-ReLU'd map equals the score
    minus the bias: the map shows exactly the locations the score used.
    """
    A, g = _activations_and_gradients(model, x, layer, target, score)
    return final_relu(np.sum(g * A, axis=1), relu)


def gradcam_elementwise(model, x, layer, target=None, *, score="logit"):
    """Grad-CAM element-wise (pytorch-grad-cam's GradCAMElementWise).

    L = sum_k ReLU(g_k * A_k): HiResCAM with the ReLU INSIDE the channel sum.
    """
    A, g = _activations_and_gradients(model, x, layer, target, score)
    return np.sum(relu_(g * A), axis=1)


def xgradcam(model, x, layer, target=None, *, score="logit", relu=True):
    """XGrad-CAM (Fu et al. 2020, eq. 11): activation-weighted gradients.

    w_k = sum_ij (A_kij / sum_ab A_kab) g_kij,   L = ReLU(sum_k w_k A_k)

    Non-positive denominators: the paper's weights treat A_k / sum(A_k) as a
    distribution over positions, which needs sum(A_k) > 0 (true after a ReLU
    unless the channel is all zero). A channel with sum_ab A_kab <= 0 gets
    w_k = 0 (peers add an eps instead, which for signed activations can flip
    or blow up the weight).
    """
    A, g = _activations_and_gradients(model, x, layer, target, score)
    total = A.sum(axis=(2, 3))
    usable = total > 0
    w = np.where(usable, (g * A).sum(axis=(2, 3)) / np.where(usable, total, 1), 0)
    return final_relu(weighted_sum(w, A), relu)


def layercam(model, x, layer, target=None, *, score="logit", relu=True):
    """LayerCAM (Jiang et al. 2021, eq. 5 and 6): element-wise positive gradients.

    L = ReLU(sum_k ReLU(g_k) * A_k)
    """
    A, g = _activations_and_gradients(model, x, layer, target, score)
    return final_relu(np.sum(relu_(g) * A, axis=1), relu)
