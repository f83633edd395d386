"""The gradient-family maps as functions of the activations A and the gradients g alone.

minicam.cam computes each method from a model; the catalogue of variants
(variants_methods.py) needs the same formulas applied to OTHER gradients: those
of the softmax probability, of exp(logit), of a negated score, of a model in
training mode. Each function here is the formula of minicam.cam.gradient /
gradcampp / eigen, before the method's final ReLU, on arrays
(A, g: (N, K, h, w) -> map (N, h, w)); a test checks that with capture's A and g
they equal minicam's methods.
"""
from __future__ import annotations

import numpy as np

from minicam.cam.capture import weighted_sum
from minicam.cam.eigen import first_component_map
from minicam.cam.gradcampp import alpha_closed_form


def relu(x):
    return np.maximum(x, 0)


def gradcam(A, g):
    """sum_k mean_ij(g_k) A_k   (Selvaraju et al. 2017, eq. 1-2)"""
    return weighted_sum(g.mean(axis=(2, 3)), A)


def gradcam_plus(A, g):
    """sum_k mean_ij(ReLU(g_k)) A_k   (Lerma & Lucas 2022)"""
    return weighted_sum(relu(g).mean(axis=(2, 3)), A)


def gradcampp(A, g, alpha=None):
    """sum_k (sum_ij alpha_kij ReLU(g_kij)) A_k, alpha = eq. 19 unless given (Chattopadhay et al. 2018)"""
    alpha = alpha_closed_form(A, g) if alpha is None else alpha
    return weighted_sum(np.sum(alpha * relu(g), axis=(2, 3)), A)


def hirescam(A, g):
    """sum_k g_k * A_k   (Draelos & Carin 2020)"""
    return np.sum(g * A, axis=1)


def gradcam_elementwise(A, g):
    """sum_k ReLU(g_k * A_k)   (pytorch-grad-cam GradCAMElementWise)"""
    return np.sum(relu(g * A), axis=1)


def xgradcam(A, g, eps=None):
    """sum_k w_k A_k, w_k = sum_ij g A / sum_ij A   (Fu et al. 2020, eq. 11).
    eps=None: minicam's rule (w_k = 0 where sum A <= 0); a number: sum(g A) / (sum(A) + eps)
    for every channel, as pytorch-grad-cam (1e-7) and torchcam (1e-8)."""
    total = A.sum(axis=(2, 3))
    products = (g * A).sum(axis=(2, 3))
    if eps is not None:
        return weighted_sum(products / (total + eps), A)
    usable = total > 0
    return weighted_sum(np.where(usable, products / np.where(usable, total, 1), 0.0), A)


def layercam(A, g):
    """sum_k ReLU(g_k) * A_k   (Jiang et al. 2021)"""
    return np.sum(relu(g) * A, axis=1)


def eigengradcam(A, g, center=False):
    """the first principal direction's projection of g * A, per image (minicam's sign rule)"""
    return np.stack([first_component_map(a, center) for a in g * A])


FORMULAS = {
    "gradcam": gradcam,
    "gradcam+": gradcam_plus,
    "gradcam++": gradcampp,
    "hirescam": hirescam,
    "gradcam-elementwise": gradcam_elementwise,
    "xgradcam": xgradcam,
    "layercam": layercam,
    "eigengradcam": eigengradcam,
}
