"""Eigen-CAM (Muhammad & Yeasin 2020, "Eigen-CAM: Class Activation Map using
Principal Components", IJCNN 2020, arXiv 2008.00299) and EigenGrad-CAM
(pytorch-grad-cam's EigenGradCAM).

Per image, lay the activations out as a matrix with one row per position and
one column per channel,

    O = A.reshape(K, h*w).T              (h*w, K)
    O = U S V^T                          (its singular value decomposition)
    L = O v_1 = s_1 u_1                  (reshaped to (h, w))

the projection of every position on the first right singular vector v_1: the
direction in channel space along which the activations vary most. No class,
no gradient, no final ReLU (the map is signed). EigenGrad-CAM projects g * A
(g = dy/dA) instead of A, which makes it class-specific.

center=True subtracts each channel's mean over the positions first (PCA proper;
pytorch-grad-cam's get_2d_projection does it, its comment says it "seems to be
important"); the paper projects the uncentred O.

The sign. An SVD fixes v_1 only up to its sign: -v_1 is as good, and which one
comes out depends on the LAPACK build (pytorch-grad-cam issue #315: maps
inverted with MKL). minicam fixes it by a rule that depends on the map only,
so -v_1 gives the same result:
  1. the map's sum is positive; if the sum is zero up to rounding
     (|sum| <= sqrt(eps) * sum|L|),
  2. the map's largest-magnitude element (the first in row-major order) is positive.
With center=True the map sums to 0 by construction (every centred column sums
to 0), so rule 1 is skipped and rule 2 decides.
For a ReLU layer (A >= 0, uncentred) rule 1 gives the map that is large where
the activations are large.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Tensor, no_grad
from minicam.cam.capture import activations_and_gradients, check_forward, checked_images, layer_output
from minicam.cam.maps import final_relu


def eigencam_map(A, *, center=False, relu=False):
    """Eigen-CAM from the activations A (N, K, h, w): each image's projection on its first
    principal direction (signed; the method has no final ReLU, relu=True adds one)."""
    return final_relu(np.stack([first_component_map(a, center) for a in A]), relu)


def eigencam(model, x, layer, target=None, *, score="logit", center=False, relu=False):
    """The Eigen-CAM map (N, h, w) at the layer's resolution: eigencam_map of the layer's A.

    target and score are accepted so that every method has the same signature,
    and ignored: Eigen-CAM does not depend on a class (the model's output need
    not even be class scores).
    """
    return eigencam_map(layer_activations(model, x, layer), center=center, relu=relu)


def eigengradcam_map(A, g, *, center=False, relu=False):
    """EigenGrad-CAM (pytorch-grad-cam's EigenGradCAM): Eigen-CAM of g * A."""
    return eigencam_map(g * A, center=center, relu=relu)


def eigengradcam(model, x, layer, target=None, *, score="logit", center=False, relu=False):
    """The EigenGrad-CAM map (N, h, w): eigengradcam_map of A and g = dy/dA of the target's score."""
    A, g = activations_and_gradients(model, x, layer, target, score)
    return eigengradcam_map(A, g, center=center, relu=relu)


def first_component_map(activations, center=False):
    """(K, h, w) -> (h, w): the projection of each position on the first right
    singular vector, with the sign rule of the module docstring."""
    k, h, w = activations.shape
    O = activations.reshape(k, h * w).T
    if center:
        O = O - O.mean(axis=0)
    _, _, Vt = np.linalg.svd(O, full_matrices=False)
    projection = O @ Vt[0]
    return orient(projection, by_sum=not center).reshape(h, w)


def orient(projection, by_sum=True):
    """Multiply a map by +1 or -1 so that its sum is positive or, if the sum is
    zero up to rounding (or by_sum is False), its largest-magnitude element is positive."""
    total = projection.sum()
    if by_sum and abs(total) > np.sqrt(np.finfo(projection.dtype).eps) * np.abs(projection).sum():
        return projection if total > 0 else -projection
    largest = projection.flat[np.argmax(np.abs(projection))]
    return projection if largest >= 0 else -projection


def layer_activations(model, x, layer):
    """A (N, K, h, w) of `layer` for input x: one forward pass in eval mode, no graph."""
    x = checked_images(x)
    with layer_output(model, layer) as seen, no_grad():
        output = model(Tensor(x.data))
    A = seen.feature_maps()
    check_forward(model, x, A, output.data)
    return A
