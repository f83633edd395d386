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

The libraries' own choices (docs/peers.md, Grad-CAM++), each an option of
gradcampp_map and gradcampp that can be switched on alone:

  alpha_eps=1e-6       added to the denominator 2 g^2 + sum(A) g^3 (pytorch-grad-cam)
  keep="g != 0"        alpha = g^2 / denominator wherever g != 0, whatever the denominator's
                       sign (pytorch-grad-cam; tf-keras-vis's "+1 where g^2 = 0" does the same);
                       minicam's rule "g > 0" keeps only g > 0 and a positive denominator
  denominator="sum(g^3 A)"   2 g^2 + sum_ij(g^3 A), the sum over the product (torchcam, 1Konny),
                       instead of eq. 19's 2 g^2 + g^3 sum_ab(A)
  divide_alpha=False   alpha = g^2, never divided: torchcam <= 0.5.0, whose in-place division
                       alpha[mask].div_(...) divides a copy made by boolean indexing
  renormalise="positive" / "all"   alpha divided, per channel, by its sum over the positions
                       with g > 0 (the authors' code, variant="authors") or over all positions
                       (tf-keras-vis), by 1 where that sum is 0
  exp_score=True       the derivatives carry the paper's Y = exp(S): exp(S) g, exp(S) g^2,
                       exp(S) g^3, computed in the activations' dtype as the authors and
                       tf-keras-vis do. exp(S) cancels in alpha and only scales the map, but it
                       overflows: above S = 88.72 in float32 (709.78 in float64) it is inf, and
                       tf-keras-vis 0.8.7 returns a NaN map; here that is a NonFiniteError
                       that says so. Below about S = -87 (float32) it underflows towards 0
                       and the map becomes 0, as in tf-keras-vis.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Tensor, enable_grad, grad
from minicam.cam.capture import capture, checked_images, class_scores, output_with_layer_output
from minicam.cam.maps import final_relu, positive, require_choice, weighted_sum
from minicam.cam.noise import draw_noise, noise_samples
from minicam.errors import NonFiniteError

VARIANTS = ("paper", "authors", "exact")
DENOMINATORS = ("sum(A) g^3", "sum(g^3 A)")
KEEP_RULES = ("g > 0", "g != 0")
RENORMALISATIONS = (None, "positive", "all")


def alpha_closed_form(A: np.ndarray, g: np.ndarray, *, eps=None, denominator="sum(A) g^3", keep="g > 0",
                      powers=None) -> np.ndarray:
    """Eq. 19's alpha, per position.

    By default, the stable form alpha = 1 / (2 + g * sum_ab A_ab) at positions with g > 0 and a
    positive denominator, 0 elsewhere. With a peer's option (eps, denominator="sum(g^3 A)",
    keep="g != 0", or the exp(S) powers of `derivative_powers`), the literal quotient the peers
    compute, g^2 / (2 g^2 + sum(A) g^3 + eps), so that their eps and their rounding are reproduced.
    """
    if eps is None and denominator == "sum(A) g^3" and keep == "g > 0" and powers is None:
        activation_sum = A.sum(axis=(2, 3), keepdims=True)  # sum_ab A_kab, one number per channel
        quotient_denominator = 2 + g * activation_sum
        usable = (g > 0) & (quotient_denominator > 0)
        return np.where(usable, 1 / np.where(usable, quotient_denominator, 1), 0.0)
    _, second, third = derivative_powers(g) if powers is None else powers
    if denominator == "sum(A) g^3":
        full = 2 * second + A.sum(axis=(2, 3), keepdims=True) * third
    else:  # "sum(g^3 A)": the sum runs over the product, not over A alone
        full = 2 * second + np.sum(third * A, axis=(2, 3), keepdims=True)
    if eps is not None:
        full = full + eps
    usable = (g != 0) & (full != 0) if keep == "g != 0" else (g > 0) & (full > 0)
    return np.where(usable, second / np.where(usable, full, 1), 0.0)


def derivative_powers(g: np.ndarray, scores=None):
    """(first, second, third) = (g, g^2, g^3), or with the logits S (N,) the paper's
    derivatives of Y = exp(S): exp(S) g, exp(S) g^2, exp(S) g^3, each the previous one times g,
    in g's dtype (as the authors' code and tf-keras-vis). An exp(S) that overflows is an error."""
    if scores is None:
        second = g * g
        return g, second, second * g
    scale = exp_of_scores(scores, g.dtype)[:, None, None, None]
    first = scale * g
    second = first * g
    return first, second, second * g


def exp_of_scores(scores, dtype) -> np.ndarray:
    """exp(S) in `dtype`; NonFiniteError where it overflows (S > 88.72 in float32, 709.78 in float64)."""
    scores = np.asarray(scores).astype(dtype)
    with np.errstate(over="ignore"):
        scale = np.exp(scores)
    if not np.all(np.isfinite(scale)):
        image = int(np.argmin(np.isfinite(scale)))
        limit = float(np.log(np.finfo(dtype).max))
        raise NonFiniteError(
            f"exp(S) overflows {np.dtype(dtype).name} for image {image} (logit S = {float(scores[image]):.6g} > "
            f"{limit:.2f}): with exp_score=True (the paper's Y = exp(S), as tf-keras-vis computes it) the map would "
            "be NaN, which is what tf-keras-vis 0.8.7 returns here. exp(S) only scales each image's map: use "
            "exp_score=False, or compute in float64")
    return scale


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


def renormalise_like_the_authors(alpha: np.ndarray, g: np.ndarray, over="positive") -> np.ndarray:
    """The authors' extra step: divide alpha, per channel, by its sum over the
    positions where ReLU(g) != 0 (divide by 1 where that sum is 0). over="all": the sum over
    every position instead (tf-keras-vis)."""
    total = np.sum(np.where(g > 0, alpha, 0) if over == "positive" else alpha, axis=(2, 3), keepdims=True)
    return alpha / np.where(total != 0, total, 1)


def gradcampp_map(A, g, *, variant="paper", d2=None, d3=None, alpha_eps=None, denominator="sum(A) g^3", keep="g > 0",
                  divide_alpha=True, renormalise=None, exp_scores=None, relu=True):
    """Grad-CAM++ from A and g (and, for variant="exact", the diagonals d2 = d2Y/dA^2 and
    d3 = d3Y/dA^3 of the same shape): eq. 9 with the alpha of the variant.

        w_k = sum_ij alpha_kij ReLU(g_kij)       (eq. 9)
        L   = ReLU(sum_k w_k A_k)

    The peers' choices (module docstring): alpha_eps, denominator, keep, divide_alpha, renormalise,
    and exp_scores (the logits S (N,): the derivatives carry exp(S), ReLU(exp(S) g) in eq. 9).
    """
    renormalise = _checked_options(variant, alpha_eps, denominator, keep, renormalise, exp_scores, divide_alpha)
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
        alpha, first = alpha_general(d2, d3, A, g), g
    else:
        powers = None if exp_scores is None else derivative_powers(g, exp_scores)
        first = g if powers is None else powers[0]
        if divide_alpha:
            alpha = alpha_closed_form(A, g, eps=alpha_eps, denominator=denominator, keep=keep, powers=powers)
        else:  # torchcam <= 0.5.0: the division of alpha never takes effect
            alpha = derivative_powers(g)[1] if powers is None else powers[1]
        if renormalise is not None:
            alpha = renormalise_like_the_authors(alpha, g, over=renormalise)
    with np.errstate(over="ignore", invalid="ignore"):
        weights = np.sum(alpha * positive(first), axis=(2, 3))  # eq. 9
    if exp_scores is not None and not np.all(np.isfinite(weights)):
        image = int(np.argmin(np.all(np.isfinite(weights), axis=1)))
        raise NonFiniteError(
            f"with exp_score=True the derivatives exp(S) g^p overflow {A.dtype.name} for image {image} (logit S = "
            f"{float(exp_scores[image]):.6g}): 2 exp(S) g^2 + exp(S) g^3 sum(A) is not finite, and tf-keras-vis "
            "0.8.7 returns a NaN map here. exp(S) only scales each image's map: use exp_score=False, or compute "
            "in float64")
    return final_relu(weighted_sum(weights, A), relu)


def _checked_options(variant, eps, denominator, keep, renormalise, exp_scores, divide_alpha=True):
    """The renormalisation the options ask for (variant="authors" means renormalise="positive"),
    after checking every option."""
    for what, value, choices in (("Grad-CAM++ variant", variant, VARIANTS), ("denominator", denominator, DENOMINATORS),
                                 ("keep rule", keep, KEEP_RULES), ("renormalise", renormalise, RENORMALISATIONS)):
        require_choice(what, value, choices)
    if eps is not None and (isinstance(eps, bool) or not np.isfinite(eps) or eps < 0):
        raise ValueError(f"alpha_eps must be None or a finite non-negative number, got {eps!r}")
    if variant == "authors":
        if renormalise not in (None, "positive"):
            raise ValueError("variant='authors' renormalises over the positive gradients; it cannot be combined "
                             f"with renormalise={renormalise!r}")
        return "positive"
    peer_options = (eps is not None or denominator != "sum(A) g^3" or keep != "g > 0" or renormalise is not None
                    or exp_scores is not None or not divide_alpha)
    if variant == "exact" and peer_options:
        raise ValueError("variant='exact' computes eq. 10 from the true derivatives; the closed form's options "
                         "(alpha_eps, denominator, keep, divide_alpha, renormalise, exp_score) do not apply to it")
    return renormalise


def gradcampp(model, x, layer, target=None, *, score="logit", variant="paper", chunk_size=512, alpha_eps=None,
              denominator="sum(A) g^3", keep="g > 0", divide_alpha=True, renormalise=None, exp_score=False,
              relu=True):
    """Grad-CAM++ of the model's score at `layer`; see the module docstring for the variants
    and for the peers' options (exp_score=True: the derivatives carry exp(S) of each image's logit).

    score="logit" and score="exp" give the same paper/authors maps: eq. 19 uses
    g = dS/dA of the logit S either way, and exp(S) would only multiply every
    weight of the image by the same positive number.
    """
    options = dict(alpha_eps=alpha_eps, denominator=denominator, keep=keep, divide_alpha=divide_alpha,
                   renormalise=renormalise)
    if variant == "exact":
        _checked_options(variant, alpha_eps, denominator, keep, renormalise, True if exp_score else None, divide_alpha)
        A, g, d2, d3 = diagonal_derivatives(model, x, layer, target, score, chunk_size)
        return gradcampp_map(A, g, variant=variant, d2=d2, d3=d3, relu=relu, **options)
    cap = capture(model, x, layer, target, "softmax" if score == "softmax" else "logit")
    exp_scores = cap.scores.data if exp_score else None
    return gradcampp_map(cap.A, cap.gradients().data, variant=variant, exp_scores=exp_scores, relu=relu, **options)


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


smoothgrad_noise = draw_noise  # the noise of Smooth Grad-CAM++: (n_samples, C, H, W), for every image


def smoothgradcampp_map(A, scores, gradients, *, exp_weights=True, alpha_eps=None, denominator="sum(A) g^3",
                        relu_gradient="mean", map_activations=None, relu=True):
    """Smooth Grad-CAM++ (Omeiza et al. 2019) from the clean activations A (N, K, h, w), and the
    logits S_s (samples, N) and gradients g_s (samples, N, K, h, w) of the noisy copies.

    With Y = exp(S) as in eq. 19, the averaged derivatives are
        D1 = mean_s exp(S_s) g_s,  D2 = mean_s exp(S_s) g_s^2,  D3 = mean_s exp(S_s) g_s^3
    and alpha = D2 / (2 D2 + sum_ab A_ab D3), w_k = sum_ij alpha ReLU(D1). exp(S_s) is
    taken relative to the largest S_s of the image (a common positive factor, so alpha
    is unchanged).

    torchcam 0.5.0's SmoothGradCAMpp, option by option (docs/peers.md, Smooth Grad-CAM++):
      exp_weights=False        D_p = mean_s g_s^p, without exp(S_s)
      denominator="sum(g^3 A)", alpha_eps=1e-8   alpha = D2 / (2 D2 + sum_ij(D3 A) + eps), kept
                               wherever the ReLU'd gradient is not 0 (Grad-CAM++'s keep="g != 0")
      relu_gradient="last"     ReLU(g) of the LAST noisy sample in w_k, not ReLU(D1)
      map_activations          the activations the map sums (torchcam: the last noisy sample's,
                               as its hooks stay on during the noisy passes); default A
    """
    require_choice("relu_gradient", relu_gradient, ("mean", "last"))
    require_choice("denominator", denominator, DENOMINATORS)
    weight = np.exp(scores - scores.max(axis=0)) if exp_weights else np.ones_like(scores)
    d1, d2, d3 = (np.mean(weight[:, :, None, None, None] * gradients**p, axis=0) for p in (1, 2, 3))
    gradient = d1 if relu_gradient == "mean" else gradients[-1]
    if alpha_eps is None and denominator == "sum(A) g^3":
        alpha = alpha_general(d2, d3, A, gradient)
    else:
        alpha = alpha_closed_form(A, gradient, eps=alpha_eps, denominator=denominator, keep="g != 0",
                                  powers=(d1, d2, d3))
    weights = np.sum(alpha * positive(gradient), axis=(2, 3))
    return final_relu(weighted_sum(weights, A if map_activations is None else map_activations), relu)


def smoothgradcampp(model, x, layer, target=None, *, score="logit", n_samples=8, noise_std=0.15, rng=None, noise=None,
                    exp_weights=True, alpha_eps=None, denominator="sum(A) g^3", relu_gradient="mean",
                    activations="clean", relu=True):
    """Smooth Grad-CAM++ of the model's logit at `layer`: smoothgradcampp_map of the clean A and of
    the logits and gradients of n_samples noisy copies x_s = x + noise_s, noise_s ~ N(0, noise_std^2).

    The noise is drawn once, n_samples images of the input's shape (C, H, W), and the SAME noise
    is added to every image of the batch, so that an image's map does not depend on the other
    images or their order (noise drawn for the whole batch would). The target class is fixed
    from the clean input. rng: an np.random.Generator (default: np.random.default_rng(0), so
    the map is reproducible). noise: the noise itself instead, (samples, C, H, W) for every
    image or (samples, N, C, H, W) one per image (e.g. the noise a peer drew), in which case
    n_samples, noise_std and rng are not used.

    exp_weights, alpha_eps, denominator, relu_gradient: as smoothgradcampp_map. activations="last-sample":
    the map sums the last noisy sample's activations (torchcam 0.5.0), "clean" the input's.
    """
    if score != "logit":
        raise ValueError("smoothgradcam++ follows eq. 19 (Y = exp(S) of the logit S); leave score='logit'")
    require_choice("activations", activations, ("clean", "last-sample"))
    x = checked_images(x)
    noise = noise_samples(rng, n_samples, noise_std, noise, x.shape[1:], x.shape[0], x.data.dtype)
    clean = capture(model, x, layer, target, "logit")
    classes = clean.classes if clean.classes is not None else target
    logits, grads = [], []
    for sample in noise:
        cap = capture(model, x.data + sample, layer, classes, "logit")  # (C, H, W) noise: the same for every image
        logits.append(cap.scores.data)
        grads.append(cap.gradients().data)
    last = cap.A if activations == "last-sample" else None
    return smoothgradcampp_map(clean.A, np.stack(logits), np.stack(grads), exp_weights=exp_weights, alpha_eps=alpha_eps,
                               denominator=denominator, relu_gradient=relu_gradient, map_activations=last, relu=relu)
