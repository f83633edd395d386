# %% [markdown]
# # Lesson 07: Grad-CAM++, derived and checked with true higher derivatives
#
# **Objectives**
# - Read Grad-CAM++'s general weights (Chattopadhay et al. 2018, eq. 9 and 10), which
#   need second and third derivatives, and the closed form (eq. 19) that follows from
#   assuming the explained score is $Y = e^{S}$.
# - Compute the true derivatives with minicam's higher-order autograd, check the closed
#   form against them (and against finite differences), and see where it fails: a
#   softmax score.
# - Tell apart the variants in circulation: the paper's, the authors' code (alpha
#   renormalised) and "Grad-CAM+" (the mean of the positive gradients), which many
#   tutorials present as Grad-CAM++.
#
# **Prerequisites**: lesson 01 (second derivatives with `create_graph=True`), lesson 05
# (CAM), lesson 06 (Grad-CAM on a GAP head).
#
# **Code you will read**
# - `minicam/cam/gradcampp.py`: `alpha_closed_form`, `alpha_general`,
#   `renormalise_like_the_authors`, `gradcampp`, `diagonal_derivatives`
# - `minicam/cam/gradient.py`: `gradcam_plus_map`
# - `minicam/cam/capture.py`: `class_scores` (the scores "logit", "softmax", "exp")
#
# **Time**: 50 minutes.

# %%
import os
import time

import numpy as np
from matplotlib.figure import Figure

import minicam
import minicam.cam
import minicam.data
import minicam.models
import minicam.viz
from minicam import Tensor, ops
from minicam.cam.capture import predict
from minicam.cam.conventions import normalize_maps
from minicam.cam.gradcampp import alpha_closed_form, alpha_general, diagonal_derivatives

SEED = 0
FAST = os.environ.get("MINICAM_FAST") == "1"  # CI: fewer images through the exact (third-derivative) path
rng = np.random.default_rng(SEED)

LAYER = "features.relu3"  # the CAM layer: above it only GAP -> Linear
DEEP = "features.pool2"   # one block lower: above it conv3 -> ReLU -> GAP -> Linear
CHUNK = 256               # elements per batch of copies in diagonal_derivatives
CLASSES = minicam.data.CLASSES
BATCH_IMAGES = 20 if FAST else 40
FIGURE_IMAGES = 2 if FAST else 6

model = minicam.models.lesson_cnn()
data = minicam.data.single_instance(rng, BATCH_IMAGES)
x_all = data.images
x1 = x_all[:1]
predicted = predict(model, x_all).argmax(axis=1)
print(f"{BATCH_IMAGES} images; image 0 is a {CLASSES[data.labels[0]]}, predicted {CLASSES[predicted[0]]}")


def minmax(maps):
    """Per-image min-max scaling to [0, 1], exact (a constant map becomes 0): explain()'s last step."""
    return normalize_maps(maps, "minmax")


# %% [markdown]
# ## 1. The weights of Grad-CAM++ (eq. 9 and 10)
#
# Grad-CAM weights every position of a channel equally ($\alpha = 1/hw$). Grad-CAM++ gives
# each position its own weight $\alpha^{kc}_{ij}$ and keeps only positive gradients
# (eq. 9):
#
# $$w_k^c = \sum_{ij} \alpha^{kc}_{ij}\,\mathrm{ReLU}\Big(\frac{\partial Y^c}{\partial A^k_{ij}}\Big),
# \qquad L^c = \mathrm{ReLU}\Big(\sum_k w_k^c A^k\Big).$$
#
# The authors pick $\alpha$ so that, if $Y^c$ were exactly $\sum_k w_k^c \sum_{ij} A^k_{ij}$,
# the weights would be recovered; differentiating that twice gives (eq. 10)
#
# $$\alpha^{kc}_{ij} = \frac{\dfrac{\partial^2 Y^c}{(\partial A^k_{ij})^2}}
# {2\dfrac{\partial^2 Y^c}{(\partial A^k_{ij})^2} + \sum_{ab} A^k_{ab}\,\dfrac{\partial^3 Y^c}{(\partial A^k_{ij})^3}} .$$
#
# Every derivative is a **diagonal** one: the second derivative with respect to the same
# element twice. Note where the sum sits: $\sum_{ab} A^k_{ab}$ is one number per channel,
# multiplying the third derivative at $(i, j)$. (Some implementations sum the product
# $A\,\partial^3 Y$ instead; see `docs/peers.md`, Grad-CAM++.)
#
# ## 2. The exponential assumption and eq. 19
#
# Take $Y^c = e^{S^c}$ with $S^c$ the class logit. In a network of ReLUs, max-pools and
# linear layers, $S^c$ is piecewise linear in $A$: $\partial^2 S/\partial A^2 = 0$ almost
# everywhere. Then, with $g = \partial S^c/\partial A^k_{ij}$,
#
# $$\frac{\partial Y}{\partial A} = e^{S} g,\qquad \frac{\partial^2 Y}{\partial A^2} = e^{S} g^2,\qquad
# \frac{\partial^3 Y}{\partial A^3} = e^{S} g^3,$$
#
# and eq. 10 becomes eq. 19, where $e^S$ cancels:
#
# $$\alpha^{kc}_{ij} = \frac{g^2}{2g^2 + \sum_{ab}A^k_{ab}\, g^3} = \frac{1}{2 + g\,\sum_{ab}A^k_{ab}}
# \quad (g \ne 0).$$
#
# The second form needs no powers and has no $0/0$. Only positions with $g > 0$ matter
# (ReLU in eq. 9), so minicam sets $\alpha = 0$ elsewhere.
#
# ## 3. The true derivatives, from the autograd
#
# `diagonal_derivatives(model, x, layer, target, score)` returns $A$, $\partial Y/\partial A$,
# $\partial^2 Y/\partial A^2$ and $\partial^3 Y/\partial A^3$ for every element. A Hessian
# diagonal costs one backward pass per element in general; the trick (read the docstring)
# runs the head on $P$ copies of $A$ and lets copy $p$ differentiate with respect to
# element $p$ only, so three backward passes give a chunk of diagonals.
#
# We explain $Y = e^{S_c}$ itself, with a callable target (so the factor $e^{S}$ is the
# true one), and $S_c$ (score "logit"), for image 0 at both layers, and compare with the
# claims of section 2.

# %%
c = int(predicted[0])


def exp_of_logit(output):
    """Y = exp(S_c) of the class c, one number per image: a callable target."""
    return ops.exp(output[:, c])


derivatives = {}
for layer in (LAYER, DEEP):
    start = time.perf_counter()
    A, dY, d2Y, d3Y = diagonal_derivatives(model, x1, layer, exp_of_logit, chunk_size=CHUNK)
    _, g, d2S, d3S = diagonal_derivatives(model, x1, layer, c, "logit", chunk_size=CHUNK)
    S = predict(model, x1)[0, c]
    eS = np.exp(S)
    derivatives[layer] = (A, g)
    print(f"{layer}: A {A.shape}, S = {S:.4f}, e^S = {eS:.1f}, "
          f"{A.size} elements, both sets of derivatives in {time.perf_counter() - start:.1f} s")
    print(f"  logit S: max |d2S| = {np.abs(d2S).max():.1e}, max |d3S| = {np.abs(d3S).max():.1e} (piecewise linear)")
    for name, true, formula in (("dY ", dY, eS * g), ("d2Y", d2Y, eS * g**2), ("d3Y", d3Y, eS * g**3)):
        error = np.abs(true - formula).max() / np.abs(formula).max()
        print(f"  {name} vs e^S g^{name[1] if name[1] != 'Y' else '1'}: max relative error {error:.1e}")
        assert error < 1e-12, (layer, name, error)
    assert np.abs(d2S).max() < 1e-12 and np.abs(d3S).max() < 1e-12

    # eq. 10 with the true derivatives equals eq. 19 from g alone
    exact_alpha = alpha_general(d2Y, d3Y, A, dY)
    closed_alpha = alpha_closed_form(A, g)
    print(f"  max |alpha eq. 10 (true derivatives) - alpha eq. 19| = {np.abs(exact_alpha - closed_alpha).max():.1e}")
    assert np.allclose(exact_alpha, closed_alpha, rtol=1e-12, atol=1e-14)

# %% [markdown]
# The second derivative of the logit is exactly zero at `features.relu3` (the head above
# it is linear) and also at `features.pool2`, where the head has a convolution and a
# ReLU: the derivative of a ReLU's mask is zero, so curvature can only come from the
# exponential.
#
# A finite-difference check that does not trust the autograd at all: at `features.pool2`
# we run the head (`conv3 -> relu3 -> pool -> flatten -> fc`) ourselves on $A \pm h\,e_{kij}$
# and take the second difference of $e^{S - S_0}$ ($S_0$ the logit at $A$, to keep the
# numbers near 1), for the five elements with the largest gradient. A finite difference
# must not straddle a kink (a ReLU or a max-pool switching inside the step): there the
# logit bends, and its true second derivative is a spike, not a number. We test that the
# logit is linear over the step first, and skip an element where it is not.

# %%
A_deep, g_deep = derivatives[DEEP]
S0 = predict(model, x1)[0, c]


def deep_head_logit(activations):
    """S_c, computed from features.pool2's output by the layers above it."""
    f = model.features
    return model.fc(model.flatten(model.pool(f.relu3(f.conv3(Tensor(activations)))))).data[0, c]


step = 1e-3  # the second difference of e^(g t) has relative error (g step)^2 / 12; rounding adds ~1e-14 / step^2
checked = 0
for flat_index in np.argsort(-g_deep.ravel())[:5]:
    element = np.unravel_index(flat_index, A_deep.shape)
    e = np.zeros_like(A_deep)
    e[element] = step
    S_plus, S_zero, S_minus = deep_head_logit(A_deep + e), deep_head_logit(A_deep), deep_head_logit(A_deep - e)
    where = tuple(int(i) for i in element[1:])
    if abs(S_plus - 2 * S_zero + S_minus) > 1e-9:  # a ReLU or max-pool switches within the step
        print(f"element {where}: the logit is not linear over +-{step} (a kink), skipped")
        continue
    Y_plus, Y_zero, Y_minus = np.exp(S_plus - S0), np.exp(S_zero - S0), np.exp(S_minus - S0)
    second_difference = (Y_plus - 2 * Y_zero + Y_minus) / step**2
    autograd = g_deep[element] ** 2  # d2Y/dA^2 = e^(S - S0) g^2, and e^0 = 1 at A
    relative = abs(second_difference - autograd) / autograd
    print(f"element {where}: finite differences {second_difference:.8f}, "
          f"e^(S-S0) g^2 = {autograd:.8f}, relative error {relative:.1e}")
    assert relative < 1e-5
    checked += 1
assert checked >= 2, "too few elements without a kink within the step"

# %% [markdown]
# ## 4. Eq. 10 = eq. 19 for $Y = e^S$, on the maps
#
# `METHODS["gradcam++"]` has three variants: `"paper"` (eq. 19 in its stable form),
# `"authors"` (section 6) and `"exact"` (eq. 10 with the true derivatives of the chosen
# score). With `score="exp"`, minicam explains $e^{S - S_0}$ (with $S_0$ held constant,
# so $e^{S}$ cannot overflow; every derivative is divided by the same $e^{S_0}$, and
# $\alpha$ does not change). The maps must agree.

# %%
x_two = x_all[:2]
for layer in (LAYER, DEEP):
    exact = minicam.cam.METHODS["gradcam++"](model, x_two, layer, variant="exact", score="exp", chunk_size=CHUNK)
    paper = minicam.cam.METHODS["gradcam++"](model, x_two, layer, variant="paper")
    relative = np.abs(exact - paper).max() / np.abs(paper).max()
    print(f"{layer}: max |exact (exp) - paper| / max |paper| = {relative:.1e}")
    assert relative < 1e-10

# the stable form against the textbook form g^2 / (2 g^2 + sum(A) g^3), at features.relu2:
# the max-pool above it sends the gradient to one position in four, so g = 0 elsewhere
SHALLOW = "features.relu2"
cap = minicam.cam.capture(model, x_all, SHALLOW)
A_batch, g_batch = cap.A, cap.gradients().data
activation_sum = A_batch.sum(axis=(2, 3), keepdims=True)
with np.errstate(invalid="ignore", divide="ignore"):
    textbook = g_batch**2 / (2 * g_batch**2 + activation_sum * g_batch**3)
stable = alpha_closed_form(A_batch, g_batch)
positive = g_batch > 0
print(f"{SHALLOW}, {BATCH_IMAGES} images: textbook and stable forms agree to "
      f"{np.abs(textbook[positive] - stable[positive]).max():.1e} where g > 0; the textbook form gives "
      f"{np.isnan(textbook).sum()} NaNs (0/0 where g = 0, {np.mean(g_batch == 0):.0%} of the positions)")
assert np.allclose(textbook[positive], stable[positive], rtol=1e-12, atol=0)
assert np.isnan(textbook).sum() == np.sum(g_batch == 0) > 0 and np.all(stable[g_batch == 0] == 0)

# %% [markdown]
# ## 5. How far is $\alpha$ from $1/2$?
#
# With $A \ge 0$ (after a ReLU or a max-pool) and $g > 0$, $\alpha = 1/(2 + g\sum A)$ lies
# in $(0, 1/2]$. It is close to $1/2$ when $g\sum_{ab}A_{ab}$ is small against 2, and
# Lerma & Lucas (2022) observe that in practice it often is; then Grad-CAM++'s weights are
# $\approx \frac12\sum_{ij}\mathrm{ReLU}(g)$. We measure it here.
#
# On the GAP head ($\texttt{features.relu3}$) there is an exact reading: $g = W_{ck}/(hw)$
# for every position, so $g\sum_{ab}A_{ab} = W_{ck}\,\mathrm{GAP}(A_k)$, **the channel's
# contribution to the logit** (lesson 05), and
#
# $$\alpha_k = \frac{1}{2 + W_{ck}\,\mathrm{GAP}(A_k)}:$$
#
# the paper's Grad-CAM++ damps precisely the channels that contribute most to the score.

# %%
alpha_stats = {}
for layer in (LAYER, DEEP):
    cap = minicam.cam.capture(model, x_all, layer)
    A_l, g_l = cap.A, cap.gradients().data
    alpha_l = alpha_closed_form(A_l, g_l)
    use = g_l > 0
    product = (g_l * A_l.sum(axis=(2, 3), keepdims=True))[use]
    alpha_stats[layer] = (product, alpha_l[use])
    print(f"{layer}: over {use.sum()} positions with g > 0: alpha in [{alpha_l[use].min():.3f}, {alpha_l[use].max():.3f}], "
          f"median {np.median(alpha_l[use]):.3f}; alpha >= 0.45 at {np.mean(alpha_l[use] >= 0.45):.0%} of them; "
          f"g * sum(A) up to {product.max():.2f}")
    if layer == LAYER:
        W = model.fc.weight.data[cap.classes]                 # (N, K): each image's class row
        contribution = W * A_l.mean(axis=(2, 3))              # W_ck GAP(A_k)
        expected = np.where(W > 0, 1 / (2 + contribution), 0)[:, :, None, None] * np.ones_like(alpha_l)
        assert np.allclose(alpha_l, expected, rtol=1e-12, atol=1e-15)
        print(f"  on the GAP head alpha_k = 1 / (2 + W_ck GAP(A_k)) holds; the largest contribution "
              f"{contribution.max():.2f} gives the smallest alpha {1 / (2 + contribution.max()):.3f}")

# %% [markdown]
# ## 6. The authors' variant and Grad-CAM+
#
# - **The authors' code** (`adityac94/Grad_CAM_plus_plus`) adds a step that is not in the
#   paper: $\alpha$ is divided, per channel, by its sum over the positions where $g > 0$.
# - **Grad-CAM+** (the name is Lerma & Lucas's) is $w_k = \frac{1}{hw}\sum_{ij}\mathrm{ReLU}(g_{kij})$:
#   Grad-CAM with the negative gradients dropped. With $\alpha \equiv 1/2$ the paper's
#   Grad-CAM++ would be this map times $hw/2$, the same after normalisation.
#
# On the GAP head $\alpha$ is constant per channel, so the authors' renormalised $\alpha$
# is $1/hw$ at every position, and their map **is** Grad-CAM+, exactly. The paper's map is
# not: its channel weights carry the factors $1/(2 + W_{ck}\mathrm{GAP}(A_k))$.
#
# A side effect of dropping the negative gradients: Grad-CAM's map can vanish. If the
# channels with negative weights outweigh the others at every position, the ReLU of
# $\sum_k \alpha_k A_k$ is zero everywhere, and `explain` returns a blank map. With
# non-negative weights and $A \ge 0$, Grad-CAM+ and Grad-CAM++ cannot cancel that way.

# %%
variants = {}
for layer in (LAYER, DEEP):
    variants[layer] = {
        "Grad-CAM": minicam.cam.METHODS["gradcam"](model, x_all, layer),
        "Grad-CAM+": minicam.cam.METHODS["gradcam+"](model, x_all, layer),
        "Grad-CAM++ paper": minicam.cam.METHODS["gradcam++"](model, x_all, layer, variant="paper"),
        "Grad-CAM++ authors": minicam.cam.METHODS["gradcam++"](model, x_all, layer, variant="authors"),
    }

# Grad-CAM+ by hand, and the authors' variant = Grad-CAM+ on the GAP head
cap = minicam.cam.capture(model, x_all, LAYER)
plus_by_hand = np.maximum(np.einsum("nk,nkij->nij", np.maximum(cap.gradients().data, 0).mean(axis=(2, 3)), cap.A), 0)
assert np.allclose(plus_by_hand, variants[LAYER]["Grad-CAM+"], rtol=1e-12, atol=1e-14)
authors_vs_plus = np.abs(variants[LAYER]["Grad-CAM++ authors"] - variants[LAYER]["Grad-CAM+"]).max()
print(f"{LAYER}: max |authors - Grad-CAM+| = {authors_vs_plus:.1e} (raw maps)")
assert authors_vs_plus < 1e-12 * np.abs(variants[LAYER]["Grad-CAM+"]).max()

print("mean over images of the mean |difference| per pixel between min-max normalised maps (0 = same map):")
differences = {}
for layer in (LAYER, DEEP):
    normalised = {name: minmax(m) for name, m in variants[layer].items()}
    for other in ("Grad-CAM+", "Grad-CAM++ authors", "Grad-CAM"):
        d = np.abs(normalised["Grad-CAM++ paper"] - normalised[other]).mean(axis=(1, 2))
        differences[layer, other] = d
        print(f"  {layer:15s} paper vs {other:19s} {d.mean():.3f}   (largest image {d.max():.3f})")
assert differences[LAYER, "Grad-CAM+"].mean() > 0.01  # on this network alpha is not 1/2 everywhere

for layer in (LAYER, DEEP):
    empty = {name: int(np.sum(np.all(m == 0, axis=(1, 2)))) for name, m in variants[layer].items()}
    print(f"{layer}: images whose raw map is zero everywhere: " + ", ".join(f"{k} {v}" for k, v in empty.items()))

# %% [markdown]
# ## 7. When the assumption fails: a softmax score
#
# Explaining the softmax probability $p_c = e^{S_c}/\sum_j e^{S_j}$ instead of $e^{S_c}$
# breaks eq. 19: $p_c$ is not the exponential of a piecewise-linear function, its
# derivatives are not $p_c g^n$ for any $g$, and plugging its gradient into eq. 19 is a
# different method from eq. 10. `variant="paper", score="softmax"` does exactly that
# plug-in (as libraries do when the model ends in a softmax); `variant="exact"` uses the
# true second and third derivatives of $p_c$. We compare the two on a confident image and
# on the least confident image of the batch.

# %%
logits_all = predict(model, x_all)
probabilities = np.exp(logits_all - logits_all.max(axis=1, keepdims=True))
probabilities /= probabilities.sum(axis=1, keepdims=True)
top_probability = probabilities.max(axis=1)
chosen = np.array([int(np.argmax(top_probability)), int(np.argmin(top_probability))])
x_soft = x_all[chosen]
print(f"images {chosen.tolist()}: softmax probability of the predicted class "
      + ", ".join(f"{p:.7f}" for p in top_probability[chosen]))

A_s, g_s, d2_s, d3_s = diagonal_derivatives(model, x_soft, LAYER, None, "softmax", chunk_size=CHUNK)
alpha_exact_soft = alpha_general(d2_s, d3_s, A_s, g_s)
alpha_paper_soft = alpha_closed_form(A_s, g_s)
positive = g_s > 0
for n, image in enumerate(chosen):
    use = positive[n]
    print(f"image {image}: where g > 0, d2 > 0 (the sign eq. 19 assumes) at {np.mean(d2_s[n][use] > 0):.0%} of the "
          f"positions; alpha, paper plug-in [{alpha_paper_soft[n][use].min():.3f}, {alpha_paper_soft[n][use].max():.3f}], "
          f"exact (eq. 10) [{alpha_exact_soft[n][use].min():.3f}, {alpha_exact_soft[n][use].max():.3f}], "
          f"no valid alpha (set to 0) at {np.mean(alpha_exact_soft[n][use] == 0):.0%}")

soft_exact = minicam.cam.METHODS["gradcam++"](model, x_soft, LAYER, variant="exact", score="softmax", chunk_size=CHUNK)
soft_paper = minicam.cam.METHODS["gradcam++"](model, x_soft, LAYER, variant="paper", score="softmax")
soft_difference = np.abs(minmax(soft_exact) - minmax(soft_paper)).mean(axis=(1, 2))
for image, d, p in zip(chosen, soft_difference, top_probability[chosen]):
    print(f"image {image} (1 - p = {1 - p:.1e}): mean |exact - paper| per pixel of the normalised maps {d:.3f}")
assert np.abs(alpha_exact_soft - alpha_paper_soft)[positive].max() > 0.1  # eq. 19 does not hold here
assert soft_difference.max() > 0.05

# %% [markdown]
# For $Y = e^S$ the two computations agreed to $10^{-10}$; for the softmax they do not.
# For the predicted class, $p_c$ is usually above $1/2$, and then it is *concave* along
# the directions that raise it (two classes: $p = \sigma(u)$ has $\sigma'' =
# \sigma(1-\sigma)(1-2\sigma) < 0$ for $\sigma > 1/2$). So where $g > 0$ the true second
# derivative is negative, the opposite sign of eq. 19's $e^S g^2$, and eq. 10's $\alpha$
# is no longer eq. 19's: it can exceed $1/2$, or have no valid value at all (a
# non-positive ratio; minicam sets it to 0), as printed above. Which map is right?
# Neither is "Grad-CAM++ of the softmax" in the paper's sense: the derivation needs the
# exponential.
#
# A numerical remark: for the confident image, $1 - p_c \approx 10^{-12}$, and the
# derivatives of $p_c$ come from differences of numbers close to 1, so they carry only
# about 11 correct digits (exercise 4 measures this). The maps differ far more than that.
#
# ## 8. The figures
#
# First, how $\alpha$ is distributed at both layers (every position with $g > 0$ of the
# batch counts once); $\alpha = 1/2$ everywhere would make Grad-CAM++ the same map as
# Grad-CAM+.

# %%
fig = Figure(figsize=(7.5, 4.2), layout="constrained")
ax = fig.subplots()
bins = np.linspace(0, 0.5, 26)
for layer, colour in ((LAYER, "tab:red"), (DEEP, "tab:blue")):
    _, alphas = alpha_stats[layer]
    ax.hist(alphas, bins=bins, weights=np.full(len(alphas), 1 / len(alphas)), color=colour, alpha=0.55,
            label=f"{layer}: median {np.median(alphas):.2f}")
ax.axvline(0.5, color="black", linestyle=":", label=r"$\alpha = 1/2$ (Grad-CAM++ = Grad-CAM+)")
ax.set_xlabel(r"$\alpha_{kij} = 1 / (2 + g_{kij}\sum_{ab} A_{kab})$ (eq. 19)")
ax.set_ylabel("share of the positions with g > 0")
ax.set_title(f"Grad-CAM++'s alpha over {BATCH_IMAGES} images, predicted class")
ax.legend(loc="upper left")
ax.grid(alpha=0.3)
print(f"saved {minicam.viz.save_figure(fig, '07_alpha_histogram')}")

# %% [markdown]
# Then, for one image at `features.pool2`, the three channels that contribute most to the
# Grad-CAM++ map ($w_k \sum_{ij} A_{kij}$ largest): the activation, the gradient, $\alpha$
# (zero where $g \le 0$), and the per-position terms $\alpha\,\mathrm{ReLU}(g)$ whose sum
# is the channel's weight $w_k$ (eq. 9).

# %%
cap1 = minicam.cam.capture(model, x1, DEEP)
A1, g1 = cap1.A[0], cap1.gradients().data[0]
alpha1 = alpha_closed_form(cap1.A, cap1.gradients().data)[0]
terms1 = alpha1 * np.maximum(g1, 0)
weights1 = terms1.sum(axis=(1, 2))                                # eq. 9
channels = np.argsort(-(weights1 * A1.sum(axis=(1, 2))))[:3]

fig = Figure(figsize=(12.5, 8), layout="constrained")
axes = fig.subplots(3, 5)
for row, k in enumerate(channels):
    axes[row, 0].imshow(minicam.viz.to_display_image(x1[0]), interpolation="nearest")
    axes[row, 0].set_ylabel(f"channel {k}\n$w_k$ = {weights1[k]:.3f}")
    g_limit = max(np.abs(g1[k]).max(), 1e-12)
    panels = (
        (A1[k], "viridis", 0, max(A1[k].max(), 1e-12), "$A_k$"),
        (g1[k], "RdBu_r", -g_limit, g_limit, r"$g_k = \partial S / \partial A_k$"),
        (alpha1[k], "viridis", 0, 0.5, r"$\alpha_k$ (0 where $g \leq 0$)"),
        (terms1[k], "viridis", 0, max(terms1[k].max(), 1e-12), r"$\alpha_k\,\mathrm{ReLU}(g_k)$"),
    )
    for column, (values, cmap, low, high, title) in enumerate(panels, start=1):
        image = axes[row, column].imshow(values, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
        fig.colorbar(image, ax=axes[row, column], shrink=0.85)
        if row == 0:
            axes[row, column].set_title(title)
for a in axes.ravel():
    a.set_xticks([])
    a.set_yticks([])
axes[0, 0].set_title(f"input ({CLASSES[data.labels[0]]})")
fig.suptitle(f"Grad-CAM++ (paper) at {DEEP} (8x8 positions): the three channels that contribute most to the map")
print(f"saved {minicam.viz.save_figure(fig, '07_alpha_maps')}")

# %% [markdown]
# Then the maps: Grad-CAM, Grad-CAM+ and the three Grad-CAM++ variants at
# `features.pool2` (where they differ most), and the exact Grad-CAM++ of the softmax.

# %%
start = time.perf_counter()
# the first (then the second) image of each class
shown = np.array([np.flatnonzero(data.labels == k)[j] for j in range(2) for k in range(3)])[:FIGURE_IMAGES]
xs = x_all[shown]
rows = {
    "Grad-CAM": minicam.cam.explain(model, xs, "gradcam", DEEP),
    "Grad-CAM+": minicam.cam.explain(model, xs, "gradcam+", DEEP),
    "++ paper": minicam.cam.explain(model, xs, "gradcam++", DEEP, variant="paper"),
    "++ authors": minicam.cam.explain(model, xs, "gradcam++", DEEP, variant="authors"),
    "++ exact, e^S": minicam.cam.explain(model, xs, "gradcam++", DEEP, variant="exact", score="exp", chunk_size=CHUNK),
    "++ exact, softmax": minicam.cam.explain(model, xs, "gradcam++", DEEP, variant="exact", score="softmax",
                                             chunk_size=CHUNK),
}
assert np.allclose(rows["++ exact, e^S"], rows["++ paper"], atol=1e-9)
fig = minicam.viz.grid(xs, rows, column_titles=[CLASSES[data.labels[i]] for i in shown])
fig.suptitle(f"the predicted class's maps at {DEEP}")
print(f"saved {minicam.viz.save_figure(fig, '07_methods')} ({len(shown)} images, {time.perf_counter() - start:.1f} s)")

# %% [markdown]
# Notice the Grad-CAM row: for some images its map is blank (zero everywhere before the
# normalisation, section 6), while the positive-gradient methods still show the object.
# The paper variant and the exact variant with $e^S$ are the same map (asserted above);
# the exact softmax variant differs from them, most on the confident images.
#
# ## Exercises
#
# 1. On the GAP head, write the paper's Grad-CAM++ channel weights in closed form from $W$
#    and $\mathrm{GAP}(A)$ only (section 5), and check your formula against
#    `METHODS["gradcam++"](..., variant="paper")` at `features.relu3`.
# 2. Some implementations compute the denominator as $2g^2 + \sum_{ab}(A_{ab}\,g^3_{ab})$
#    (the sum over the *product*, see `docs/peers.md`, Grad-CAM++). Implement that, compare
#    its $\alpha$ with eq. 19 at `features.pool2`, and say how large the difference is
#    and where it comes from.
# 3. Run `diagonal_derivatives` with `score="exp"` (not the callable). What do `d2` and
#    `d3` equal, and why does the factor $e^{S}$ vanish? (Read `class_scores` in
#    `minicam/cam/capture.py`.) Why does it not change $\alpha$?
# 4. On the GAP head, the softmax along one activation is $p(t) = 1/(1 + \sum_{j\ne c}
#    r_j e^{v_j t})$ with $r_j = e^{S_j - S_c}$ and $v_j = (W_{jk} - W_{ck})/hw$. Derive
#    its first three derivatives at $t = 0$ from the sums $\sum_j r_j v_j^m$, and compare
#    them with `diagonal_derivatives(..., score="softmax")` for the confident image. How
#    many digits agree, and why?
# 5. Time `variant="exact"` at `features.relu3`, `features.pool2` and `features.relu2`
#    for one image, and change `chunk_size`. How does the cost grow with $K h w$?
#
# ## Instructor notes
#
# - **Expected output**: every derivative identity to about $10^{-14}$ (the second and
#   third derivatives of the logit exactly 0); finite differences to about $10^{-7}$;
#   eq. 10 = eq. 19 on the maps to about $10^{-16}$; 75% of the positions of
#   `features.relu2` have $g = 0$ (the max-pool), where the textbook form gives NaN.
#   $\alpha$: median about 0.34 at `features.relu3` (only about a fifth of the positions
#   within 10% of 1/2), 0.5 at `features.pool2` (about 60%), so "$\alpha \approx 1/2$"
#   is a property of a layer and a network, not a law. Authors' variant = Grad-CAM+
#   exactly on the GAP head; normalised paper vs Grad-CAM+ maps differ by about 0.05 per
#   pixel. Grad-CAM is blank for about a fifth of the images at `features.pool2`.
#   Softmax: the second derivative is negative at every position with $g > 0$; exact and
#   plug-in maps differ by about 0.08-0.16 per pixel.
# - **Misconception**: "Grad-CAM++ is the mean of the positive gradients". That is
#   Grad-CAM+; it equals the *authors' code* on a GAP head, not the paper's formula.
# - **Misconception**: "eq. 19 is an approximation". For $Y = e^S$ of a piecewise-linear
#   network it is exact (away from kinks); the assumption is the choice of $Y$.
# - **Misconception**: "you need second derivatives of a ReLU network to get curvature".
#   The logit has none; all of it comes from the exponential (or the softmax).
# - **Discussion prompt**: the paper motivates $\alpha$ by wanting weights that recover
#   $Y$ as a linear function of the activations. The shipped network's logit *is* linear
#   in the activations of `features.relu3`. What would the "right" weights be there, and
#   how do they compare with CAM's?
# - **Timing**: 15 minutes for the derivation (sections 1-2, on the board), 10 for the
#   derivative checks, 10 for $\alpha$ and the variants, 10 for the softmax, 5 for the
#   figures. The script runs in about 15 seconds, most of it in the exact variant at
#   `features.pool2`.
