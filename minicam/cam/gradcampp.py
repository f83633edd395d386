"""Grad-CAM++ (Chattopadhay et al. 2018) in its three forms, and Smooth Grad-CAM++.

The paper explains a score Y with channel weights

    w_k = sum_ij alpha_kij * ReLU(dY/dA_kij)                                  (eq. 9)

    alpha_kij = d2Y/dA_kij^2 / (2 d2Y/dA_kij^2 + sum_ab A_kab * d3Y/dA_kij^3)   (eq. 10)

and the map L = ReLU(sum_k w_k A_k). Eq. 10 needs the second and third
derivatives of Y with respect to each activation. The paper then assumes
Y = exp(S), with S the class logit of a piecewise-linear (ReLU) network, so that
dnY/dA^n = exp(S) g^n with g = dS/dA, and eq. 10 becomes (eq. 19)

    alpha_kij = g^2 / (2 g^2 + sum_ab A_kab g^3) = 1 / (2 + g_kij sum_ab A_kab)   where g != 0.

variant="paper"    eq. 19, in the stable form 1 / (2 + g sum(A)) (no 0/0, no powers).
variant="authors"  the authors' released code: eq. 19, then alpha renormalised per channel
                   to sum to 1 over the positions with positive gradient (not in the paper).
variant="exact"    eq. 10 with the true second and third derivatives of the chosen score,
                   from minicam's higher-order autograd: right for ANY score (e.g.
                   score="softmax", where eq. 19's assumption fails).

Only positions with g > 0 matter for the weights (ReLU(g) = 0 elsewhere), so
alpha is computed there only; elsewhere it is 0. If alpha is not
positive (a denominator <= 0 in eq. 19, possible only for signed activations,
e.g. a layer before its ReLU), alpha is 0 there: eq. 10's alpha has no meaning
at or beyond a pole.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Tensor, enable_grad, grad
from minicam.cam.capture import activations_and_gradients, capture, checked_images, class_scores, output_with_layer_output
from minicam.cam.maps import final_relu, positive, weighted_sum

VARIANTS = ("paper", "authors", "exact")


def alpha_closed_form(A: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Eq. 19 in the stable form alpha = 1 / (2 + g * sum_ab A_ab), at positions with g > 0."""
    activation_sum = A.sum(axis=(2, 3), keepdims=True)  # sum_ab A_kab, one number per channel
    denominator = 2 + g * activation_sum
    usable = (g > 0) & (denominator > 0)
    return np.where(usable, 1 / np.where(usable, denominator, 1), 0.0)


def alpha_general(d2: np.ndarray, d3: np.ndarray, A: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Eq. 10 from the second and third derivatives d2, d3 (each shaped like A).

    alpha is 0 where it is not positive (at or beyond a pole of eq. 10): for
    Y = exp(S) that is exactly where 2 + g sum(A) <= 0, the closed form's rule,
    so "exact" with score="exp" equals "paper" there too.
    """
    denominator = 2 * d2 + A.sum(axis=(2, 3), keepdims=True) * d3
    usable = (g > 0) & (denominator != 0)
    alpha = np.where(usable, d2 / np.where(usable, denominator, 1), 0.0)
    return np.where(alpha > 0, alpha, 0.0).astype(alpha.dtype, copy=False)


def renormalise_like_the_authors(alpha: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The authors' extra step: divide alpha, per channel, by its sum over the
    positions where ReLU(g) != 0 (divide by 1 where that sum is 0)."""
    total = np.sum(np.where(g > 0, alpha, 0), axis=(2, 3), keepdims=True)
    return alpha / np.where(total != 0, total, 1)


def gradcampp_map(A, g, *, variant="paper", d2=None, d3=None, relu=True):
    """Grad-CAM++ from A and g (and, for variant="exact", the diagonals d2 = d2Y/dA^2 and
    d3 = d3Y/dA^3 of the same shape): eq. 9 with the alpha of the variant.

        w_k = sum_ij alpha_kij ReLU(g_kij)       (eq. 9)
        L   = ReLU(sum_k w_k A_k)
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown Grad-CAM++ variant {variant!r}; choose one of {VARIANTS}")
    if variant == "exact":
        if d2 is None or d3 is None:
            raise ValueError("Grad-CAM++ variant='exact' needs the second and third derivatives d2 and d3 "
                             "(diagonal_derivatives computes them)")
        if not np.any(d2) and not np.any(d3) and np.any(g > 0):
            raise ValueError(
                "Grad-CAM++ variant='exact': every second and third derivative of the score with respect to "
                "the layer is 0 (the layers above it are piecewise linear), so eq. 10 is 0/0. Use score='exp', "
                "the paper's Y = exp(S), for which eq. 10 equals eq. 19."
            )
        alpha = alpha_general(d2, d3, A, g)
    else:
        alpha = alpha_closed_form(A, g)
        if variant == "authors":
            alpha = renormalise_like_the_authors(alpha, g)
    weights = np.sum(alpha * positive(g), axis=(2, 3))  # eq. 9
    return final_relu(weighted_sum(weights, A), relu)


def gradcampp(model, x, layer, target=None, *, score="logit", variant="paper", chunk_size=512, relu=True):
    """Grad-CAM++ of the model's score at `layer`; see the module docstring for the variants.

    score="logit" and score="exp" give the same paper/authors maps: eq. 19 uses
    g = dS/dA of the logit S either way, and exp(S) would only multiply every
    weight of the image by the same positive number.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown Grad-CAM++ variant {variant!r}; choose one of {VARIANTS}")
    if variant == "exact":
        A, g, d2, d3 = diagonal_derivatives(model, x, layer, target, score, chunk_size)
        return gradcampp_map(A, g, variant=variant, d2=d2, d3=d3, relu=relu)
    A, g = activations_and_gradients(model, x, layer, target, "softmax" if score == "softmax" else "logit")
    return gradcampp_map(A, g, variant=variant, relu=relu)


def diagonal_derivatives(model, x, layer, target=None, score="logit", chunk_size=512):
    """A, dY/dA, d2Y/dA^2 and d3Y/dA^3, each (N, K, h, w), every derivative taken
    with respect to the same element: the diagonals eq. 10 needs.

    A diagonal of a Hessian costs one backward pass per element in general. The
    trick: the layers above A treat the images of a batch independently, so run
    them on P copies of one image's A, and let copy p pick element p:
        d/dA_p of sum_p g_p[p]  =  d2Y/dA_p^2 for every p at once,
    and once more for the third derivative. Three backward passes per chunk of
    `chunk_size` elements, instead of one per element. (The layers below A run
    once; their batch of 1 broadcasts against the copies in skip connections.)
    """
    x = checked_images(x)
    first = capture(model, x, layer, target, score)
    A = first.A
    n, k, h, w = A.shape
    size = k * h * w
    g, d2, d3 = (np.zeros((n, size), dtype=A.dtype) for _ in range(3))  # float32 stays float32
    for image in range(n):
        target_n = first.classes[image] if first.classes is not None else target
        for start in range(0, size, chunk_size):
            picks = np.arange(start, min(start + chunk_size, size))
            copies = Tensor(np.repeat(A[image : image + 1], len(picks), axis=0), requires_grad=True)
            with enable_grad():
                output = output_with_layer_output(model, x.data[image : image + 1], layer, copies)
                y, _, _ = class_scores(output, _repeat_target(target_n, len(picks)), score)
            rows = np.arange(len(picks))
            (g1,) = grad(y.sum(), copies, create_graph=True)
            diag1 = g1.reshape(len(picks), size)[rows, picks]
            (g2,) = grad(diag1.sum(), copies, create_graph=True, allow_unused=True)
            g[image, picks] = diag1.data
            if g2 is None:  # the score is linear in A: every higher derivative is 0
                continue
            diag2 = g2.reshape(len(picks), size)[rows, picks]
            d2[image, picks] = diag2.data
            if diag2.requires_grad:
                (g3,) = grad(diag2.sum(), copies, allow_unused=True)
                if g3 is not None:
                    d3[image, picks] = g3.reshape(len(picks), size).data[rows, picks]
    shape = A.shape
    return A, g.reshape(shape), d2.reshape(shape), d3.reshape(shape)


def _repeat_target(target, copies):
    if target is None or callable(target):
        return target
    return np.full(copies, int(target))


def smoothgrad_noise(rng, n_samples, noise_std, image_shape, dtype):
    """The noise of Smooth Grad-CAM++: (n_samples, C, H, W), N(0, noise_std^2), added to every image."""
    if not (isinstance(n_samples, (int, np.integer)) and n_samples >= 1):
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if not (np.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be a finite non-negative number, got {noise_std!r}")
    return rng.normal(0.0, noise_std, size=(n_samples, *image_shape)).astype(dtype)


def smoothgradcampp_map(A, scores, gradients, *, relu=True):
    """Smooth Grad-CAM++ (Omeiza et al. 2019) from the clean activations A (N, K, h, w), and the
    logits S_s (samples, N) and gradients g_s (samples, N, K, h, w) of the noisy copies.

    With Y = exp(S) as in eq. 19, the averaged derivatives are
        D1 = mean_s exp(S_s) g_s,  D2 = mean_s exp(S_s) g_s^2,  D3 = mean_s exp(S_s) g_s^3
    and alpha = D2 / (2 D2 + sum_ab A_ab D3), w_k = sum_ij alpha ReLU(D1). exp(S_s) is
    taken relative to the largest S_s of the image (a common positive factor, so alpha
    is unchanged).
    """
    weight = np.exp(scores - scores.max(axis=0))[:, :, None, None, None]
    d1, d2, d3 = (np.mean(weight * gradients**p, axis=0) for p in (1, 2, 3))
    alpha = alpha_general(d2, d3, A, d1)
    weights = np.sum(alpha * positive(d1), axis=(2, 3))
    return final_relu(weighted_sum(weights, A), relu)


def smoothgradcampp(model, x, layer, target=None, *, score="logit", n_samples=8, noise_std=0.15, rng=None, relu=True):
    """Smooth Grad-CAM++ of the model's logit at `layer`: smoothgradcampp_map of the clean A and of
    the logits and gradients of n_samples noisy copies x_s = x + noise_s, noise_s ~ N(0, noise_std^2).

    The noise is drawn once, n_samples images of the input's shape (C, H, W), and the SAME noise
    is added to every image of the batch, so that an image's map does not depend on the other
    images or their order (noise drawn for the whole batch would). The target class is fixed
    from the clean input. rng: an np.random.Generator (default: np.random.default_rng(0), so
    the map is reproducible).
    """
    if score != "logit":
        raise ValueError("smoothgradcam++ follows eq. 19 (Y = exp(S) of the logit S); leave score='logit'")
    rng = np.random.default_rng(0) if rng is None else rng
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be an np.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    x = checked_images(x)
    clean = capture(model, x, layer, target, "logit")
    classes = clean.classes if clean.classes is not None else target
    logits, grads = [], []
    for noise in smoothgrad_noise(rng, n_samples, noise_std, x.shape[1:], x.dtype):
        noisy = x.data + noise  # the same noise for every image of the batch
        cap = capture(model, noisy, layer, classes, "logit")
        logits.append(cap.scores.data)
        grads.append(cap.gradients().data)
    return smoothgradcampp_map(clean.A, np.stack(logits), np.stack(grads), relu=relu)
