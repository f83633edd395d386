# %% [markdown]
# # Lesson 10: Beyond Grad-CAM, eight more maps and how to check each one
#
# **Objectives**
# - Know the one-line formula of Score-CAM, LayerCAM, XGrad-CAM, HiResCAM, Eigen-CAM,
#   Ablation-CAM, guided backpropagation / Guided Grad-CAM and counterfactual Grad-CAM,
#   and what each one changes in Grad-CAM's recipe.
# - Check every method against a computation done in the lesson: a hand recomputation
#   from `capture()`, an SVD, a tiny network backpropagated by hand, or an exact identity
#   on a global-average-pooling head (where several methods collapse into one).
# - Compare all of them on the same images: where the mass of each map falls (the
#   objects of the explained class, or the distractors of other classes).
#
# **Prerequisites**: lesson 00, lessons 05 (CAM), 06 (Grad-CAM) and 07 (Grad-CAM++),
# lesson 09 (maps at other layers).
#
# **Code you will read**
# - `minicam/cam/registry.py`: `REGISTRY`, one record per method (its paper, formula and options)
# - `minicam/cam/gradient.py`: `hirescam_map`, `xgradcam_map`, `layercam_map`, `gradcam_map(counterfactual=True)`
# - `minicam/cam/scorecam.py`: `scorecam_map`, `scorecam`, `channel_masks`
# - `minicam/cam/ablation.py`: `ablationcam_map`, `ablation_weights`, `ablationcam`
# - `minicam/cam/eigen.py`: `eigencam_map`, `first_component_map`, `orient`
# - `minicam/cam/guided.py`: `GuidedReLUOp`, `guided_gradients`, `guided_gradcam_map`
# - `minicam/metrics/localisation.py`: `energy_pointing_game`, `pointing_game`
#
# **Time**: 50 minutes (two sittings: sections 1-5, then 6-10).

# %%
import os
from collections import OrderedDict

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

import minicam
import minicam.cam
import minicam.cam.guided
import minicam.data
import minicam.metrics
import minicam.models
import minicam.nn
import minicam.viz
from minicam.cam.capture import predict

SEED = 10
FAST = os.environ.get("MINICAM_FAST") == "1"  # CI: fewer images in the comparison of section 10
rng = np.random.default_rng(SEED)
IMAGES = 8 if FAST else 32
LAST, EARLIER = "features.relu3", "features.relu2"
CLASSES = minicam.data.CLASSES
METHODS = minicam.cam.METHODS  # the raw maps (N, h, w), at the layer's resolution


def rel_error(a, b):
    """max |a - b| relative to the size of b."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


model = minicam.models.lesson_cnn()
data = minicam.data.multi_instance(rng, IMAGES)  # 48 x 48: the model is convolutions + GAP, any size works
x, labels = data.images, data.labels
print(f"{IMAGES} images {x.shape[1:]}; 1 to 4 objects of the labelled class each, plus 0 to 2 distractors")
print(f"accuracy on them: {np.mean(predict(model, x).argmax(axis=1) == labels):.3f} (trained on one object, 32 x 32)")

# %% [markdown]
# ## The methods in one table
#
# Notation: $A$ (K, h, w) the layer's activations, $g = \partial y_c / \partial A$ the
# gradient of the class logit, $Z = hw$, sums over $i, j$ run over positions. Every map
# ends with a ReLU unless said otherwise, and is then upsampled and normalised by `explain`.
#
# | method | weights or map |
# |---|---|
# | Grad-CAM | $L = \mathrm{ReLU}(\sum_k \alpha_k A_k)$, $\alpha_k = \frac1Z \sum_{ij} g_{kij}$ |
# | HiResCAM | $L = \mathrm{ReLU}(\sum_k g_k \odot A_k)$: no averaging of the gradient |
# | XGrad-CAM | $w_k = \sum_{ij} \frac{A_{kij}}{\sum_{ab} A_{kab}}\, g_{kij}$: the gradient averaged with the activations as weights |
# | LayerCAM | $L = \mathrm{ReLU}(\sum_k \mathrm{ReLU}(g_k) \odot A_k)$ |
# | Score-CAM | $w = \mathrm{softmax}_k(C)$, $C_k = f_c(x \odot H_k) - f_c(x_b)$, $H_k$ = $A_k$ upsampled and min-max scaled; $f_c$ the softmax probability; no gradient |
# | Ablation-CAM | $w_k = (y - y_k)/\lvert y \rvert$, $y_k$ the logit with channel $k$ set to 0; no gradient |
# | Eigen-CAM | $L = O v_1$, $O$ = $A$ as an $hw \times K$ matrix, $v_1$ its first right singular vector; no class, no ReLU |
# | guided backprop | $\partial y_c / \partial x$, every ReLU passing back only positive gradients where its input was positive |
# | Guided Grad-CAM | guided backprop $\odot$ upsampled Grad-CAM |
# | counterfactual Grad-CAM | $L = \mathrm{ReLU}(\sum_k (-\alpha_k) A_k)$: what *lowers* the score |
#
# The library keeps one record per method, `minicam.cam.REGISTRY`: its paper and equation,
# whether the paper ends with a ReLU, what its formula takes, and the formula in one line.
# Each method is written once, as that formula (`hirescam_map(A, g)`, `scorecam_map(A, C)`, ...):
# the checks below call the same functions a user's `explain` does.

# %%
for name in ("gradcam", "hirescam", "xgradcam", "layercam", "scorecam", "ablationcam", "eigencam",
             "guided-backprop", "guided-gradcam"):
    record = minicam.cam.REGISTRY[name]
    print(f"{name:16} {record.paper:40} final ReLU: {str(record.final_relu):5}  formula of: {', '.join(record.needs)}")

# %% [markdown]
# ## 1. HiResCAM (Draelos & Carin 2020)
#
# Grad-CAM averages the gradient over positions before weighting; HiResCAM multiplies
# element by element. On our GAP head the gradient at the last layer is the same at every
# position, $g_{kij} = W_{ck}/Z$, so there **HiResCAM = Grad-CAM**, exactly. And the
# un-ReLU'd map adds up to the score: $\sum_{ij}\sum_k g_{kij} A_{kij} = \sum_k W_{ck}\,
# \mathrm{mean}(A_k) = y_c - b_c$. One layer down, the gradient varies over positions and the
# two methods part.

# %%
cap = minicam.cam.capture(model, x, LAST, labels)
A, g, y = cap.A, cap.gradients().data, cap.scores.data
b = model.fc.bias.data[labels]

hires_signed = METHODS["hirescam"](model, x, LAST, labels, relu=False)
gradcam_last = METHODS["gradcam"](model, x, LAST, labels)
print(f"at {LAST}: HiResCAM vs Grad-CAM relative difference {rel_error(np.maximum(hires_signed, 0), gradcam_last):.1e}")
print(f"at {LAST}: sum of HiResCAM's signed map vs y - b: {rel_error(hires_signed.sum(axis=(1, 2)), y - b):.1e}")
assert rel_error(np.maximum(hires_signed, 0), gradcam_last) < 1e-12
assert rel_error(hires_signed.sum(axis=(1, 2)), y - b) < 1e-12

part = rel_error(METHODS["hirescam"](model, x, EARLIER, labels), METHODS["gradcam"](model, x, EARLIER, labels))
print(f"at {EARLIER}: HiResCAM vs Grad-CAM relative difference {part:.2f}")
assert part > 0.05

# %% [markdown]
# ## 2. XGrad-CAM (Fu et al. 2020), weights recomputed by hand
#
# XGrad-CAM averages the gradient over positions with the activations as weights,
# $w_k = \sum_{ij} A_{kij} g_{kij} / \sum_{ab} A_{kab}$ (a channel that is all zero gets 0).
# With a constant gradient (our last layer) the weighted average of a constant is that
# constant, so XGrad-CAM = Grad-CAM there too. We recompute it at `relu2`, where it differs.

# %%
def xgradcam_by_hand(model, x, layer, target):
    cap = minicam.cam.capture(model, x, layer, target)
    A, g = cap.A, cap.gradients().data
    total = A.sum(axis=(2, 3))                                          # (N, K)
    weights = np.where(total > 0, (A * g).sum(axis=(2, 3)) / np.where(total > 0, total, 1), 0.0)
    return np.maximum(np.einsum("nk,nkhw->nhw", weights, A), 0)


for layer in (LAST, EARLIER):
    error = rel_error(METHODS["xgradcam"](model, x, layer, labels), xgradcam_by_hand(model, x, layer, labels))
    versus_gradcam = rel_error(METHODS["xgradcam"](model, x, layer, labels), METHODS["gradcam"](model, x, layer, labels))
    print(f"at {layer}: XGrad-CAM vs hand {error:.1e}; vs Grad-CAM {versus_gradcam:.2e}")
    assert error < 1e-12
    assert (versus_gradcam < 1e-12) if layer == LAST else (versus_gradcam > 0.05)

# %% [markdown]
# ## 3. LayerCAM (Jiang et al. 2021)
#
# Like HiResCAM, but only positive gradients count: $L = \mathrm{ReLU}(\sum_k
# \mathrm{ReLU}(g_k) \odot A_k)$. Lesson 09 studied it layer by layer; here the one-line check
# at `relu2` from `capture()`.

# %%
cap2 = minicam.cam.capture(model, x, EARLIER, labels)
layercam_hand = np.maximum(np.sum(np.maximum(cap2.gradients().data, 0) * cap2.A, axis=1), 0)
error = rel_error(METHODS["layercam"](model, x, EARLIER, labels), layercam_hand)
print(f"at {EARLIER}: LayerCAM vs hand {error:.1e}")
assert error < 1e-12

# %% [markdown]
# ## 4. Score-CAM (Wang et al. 2020), one image by hand
#
# No gradient at all. Each channel $A_k$ becomes a mask: upsample it to the image
# (bilinear, half-pixel centres), scale it to $[0, 1]$ ($H_k$; a constant channel gives
# $H_k = 0$). Show the model only $x \odot H_k$ and read the class probability; subtract
# the probability of the black image $x_b = 0$; a softmax over channels gives the weights
# (Algorithm 1 of the paper):
#
# $$ C_k = f_c(x \odot H_k) - f_c(0), \qquad w = \mathrm{softmax}_k(C), \qquad
#    L = \mathrm{ReLU}\Big(\sum_k w_k A_k\Big). $$
#
# We redo it by hand with `minicam.ops.interpolate` and `predict` ($K = 32$ forward passes
# instead of one backward pass), for the first image of each class.

# %%
def probability(images, c):
    """The softmax probability of class c for each image."""
    return minicam.ops.softmax(minicam.Tensor(predict(model, images)), dim=1).data[:, c]


def scorecam_by_hand(image, c):
    """Score-CAM's map (h, w) of one image (1, 3, H, W) for class c, with its C and weights."""
    A1 = minicam.cam.capture(model, image, LAST).A[0]                                  # (K, h, w)
    up = minicam.ops.interpolate(minicam.Tensor(A1[None]), size=image.shape[2:], mode="bilinear",
                                 align_corners=False).data[0]                         # (K, H, W)
    low, high = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
    H = np.where(high > low, (up - low) / np.where(high > low, high - low, 1), 0.0)   # H_k in [0, 1]
    C = probability(image * H[:, None], c) - probability(np.zeros_like(image), c)      # K masked copies
    weights = np.exp(C - C.max()) / np.exp(C - C.max()).sum()                          # softmax over channels
    return np.maximum(np.einsum("k,khw->hw", weights, A1), 0), C, weights


black_logits = predict(model, np.zeros_like(x[:1]))[0]
print("logits of the black image: " + ", ".join(f"{n} {v:+.1f}" for n, v in zip(CLASSES, black_logits)))
print("| class | image | max abs(hand - library), relative | C from .. to | largest / smallest weight |")
print("|---|---|---|---|---|")
for c in range(3):
    i = int(np.flatnonzero(labels == c)[0])
    hand, C, weights = scorecam_by_hand(x[i:i + 1], c)
    error = rel_error(METHODS["scorecam"](model, x[i:i + 1], LAST, c)[0], hand)
    print(f"| {CLASSES[c]} | {i} | {error:.1e} | {C.min():+.2e} .. {C.max():+.2e} | {weights.max() / weights.min():.3f} |")
    assert error < 1e-10

# %% [markdown]
# Two things to read in this table.
#
# - **The weights hardly vary.** Probabilities lie in $[0, 1]$, so the $C_k$ differ by at
#   most 1 and the softmax weights by a factor $e \approx 2.7$ at most: Score-CAM's map is
#   never far from the plain sum of the channels. Here the probabilities are moreover
#   saturated (each masked image is surely, or surely not, of the class), so the $C_k$ sit
#   at the two ends of their range and the weights take about two values.
# - **For some classes they do not vary at all.** Look at the black image's logits: this
#   model calls an all-black image a disk, with a huge margin. A masked image
#   $x \odot H_k$ is mostly black, so the model calls almost every masked image a disk
#   too: the probability of "triangle" is then about $10^{-30}$ on every copy, every
#   $C_k \approx 0$, the weights are uniform, and the map is the class-agnostic mean of the
#   channels. The masked images are far from anything the model was trained on, and
#   Score-CAM inherits whatever the model does there. The peers' variants (logits instead
#   of probabilities, see `minicam/cam/scorecam.py` and exercise 1) avoid the saturation,
#   not the out-of-distribution inputs.

# %% [markdown]
# ## 5. Ablation-CAM (Desai & Ramaswamy 2020): an exact identity on a GAP head
#
# Switch channel $k$ off (set it to 0), run the layers above again, and see how much the
# logit drops: $w_k = (y - y_k)/\lvert y\rvert$. Above our last layer everything is linear
# (GAP, then Linear), so the drop is known without running anything:
#
# $$ y - y_k = W_{ck}\,\mathrm{mean}(A_k), \qquad
#    L = \mathrm{ReLU}\Big(\sum_k \frac{W_{ck}\,\mathrm{mean}(A_k)}{\lvert y\rvert} A_k\Big). $$
#
# Compare with CAM's weights $W_{ck}$: Ablation-CAM also multiplies each by how active the
# channel is on this image. The library runs the $K$ ablated forward passes; we use the
# identity.

# %%
ablation_hand = np.maximum(np.einsum("nk,nkhw->nhw", model.fc.weight.data[labels] * A.mean(axis=(2, 3))
                                     / np.abs(y)[:, None], A), 0)
error = rel_error(METHODS["ablationcam"](model, x, LAST, labels), ablation_hand)
print(f"Ablation-CAM at {LAST} vs W_ck mean(A_k) / |y|: {error:.1e}")
assert error < 1e-10

# %% [markdown]
# ## 6. Eigen-CAM (Muhammad & Yeasin 2020): an SVD in the lesson
#
# Lay the activations out as a matrix $O$ with one row per position and one column per
# channel ($hw \times K$) and take its SVD $O = U S V^\top$. The map is the projection of
# every position on the first right singular vector, $L = O v_1 = s_1 u_1$: the direction
# in channel space along which the activations vary most. It uses neither the class nor
# a gradient. An SVD fixes $v_1$ only up to its sign; minicam chooses the sign that makes
# the map's sum positive (see `orient` in `minicam/cam/eigen.py`).

# %%
O = A[0].reshape(A.shape[1], -1).T                                   # (hw, K) for image 0
U, S, Vt = np.linalg.svd(O, full_matrices=False)
projection = O @ Vt[0]
projection = projection if projection.sum() > 0 else -projection     # the sign rule
eigen_hand = projection.reshape(A.shape[2:])

eigen_library = METHODS["eigencam"](model, x[:1], LAST)[0]
print(f"Eigen-CAM vs SVD by hand: {rel_error(eigen_library, eigen_hand):.1e}; "
      f"|O v1| = s1 |u1|: {rel_error(np.abs(projection), S[0] * np.abs(U[:, 0])):.1e}; "
      f"first component explains {S[0] ** 2 / np.sum(S ** 2):.0%} of sum of squares")
assert rel_error(eigen_library, eigen_hand) < 1e-12
assert rel_error(np.abs(projection), S[0] * np.abs(U[:, 0])) < 1e-12
same_for_every_class = [METHODS["eigencam"](model, x[:1], LAST, target)[0] for target in range(3)]
assert all(np.array_equal(m, same_for_every_class[0]) for m in same_for_every_class), "Eigen-CAM ignores the class"

# %% [markdown]
# ## 7. Guided backpropagation (Springenberg et al. 2015), by hand on a tiny network
#
# Guided backprop is the gradient of the score with respect to the **image**, except that
# each ReLU passes back a gradient $R$ only where its input $z$ was positive *and* the
# gradient is positive:
#
# $$ \text{backprop: } R_{\text{in}} = [z > 0]\, R_{\text{out}}, \qquad
#    \text{guided: } R_{\text{in}} = [z > 0]\,[R_{\text{out}} > 0]\, R_{\text{out}}. $$
#
# We build a network small enough to backpropagate by hand: two $1{\times}1$ convolutions
# (a matrix applied at every pixel), their ReLUs, GAP and a Linear layer, and compare with
# `minicam.cam.guided.guided_gradients`.

# %%
tiny = minicam.nn.Sequential(OrderedDict([
    ("conv1", minicam.nn.Conv2d(2, 4, 1, rng=rng)), ("relu1", minicam.nn.ReLU()),
    ("conv2", minicam.nn.Conv2d(4, 3, 1, rng=rng)), ("relu2", minicam.nn.ReLU()),
    ("pool", minicam.nn.AdaptiveAvgPool2d(1)), ("flatten", minicam.nn.Flatten()),
    ("fc", minicam.nn.Linear(3, 2, rng=rng)),
]))
tiny_x = rng.normal(size=(1, 2, 5, 5))
tiny_class = 1
V1, c1 = tiny.conv1.weight.data[:, :, 0, 0], tiny.conv1.bias.data           # (4, 2), (4,)
V2, c2 = tiny.conv2.weight.data[:, :, 0, 0], tiny.conv2.bias.data           # (3, 4), (3,)
z1 = np.einsum("oc,chw->ohw", V1, tiny_x[0]) + c1[:, None, None]
z2 = np.einsum("oc,chw->ohw", V2, np.maximum(z1, 0)) + c2[:, None, None]
R = np.broadcast_to(tiny.fc.weight.data[tiny_class][:, None, None] / 25, z2.shape)  # dy/d relu2 output (GAP: / 25)


def backward_by_hand(R, guided):
    R = R * (z2 > 0) * ((R > 0) if guided else 1)       # through relu2
    R = np.einsum("oc,ohw->chw", V2, R)                  # through conv2 (transpose of V2)
    R = R * (z1 > 0) * ((R > 0) if guided else 1)       # through relu1
    return np.einsum("oc,ohw->chw", V1, R)               # through conv1


guided_library = minicam.cam.guided.guided_gradients(tiny, tiny_x, tiny_class)[0]
x_tensor = minicam.Tensor(tiny_x, requires_grad=True)
(plain_library,) = minicam.grad(tiny(x_tensor)[0, tiny_class], x_tensor)
print(f"guided backprop vs hand: {rel_error(guided_library, backward_by_hand(R, True)):.1e}; "
      f"plain gradient vs hand: {rel_error(plain_library.data[0], backward_by_hand(R, False)):.1e}; "
      f"guided vs plain: {rel_error(guided_library, plain_library.data[0]):.2f}")
assert rel_error(guided_library, backward_by_hand(R, True)) < 1e-12
assert rel_error(plain_library.data[0], backward_by_hand(R, False)) < 1e-12

# %% [markdown]
# ## 8. Guided Grad-CAM (Selvaraju et al. 2017)
#
# Guided backprop is sharp but hardly class-specific; Grad-CAM is class-specific but
# coarse. Guided Grad-CAM multiplies them pixel by pixel: the guided gradients
# (N, 3, H, W) times Grad-CAM upsampled bilinearly and min-max scaled, then the largest
# absolute value over the colour channels. We rebuild it from its two factors, and measure
# how class-specific each factor is (the correlation between the maps of two classes).

# %%
gb = minicam.cam.guided.guided_gradients(model, x, labels)                     # (N, 3, H, W)
coarse = minicam.cam.explain(model, x, "gradcam", LAST, labels)                # upsampled, min-max
error = rel_error(METHODS["guided-gradcam"](model, x, LAST, labels), np.abs(gb * coarse[:, None]).max(axis=1))
print(f"Guided Grad-CAM vs |guided backprop x Grad-CAM|, max over colours: {error:.1e}")
assert error < 1e-12


def mean_class_correlation(method, n=min(12, IMAGES)):
    """Mean correlation between the maps of the labelled class and of the next class (first n images)."""
    a = minicam.cam.explain(model, x[:n], method, LAST, labels[:n])
    b = minicam.cam.explain(model, x[:n], method, LAST, (labels[:n] + 1) % 3)
    return float(np.mean([np.corrcoef(u.ravel(), v.ravel())[0, 1] for u, v in zip(a, b)
                          if u.std() > 0 and v.std() > 0]))


for method in ("guided-backprop", "gradcam", "guided-gradcam"):
    print(f"{method:16s} correlation between the maps of two classes: {mean_class_correlation(method):+.3f}")

# %% [markdown]
# ## 9. Counterfactual Grad-CAM (Selvaraju et al. 2017)
#
# Negate the gradients: $\alpha_k \to -\alpha_k$. The map shows the regions whose
# removal would *raise* the class score, "evidence against" the class. Since the weights
# are just negated, the counterfactual map is exactly the negative part of Grad-CAM's
# signed map: $\mathrm{ReLU}(-\sum_k \alpha_k A_k)$. On our images, distractors (objects of
# the other classes) are natural candidates.

# %%
signed = METHODS["gradcam"](model, x, LAST, labels, relu=False)
counterfactual = METHODS["gradcam"](model, x, LAST, labels, counterfactual=True)
error = rel_error(counterfactual, np.maximum(-signed, 0))
print(f"counterfactual Grad-CAM vs ReLU(-signed Grad-CAM): {error:.1e}")
assert error < 1e-12

# %% [markdown]
# ## 10. All methods on the same images
#
# For each method at two layers, on the `IMAGES` multi-instance images, explaining the
# labelled class (maps from `explain`, normalised to $[0, 1]$):
#
# - **energy, class objects**: `energy_pointing_game` against the union of the labelled
#   class's instances;
# - **energy, distractors**: the same against the distractors, over the images that have
#   at least one;
# - **pointing game**: the share of maps whose peak lies on an instance of the labelled class.
#
# Guided backprop works on the image itself and has no layer: its numbers repeat.

# %%
ROWS = OrderedDict([
    ("Grad-CAM", ("gradcam", {})), ("HiResCAM", ("hirescam", {})), ("XGrad-CAM", ("xgradcam", {})),
    ("LayerCAM", ("layercam", {})), ("Score-CAM", ("scorecam", {})), ("Ablation-CAM", ("ablationcam", {})),
    ("Eigen-CAM", ("eigencam", {})), ("guided backprop", ("guided-backprop", {})),
    ("Guided Grad-CAM", ("guided-gradcam", {})), ("counterfactual", ("gradcam", {"counterfactual": True})),
])
with_distractors = np.flatnonzero([len(d) > 0 for d in data.distractor_masks])
distractors = [data.distractor_masks[i] for i in with_distractors]
objects_share = data.union_masks().mean()
print(f"labelled-class objects cover {objects_share:.1%} of the pixels; "
      f"{len(with_distractors)} of {IMAGES} images have distractors\n")

table = {}
print("| method | layer | energy, class objects | energy, distractors | pointing game |")
print("|---|---|---|---|---|")
for layer in (LAST, EARLIER):
    for name, (method, options) in ROWS.items():
        if method == "guided-backprop" and layer != LAST:
            maps = guided_maps  # no layer: computed once
        else:
            maps = minicam.cam.explain(model, x, method, layer, labels, **options)
        if method == "guided-backprop":
            guided_maps = maps
        energy = minicam.metrics.energy_pointing_game(maps, data.masks).mean()
        energy_distractors = minicam.metrics.energy_pointing_game(maps[with_distractors], distractors).mean()
        pointing = minicam.metrics.pointing_game(maps, data.masks).mean()
        table[name, layer] = (energy, energy_distractors, pointing)
        print(f"| {name} | {layer} | {energy:.3f} | {energy_distractors:.3f} | {pointing:.3f} |")
        assert maps.shape == x[:, 0].shape and 0 <= maps.min() and maps.max() <= 1

# the counterfactual map should sit on the distractors far more than Grad-CAM's does
assert table["counterfactual", LAST][1] > 2 * table["Grad-CAM", LAST][1]
assert table["counterfactual", LAST][0] < table["Grad-CAM", LAST][0]

# %% [markdown]
# ## 11. The figure: one image, every method, two layers

# %%
# the first correctly classified image with several objects and a distractor (else the first image)
correct = predict(model, x).argmax(axis=1) == labels
candidates = [i for i in range(IMAGES) if correct[i] and len(data.masks[i]) >= 2 and len(data.distractor_masks[i]) >= 1]
shown = candidates[0] if candidates else 0
image, target = x[shown:shown + 1], int(labels[shown])
names = list(ROWS)
fig = Figure(figsize=(1.75 * (len(names) + 1) + 0.8, 4.6), layout="constrained")
axes = fig.subplots(2, len(names) + 1, squeeze=False)
axes[0, 0].imshow(minicam.viz.to_display_image(image[0]))
axes[0, 0].set_title(f"input: {len(data.masks[shown])} {CLASSES[target]}s,\n"
                     f"{len(data.distractor_masks[shown])} distractor(s)", fontsize=9)
axes[1, 0].axis("off")
for a in axes[:, 0]:
    a.set_xticks([]), a.set_yticks([])
for row, layer in enumerate((LAST, EARLIER)):
    for column, name in enumerate(names, start=1):
        method, options = ROWS[name]
        overlay_map = minicam.cam.explain(model, image, method, layer, target, **options)[0]
        minicam.viz.overlay(axes[row, column], image[0], overlay_map, colorbar=False)
        if row == 0:
            axes[row, column].set_title(name, fontsize=9)
    axes[row, 1].set_ylabel(layer.split(".")[1])
fig.colorbar(ScalarMappable(Normalize(0, 1), cmap="jet"), ax=axes[:, 1:].ravel().tolist(), label="map value", shrink=0.8)
fig.suptitle(f"explaining '{CLASSES[target]}' (guided backprop has no layer: the same in both rows)")
path = minicam.viz.save_figure(fig, "10_beyond")
print(f"saved {path}")

# %% [markdown]
# ## Exercises
#
# 1. Score-CAM with logits (torchcam's and pytorch-grad-cam's choice): run
#    `METHODS["scorecam"](..., score="logit")` on the triangle image of section 4 and
#    compare with the probability version. Why does a softmax over logit differences give
#    far more contrasted weights? Is the triangle case still degenerate?
# 2. Ablation-CAM at `relu2`: the identity of section 5 no longer holds (the layers above
#    are not linear). Measure how far `W`-based weights are from the library's, and
#    explain why ablating a channel of `relu2` can even *raise* the logit.
# 3. Eigen-CAM with `center=True` (pytorch-grad-cam's choice): redo the SVD of section 6
#    with centred columns. Why is the sign rule "sum positive" useless now (what does a
#    centred projection sum to)?
# 4. Replace the tiny network's ReLUs in section 7 by `minicam.nn.Tanh`. What does
#    `guided_gradients` say, and why can guided backprop only guide ReLUs?
# 5. Find, in the table, the method with the best pointing game at each layer. Is it
#    also the one with the most energy on the objects? Which of the two numbers would you
#    report, and why?
#
# ## Instructor notes
#
# - **Expected output** (full mode, 32 images, seed 10): every hand check agrees to
#   rounding (0 to 1e-15); HiResCAM, XGrad-CAM and Grad-CAM coincide at `relu3` and differ
#   by several times the map's maximum at `relu2`. Score-CAM's weights span exactly a factor
#   e for the disk and square images and 1.000 for the triangle (degenerate: the black image
#   has logits disk +32.8, triangle -162.6). Eigen-CAM's first component carries about 3/4
#   of the sum of squares. Class correlation: guided backprop +0.80, Grad-CAM -0.10,
#   Guided Grad-CAM +0.20. In the table, the counterfactual row puts 0.22 of its mass on the
#   distractors (Grad-CAM 0.03) and Guided Grad-CAM the most on the objects (0.55 at
#   `relu3`); at `relu2` the position-wise methods (HiResCAM, XGrad-CAM, LayerCAM, about
#   0.4) beat Grad-CAM (0.16), whose averaged gradient is a poor weight there.
# - **Score-CAM's degenerate case is a finding, not a bug**: the hand computation agrees
#   with the library. Ask students what an explanation built from model outputs on
#   out-of-distribution images can tell them.
# - **Misconception**: "these are eight independent methods". On a GAP head at the last
#   layer, Grad-CAM = HiResCAM = XGrad-CAM = CAM/hw, and Ablation-CAM is CAM with each
#   weight multiplied by the channel's mean. Differences appear only where the gradient
#   varies over positions (earlier layers, other heads). Put the identities on the board.
# - **Misconception**: "gradient-free methods are more faithful". Score-CAM and
#   Ablation-CAM replace one backward pass by K forward passes on altered inputs or
#   activations, which the model never saw in training: masked images, zeroed channels.
#   They answer a different question, not necessarily a better one (lesson 12 measures).
# - **Misconception**: "guided backprop shows what the class looks like". It barely depends
#   on the class (section 8), and Adebayo et al. 2018 show it barely depends on the weights
#   either (lesson 11). Its sharpness comes from the image and the ReLU masks.
# - **Discussion prompt**: the counterfactual map lights up the distractors. Is that because
#   the model learned "a triangle is evidence against a disk", or because the one-vs-rest
#   training makes every object raise some logits and lower others? How would you test it?
# - **Timing**: 25 minutes for sections 1-5 (formulas and identities), 25 for 6-11. The
#   script runs in about 10-20 seconds (Score-CAM and guided backprop dominate).
