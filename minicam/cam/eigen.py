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

sign="lapack" keeps instead the sign LAPACK returns, calling np.linalg.svd exactly as
pytorch-grad-cam 1.5.7's get_2d_projection does (full_matrices=True, v_1 = VT[0]): the map
then depends on the LAPACK build, as that library's does.

KPCA-CAM (Karmani et al. 2024, "KPCA-CAM: Visual Explainability of Deep Computer Vision
Models using Kernel PCA", arXiv 2410.00267; pytorch-grad-cam's KPCA_CAM, contributed by the
authors) replaces the SVD by kernel PCA: with the centred positions x_p (rows of O),

    K_pq = k(x_p, x_q)                   sigmoid kernel tanh(gamma <x_p, x_q> + coef0) by default,
                                         gamma = 1/K, coef0 = 1 (scikit-learn's defaults)
    Kc   = (I - 1/n) K (I - 1/n)         K centred in feature space (n = h*w positions)
    L    = sqrt(lambda_1) v_1            the first kernel principal component of every position

v_1 is signed so that its largest-magnitude element (the first, in row-major order) is
positive: rule 2 above, which is also scikit-learn's (svd_flip), so minicam and the library agree.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Tensor, no_grad
from minicam.cam.capture import activations_and_gradients, check_forward, checked_images, layer_output
from minicam.cam.maps import final_relu, require_choice


SIGNS = ("minicam", "lapack")
KERNELS = ("sigmoid", "rbf", "poly", "linear")


def eigencam_map(A, *, center=False, sign="minicam", relu=False):
    """Eigen-CAM from the activations A (N, K, h, w): each image's projection on its first
    principal direction (signed; the method has no final ReLU, relu=True adds one)."""
    require_choice("sign rule", sign, SIGNS)
    return final_relu(np.stack([first_component_map(a, center, sign) for a in A]), relu)


def eigencam(model, x, layer, target=None, *, score="logit", center=False, sign="minicam", relu=False):
    """The Eigen-CAM map (N, h, w) at the layer's resolution: eigencam_map of the layer's A.

    target and score are accepted so that every method has the same signature,
    and ignored: Eigen-CAM does not depend on a class (the model's output need
    not even be class scores).
    """
    return eigencam_map(layer_activations(model, x, layer), center=center, sign=sign, relu=relu)


def eigengradcam_map(A, g, *, center=False, sign="minicam", relu=False):
    """EigenGrad-CAM (pytorch-grad-cam's EigenGradCAM): Eigen-CAM of g * A."""
    return eigencam_map(g * A, center=center, sign=sign, relu=relu)


def eigengradcam(model, x, layer, target=None, *, score="logit", center=False, sign="minicam", relu=False):
    """The EigenGrad-CAM map (N, h, w): eigengradcam_map of A and g = dy/dA of the target's score."""
    A, g = activations_and_gradients(model, x, layer, target, score)
    return eigengradcam_map(A, g, center=center, sign=sign, relu=relu)


def first_component_map(activations, center=False, sign="minicam"):
    """(K, h, w) -> (h, w): the projection of each position on the first right
    singular vector, with the sign rule of the module docstring (sign="lapack": LAPACK's own)."""
    O, shape = _positions(activations, center)
    if sign == "lapack":  # as pytorch-grad-cam calls it, so that LAPACK returns the same signs
        _, _, Vt = np.linalg.svd(O, full_matrices=True)
        return (O @ Vt[0]).reshape(shape)
    _, _, Vt = np.linalg.svd(O, full_matrices=False)
    projection = O @ Vt[0]
    return orient(projection, by_sum=not center).reshape(shape)


def _positions(activations, center):
    """(K, h, w) -> O (h*w, K), one row per position (each column centred if `center`), and (h, w)."""
    k, h, w = activations.shape
    O = activations.reshape(k, h * w).T
    return (O - O.mean(axis=0) if center else O), (h, w)


def kpcacam_map(A, *, kernel="sigmoid", gamma=None, coef0=1.0, degree=3, center=True, relu=False):
    """KPCA-CAM from the activations A (N, K, h, w): each image's first kernel principal component
    (module docstring). kernel: "sigmoid" tanh(gamma <x, y> + coef0), "rbf" exp(-gamma |x - y|^2),
    "poly" (gamma <x, y> + coef0)^degree, "linear" <x, y>; gamma None means 1/K. center: centre
    each channel over the positions first (as the authors' code). Signed; no final ReLU."""
    require_choice("kernel", kernel, KERNELS)
    return final_relu(np.stack([kernel_component_map(a, kernel, gamma, coef0, degree, center) for a in A]), relu)


def kernel_component_map(activations, kernel="sigmoid", gamma=None, coef0=1.0, degree=3, center=True):
    """(K, h, w) -> (h, w): sqrt(lambda_1) v_1 of the centred kernel matrix of the positions."""
    centred, _ = centred_kernel(activations, kernel, gamma, coef0, degree, center)
    eigenvalues, eigenvectors = np.linalg.eigh(centred)
    first = eigenvectors[:, -1]  # eigh sorts ascending: the largest eigenvalue is the last
    shape = activations.shape[1:]
    return (orient(first, by_sum=False) * np.sqrt(max(eigenvalues[-1], 0))).reshape(shape).astype(activations.dtype)


def centred_kernel(activations, kernel="sigmoid", gamma=None, coef0=1.0, degree=3, center=True):
    """(Kc, K): the kernel matrix K (n, n) of the n = h*w positions of (K, h, w) activations, and Kc,
    K centred in feature space, (I - 1/n) K (I - 1/n)."""
    O, _ = _positions(activations, center)
    gamma = 1.0 / O.shape[1] if gamma is None else gamma
    products = O @ O.T
    if kernel == "sigmoid":
        gram = np.tanh(gamma * products + coef0)
    elif kernel == "poly":
        gram = (gamma * products + coef0) ** degree
    elif kernel == "rbf":
        squared = np.diag(products)[:, None] + np.diag(products)[None, :] - 2 * products
        gram = np.exp(-gamma * np.maximum(squared, 0))
    else:
        gram = products
    n = len(gram)
    centring = np.eye(n, dtype=gram.dtype) - gram.dtype.type(1.0 / n)
    return centring @ gram @ centring, gram


def kpcacam(model, x, layer, target=None, *, score="logit", kernel="sigmoid", gamma=None, coef0=1.0, degree=3,
            center=True, relu=False):
    """The KPCA-CAM map (N, h, w) at the layer's resolution: kpcacam_map of the layer's A (no class,
    no gradient; target and score are accepted, as in every method, and ignored)."""
    return kpcacam_map(layer_activations(model, x, layer), kernel=kernel, gamma=gamma, coef0=coef0, degree=degree,
                       center=center, relu=relu)


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
