# %% [markdown]
# # Lesson 06: Grad-CAM, and when it is (not) CAM
#
# **Objectives**
# - Compute Grad-CAM (Selvaraju et al. 2017) by hand from the gradient of a class score
#   with respect to a layer's activations, and check it against minicam.
# - Prove, and check to $10^{-12}$, that Grad-CAM is CAM divided by $hw$ on a
#   global-average-pooling head; then train a network with a flatten head, where CAM does
#   not apply and Grad-CAM and HiResCAM differ.
# - Use counterfactual Grad-CAM to find the evidence *against* a class, and test it by
#   removing that evidence.
#
# **Prerequisites**: lesson 01 (autograd: `minicam.grad`), lesson 04 (training), lesson 05 (CAM).
#
# **Code you will read**
# - `minicam/cam/capture.py`: `capture`, `Capture.gradients` (the forward hook that makes
#   the layer's output a leaf)
# - `minicam/cam/gradient.py`: `gradcam_map` and `gradcam` (with `counterfactual`), `hirescam_map`
# - `minicam/cam/cam.py`: `cam` (the check that raises on a non-GAP head)
# - `minicam/models.py`: `FlattenHeadCNN`
#
# **Time**: 45 minutes.

# %%
import os

import numpy as np
from matplotlib.figure import Figure

import minicam
import minicam.cam
import minicam.data
import minicam.metrics
import minicam.models
import minicam.train
import minicam.viz
from minicam import Tensor
from minicam.cam.capture import predict

SEED = 0
FAST = os.environ.get("MINICAM_FAST") == "1"  # CI: fewer images, a shorter fine-tuning
rng = np.random.default_rng(SEED)

LAYER = "features.relu3"
CLASSES = minicam.data.CLASSES
TEST_IMAGES = 100 if FAST else 200
MULTI_IMAGES = 60 if FAST else 150
FLATTEN_TRAIN_IMAGES, FLATTEN_EPOCHS = (300, 2) if FAST else (1000, 4)

model = minicam.models.lesson_cnn()  # the shipped GAP network, float64
test = minicam.data.single_instance(rng, TEST_IMAGES)

# %% [markdown]
# ## 1. Grad-CAM by hand
#
# Grad-CAM needs no particular head: only the activations $A$ of a layer and the gradient
# of the class score $S_c$ (the **pre-softmax** logit) with respect to them,
# $g_{kij} = \partial S_c / \partial A_{kij}$. Each channel gets the average of its
# gradient as weight (eq. 1 of the paper), and the map is the weighted sum, through a ReLU
# (eq. 2):
#
# $$\alpha_k = \frac{1}{hw}\sum_{ij} \frac{\partial S_c}{\partial A_{kij}}, \qquad
# L_c = \mathrm{ReLU}\Big(\sum_k \alpha_k A_k\Big).$$
#
# `minicam.cam.capture(model, x, layer)` runs the model with a forward hook that replaces
# the layer's output by a new leaf Tensor holding the same numbers; the class score is
# computed from that leaf, so `captured.gradients()` is one call to `minicam.grad`.

# %%
x = test.images[:8]
captured = minicam.cam.capture(model, x, LAYER)     # target: the predicted class
A = captured.A                                       # (N, K, h, w)
g = captured.gradients().data                        # dS_c/dA, the same shape
N, K, h, w = A.shape
print(f"A {A.shape}, g {g.shape}, explained classes {[CLASSES[c] for c in captured.classes]}")

alpha = g.mean(axis=(2, 3))                          # (N, K), eq. 1
gradcam_by_hand = np.maximum(np.einsum("nk,nkij->nij", alpha, A), 0)   # eq. 2
gradcam_library = minicam.cam.METHODS["gradcam"](model, x, LAYER)
print(f"max |Grad-CAM by hand - METHODS['gradcam']| = {np.abs(gradcam_by_hand - gradcam_library).max():.1e}")
assert np.allclose(gradcam_by_hand, gradcam_library, rtol=1e-12, atol=1e-14)

# %% [markdown]
# Is $g$ the right gradient? A directional finite difference: run the head on $A \pm
# \varepsilon V$ for a random direction $V$ and compare with $\langle g, V\rangle$. The
# head of this model is `pool -> flatten -> fc`, and we can call those modules ourselves.

# %%
def gap_head_score(activations, classes):
    logits = model.fc(model.flatten(model.pool(Tensor(activations)))).data
    return logits[np.arange(len(classes)), classes]


V = rng.normal(size=A.shape)
eps = 1e-4
finite_difference = (gap_head_score(A + eps * V, captured.classes) - gap_head_score(A - eps * V, captured.classes)) / (2 * eps)
directional = (g * V).sum(axis=(1, 2, 3))
print(f"directional derivative: autograd {directional[:3]}, finite differences {finite_difference[:3]}")
assert np.allclose(finite_difference, directional, rtol=1e-7, atol=1e-9)

# %% [markdown]
# ## 2. On a GAP head, Grad-CAM is CAM divided by $hw$
#
# With $S_c = \sum_k W_{ck}\,\frac{1}{hw}\sum_{ij}A_{kij} + b_c$, the derivative with
# respect to one activation is the same at every position:
#
# $$\frac{\partial S_c}{\partial A_{kij}} = \frac{W_{ck}}{hw}
# \quad\Rightarrow\quad \alpha_k = \frac{W_{ck}}{hw}
# \quad\Rightarrow\quad \text{Grad-CAM}_c = \mathrm{ReLU}\Big(\frac{1}{hw}\sum_k W_{ck}A_k\Big)
# = \frac{\mathrm{ReLU}(M_c)}{hw}.$$
#
# We check the gradient itself, then the identity $\mathrm{ReLU}(\text{CAM}) = hw\cdot$Grad-CAM.

# %%
W, b = model.fc.weight.data, model.fc.bias.data
expected_g = np.broadcast_to(W[captured.classes][:, :, None, None] / (h * w), g.shape)
print(f"max |dS/dA - W_ck/(hw)| = {np.abs(g - expected_g).max():.1e}   (W/(hw) is about {np.abs(W).mean() / (h * w):.3f})")
assert np.allclose(g, expected_g, rtol=1e-12, atol=1e-16)
assert np.allclose(g.std(axis=(2, 3)), 0, atol=1e-15)  # constant over positions, per channel

cam = minicam.cam.METHODS["cam"](model, x, LAYER)
relative = np.abs(np.maximum(cam, 0) - h * w * gradcam_library).max() / np.abs(cam).max()
print(f"max |ReLU(CAM) - hw * Grad-CAM| / max |CAM| = {relative:.1e}  (hw = {h * w})")
assert relative < 1e-12

# HiResCAM keeps the gradient per position (section 4). Here the gradient is constant per
# channel, so it is Grad-CAM too:
hirescam = minicam.cam.METHODS["hirescam"](model, x, LAYER)
assert np.allclose(hirescam, gradcam_library, rtol=1e-12, atol=1e-14)
print("on the GAP head: HiResCAM == Grad-CAM == ReLU(CAM)/(hw)")

# %% [markdown]
# ## 3. Counterfactual Grad-CAM
#
# The paper's counterfactual explanations negate the gradients: $\alpha_k = -\frac{1}{hw}\sum_{ij}
# \partial S_c/\partial A_{kij}$. The map then shows the regions whose removal would
# **raise** the score of class $c$: the evidence against it. (On the GAP head it is
# $\mathrm{ReLU}(-M_c)/(hw)$, the negative part of CAM.)
#
# Single-shape images have little evidence against their own class. Images with several
# objects do: `multi_instance` paints 1 to 4 objects of the labelled class and up to two
# *distractors* of other classes ($48{\times}48$ pixels; the GAP network takes any size).

# %%
counterfactual_by_hand = np.maximum(np.einsum("nk,nkij->nij", -alpha, A), 0)
counterfactual = minicam.cam.METHODS["gradcam"](model, x, LAYER, counterfactual=True)
assert np.allclose(counterfactual_by_hand, counterfactual, rtol=1e-12, atol=1e-14)
assert np.allclose(h * w * counterfactual, np.maximum(-cam, 0), rtol=1e-12, atol=1e-12)

multi = minicam.data.multi_instance(rng, MULTI_IMAGES)
has_distractor = np.array([len(d) > 0 for d in multi.distractor_masks])
own = multi.union_masks()                                          # (N, 48, 48): the labelled class's objects
distractors = np.stack([d.any(axis=0) for d in multi.distractor_masks])
multi_logits = predict(model, multi.images)
print(f"{MULTI_IMAGES} images of 48x48, {has_distractor.sum()} with distractors; accuracy of the model on them "
      f"{np.mean(multi_logits.argmax(1) == multi.labels):.2f}")

maps = {
    "Grad-CAM": minicam.cam.explain(model, multi.images, "gradcam", LAYER, target=multi.labels),
    "counterfactual": minicam.cam.explain(model, multi.images, "gradcam", LAYER, target=multi.labels,
                                          counterfactual=True),
}
rows = np.arange(MULTI_IMAGES)
shares = {}
print("map              share of the map's mass on: own objects  distractors   peak on: own objects  distractors")
for name, m in maps.items():
    total = np.maximum(m.sum(axis=(1, 2)), 1e-300)
    on_own = ((m * own).sum(axis=(1, 2)) / total)[has_distractor].mean()
    on_distractors = ((m * distractors).sum(axis=(1, 2)) / total)[has_distractor].mean()
    peak = np.unravel_index(m.reshape(MULTI_IMAGES, -1).argmax(axis=1), m.shape[1:])
    peak_own = own[rows, peak[0], peak[1]][has_distractor].mean()
    peak_distractor = distractors[rows, peak[0], peak[1]][has_distractor].mean()
    shares[name] = (on_own, on_distractors, peak_own, peak_distractor)
    print(f"{name:16s} {on_own:37.3f}  {on_distractors:11.3f}   {peak_own:20.3f}  {peak_distractor:11.3f}")
print(f"(the objects cover {own[has_distractor].mean():.3f} and the distractors {distractors[has_distractor].mean():.3f}"
      " of those images)")
assert shares["counterfactual"][1] > 2 * shares["Grad-CAM"][1]   # the counterfactual map finds the distractors
assert shares["Grad-CAM"][0] > 2 * shares["counterfactual"][0]   # Grad-CAM finds the objects

# %% [markdown]
# The test of a counterfactual claim is to make the change. We paint every distractor
# with the mean colour of its image's background and run the model again: if the
# distractors were evidence against the class, its score rises.

# %%
background = ~(own | distractors)
fill = np.stack([multi.images[i][:, background[i]].mean(axis=1) for i in range(MULTI_IMAGES)])  # (N, 3)
without_distractors = np.where(distractors[:, None], fill[:, :, None, None], multi.images)
before = multi_logits[rows, multi.labels]
after = predict(model, without_distractors)[rows, multi.labels]
change = (after - before)[has_distractor]
print(f"removing the distractors changes the labelled class's logit by {change.mean():+.2f} on average; "
      f"it rises in {np.mean(change > 0):.0%} of the {has_distractor.sum()} images")
assert np.mean(change > 0) > 0.7

# %%
shown = np.flatnonzero(has_distractor)[:6]
fig = minicam.viz.grid(multi.images[shown], {name: m[shown] for name, m in maps.items()},
                       column_titles=[f"class {CLASSES[multi.labels[i]]}" for i in shown])
n_shown = len(shown)
for column, i in enumerate(shown):
    for row in range(3):
        ax = fig.axes[row * n_shown + column]
        ax.contour(own[i].astype(float), levels=[0.5], colors="magenta", linewidths=1.2)
        ax.contour(distractors[i].astype(float), levels=[0.5], colors="white", linewidths=1.2, linestyles="--")
fig.suptitle("Grad-CAM and counterfactual Grad-CAM of the labelled class\n"
             "(magenta: objects of that class; dashed white: distractors of other classes)")
print(f"saved {minicam.viz.save_figure(fig, '06_counterfactual')}")

# %% [markdown]
# ## 4. A head where CAM and Grad-CAM part ways
#
# `FlattenHeadCNN` has the same three conv blocks, then **flatten -> Linear**: each of the
# $K\,h\,w = 2048$ activations has its own weight, so a class can prefer a channel in one
# corner and dislike it in another. We do not train it from scratch: we copy the shipped
# network's convolution weights into it and fine-tune the whole network briefly (its
# Linear layer starts random). Then we copy the float32 weights into a float64 model for
# exact checks.

# %%
flat32 = minicam.models.FlattenHeadCNN(dtype=np.float32, rng=rng)
flat32.features.load_state_dict(model.features.state_dict())
flat_train = minicam.data.single_instance(rng, FLATTEN_TRAIN_IMAGES)
history = minicam.train.train(flat32, flat_train.images, flat_train.labels, epochs=FLATTEN_EPOCHS, batch_size=32,
                              lr=3e-3, rng=rng, test=(test.images, test.labels), log=print)
flat = minicam.models.FlattenHeadCNN()
flat.load_state_dict(flat32.state_dict())
flat.eval()
flat_accuracy = minicam.train.accuracy(flat, test.images, test.labels)
print(f"flatten-head network (fine-tuned {FLATTEN_EPOCHS} epochs on {FLATTEN_TRAIN_IMAGES} images): "
      f"test accuracy {flat_accuracy:.3f}")
assert history[-1]["loss"] < history[0]["loss"]

# %% [markdown]
# CAM needs the Linear layer's input to be the spatial mean of the layer. minicam checks
# this numerically, and says so when it fails:

# %%
try:
    minicam.cam.METHODS["cam"](flat, test.images[:4], LAYER)
    raise AssertionError("CAM should refuse a flatten head")
except ValueError as error:
    print(f"ValueError: {error}")
    assert "global average pooling" in str(error)

# %% [markdown]
# Grad-CAM still runs, since it only needs gradients. Now $S_c = \sum_{kij} W_{c,kij}
# A_{kij} + b_c$, so the gradient **is** the weight, reshaped: $g_{kij} = W_{c,kij}$, and
# it changes from position to position. Grad-CAM averages it away; **HiResCAM** (Draelos
# & Carin 2020) keeps it:
#
# $$\text{Grad-CAM}: \mathrm{ReLU}\Big(\sum_k \bar g_k A_k\Big),\quad \bar g_k = \frac{1}{hw}\sum_{ij} g_{kij};
# \qquad \text{HiResCAM}: \mathrm{ReLU}\Big(\sum_k g_k \odot A_k\Big).$$
#
# Without its ReLU, HiResCAM's map sums to the score minus the bias:
# $\sum_{ij}\sum_k g_{kij}A_{kij} = \sum_{kij} W_{c,kij}A_{kij} = S_c - b_c$. Every
# position's value is exactly its share of the score. Grad-CAM's map has no such property.

# %%
xt = test.images
flat_capture = minicam.cam.capture(flat, xt, LAYER, target=test.labels)
A_flat, g_flat = flat_capture.A, flat_capture.gradients().data
W_flat, b_flat = flat.fc.weight.data, flat.fc.bias.data                   # (C, K*h*w), (C,)
assert np.allclose(g_flat, W_flat[test.labels].reshape(g_flat.shape), rtol=1e-12, atol=1e-15)
spread = (g_flat.std(axis=(2, 3)) / (np.abs(g_flat).mean(axis=(2, 3)) + 1e-300)).mean()
print(f"the gradient is the weight; across positions its spread (std / mean |g|, per channel) is {spread:.2f}"
      f" (0 on the GAP head)")

gradcam_flat = np.maximum(np.einsum("nk,nkij->nij", g_flat.mean(axis=(2, 3)), A_flat), 0)
hirescam_signed = (g_flat * A_flat).sum(axis=1)
assert np.allclose(gradcam_flat, minicam.cam.METHODS["gradcam"](flat, xt, LAYER, target=test.labels), rtol=1e-12, atol=1e-14)
assert np.allclose(np.maximum(hirescam_signed, 0), minicam.cam.METHODS["hirescam"](flat, xt, LAYER, target=test.labels),
                   rtol=1e-12, atol=1e-14)

score_minus_bias = flat_capture.scores.data - b_flat[test.labels]
hires_sum = minicam.cam.METHODS["hirescam"](flat, xt, LAYER, target=test.labels, relu=False).sum(axis=(1, 2))
sum_error = np.abs(hires_sum - score_minus_bias).max()
gradcam_sum = np.einsum("nk,nkij->n", g_flat.mean(axis=(2, 3)), A_flat)
print(f"HiResCAM (no ReLU): max |sum of the map - (S_c - b_c)| = {sum_error:.1e} over {len(xt)} images")
print(f"Grad-CAM (no ReLU): its sum misses S_c - b_c by {np.abs(gradcam_sum - score_minus_bias).mean():.2f} "
      f"on average (|S_c - b_c| is {np.abs(score_minus_bias).mean():.2f} on average)")
assert sum_error < 1e-12 * (1 + np.abs(score_minus_bias).max())

# %% [markdown]
# How different are the two maps? We compare the normalised $32{\times}32$ maps of the
# true class image by image, where their peaks fall, and how often each points at the
# object.

# %%
flat_maps = {
    "Grad-CAM": minicam.cam.explain(flat, xt, "gradcam", LAYER, target=test.labels),
    "HiResCAM": minicam.cam.explain(flat, xt, "hirescam", LAYER, target=test.labels),
}
difference = np.abs(flat_maps["Grad-CAM"] - flat_maps["HiResCAM"])
per_image = difference.mean(axis=(1, 2))
correlation = np.array([np.corrcoef(a.ravel(), c.ravel())[0, 1] if a.std() > 0 and c.std() > 0 else 0.0
                        for a, c in zip(flat_maps["Grad-CAM"], flat_maps["HiResCAM"])])
masks = test.union_masks()
peaks, pointing = {}, {}
for name, m in flat_maps.items():
    peaks[name] = np.stack(np.unravel_index(m.reshape(len(m), -1).argmax(axis=1), m.shape[1:]), axis=1)
    hits = masks[np.arange(len(m)), peaks[name][:, 0], peaks[name][:, 1]]
    assert np.array_equal(hits, minicam.metrics.pointing_game(m, test.masks))  # lesson 05's game, by hand
    pointing[name] = hits.mean()
cells_apart = np.abs(peaks["Grad-CAM"] // 4 - peaks["HiResCAM"] // 4).max(axis=1)   # 4 pixels per cell
print(f"normalised maps: mean |Grad-CAM - HiResCAM| per image {per_image.mean():.3f} (largest image {per_image.max():.3f},"
      f" largest pixel {difference.max():.2f}); correlation median {np.median(correlation):.2f}, lowest {correlation.min():.2f}")
print(f"peaks more than one feature-map cell apart in {np.mean(cells_apart > 1):.0%} of the images")
print(f"pointing game on the flatten head: Grad-CAM {pointing['Grad-CAM']:.3f}, HiResCAM {pointing['HiResCAM']:.3f}")
assert per_image.mean() > 0.02  # they really differ on this head (0 on the GAP head)

shown = np.concatenate([np.flatnonzero(test.labels == c)[:2] for c in range(3)])
gap_gradcam = minicam.cam.explain(model, xt[shown], "gradcam", LAYER, target=test.labels[shown])
fig = minicam.viz.grid(
    xt[shown],
    {"GAP head: Grad-CAM = HiResCAM": gap_gradcam, "flatten: Grad-CAM": flat_maps["Grad-CAM"][shown],
     "flatten: HiResCAM": flat_maps["HiResCAM"][shown]},
    row_titles=["GAP: Grad-CAM", "flatten: Grad-CAM", "flatten: HiResCAM"],
    column_titles=[f"{CLASSES[test.labels[i]]}\ndiff {per_image[i]:.2f}" for i in shown],
)
fig.suptitle("the true class's maps at features.relu3; on the GAP head HiResCAM = Grad-CAM\n"
             "(diff: mean |Grad-CAM - HiResCAM| per pixel on the flatten head)")
print(f"saved {minicam.viz.save_figure(fig, '06_flatten_head')}")

# %% [markdown]
# Finally the gradients themselves, for the channel with the largest weight in one image:
# constant on the GAP head, a pattern of weights on the flatten head.

# %%
i = int(shown[0])
k_gap = int(np.argmax(np.abs(W[test.labels[i]])))
k_flat = int(np.argmax(np.abs(g_flat[i]).sum(axis=(1, 2))))
g_gap_i = minicam.cam.capture(model, xt[i : i + 1], LAYER, target=int(test.labels[i])).gradients().data[0]
fig = Figure(figsize=(10, 3.2), layout="constrained")
axes = fig.subplots(1, 3)
axes[0].imshow(minicam.viz.to_display_image(xt[i]), interpolation="nearest")
axes[0].set_title(f"input ({CLASSES[test.labels[i]]})")
for ax, grad_map, title in ((axes[1], g_gap_i[k_gap], f"GAP head: $g_{{{k_gap}}}$ = W/(hw) everywhere"),
                            (axes[2], g_flat[i, k_flat], f"flatten head: $g_{{{k_flat}}}$ = its weights")):
    limit = max(np.abs(grad_map).max(), 1e-12)
    image = ax.imshow(grad_map, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="dS/dA")
    ax.set_title(title)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("the gradient of the class score over the 8x8 positions of one channel")
print(f"saved {minicam.viz.save_figure(fig, '06_gradients')}")

# %% [markdown]
# ## Exercises
#
# 1. Explain `score="softmax"` instead of the logit on the GAP head. Is Grad-CAM still
#    ReLU(CAM)/(hw)? Derive $\partial p_c / \partial A_{kij}$ and find the new channel
#    weights; check your formula against `capture(..., score="softmax").gradients()`.
# 2. Train `FlattenHeadCNN` from random weights instead of copying the convolutions (as
#    long as you can afford). Does the difference between Grad-CAM and HiResCAM grow or
#    shrink?
# 3. Compute Grad-CAM at `features.relu2` of the GAP network. Is the gradient still
#    constant per channel? Why not? Is Grad-CAM still equal to HiResCAM there?
# 4. On single-shape images, compute the counterfactual raw map of the true class. In
#    what share of the images is it all zeros? Relate your answer to the sign of CAM
#    inside and outside the object (lesson 05, section 2).
# 5. HiResCAM's sum identity needs a *single* Linear layer after the layer. Put the layer
#    one step earlier (`features.conv3`, before the ReLU) on the flatten head: does the
#    sum still equal $S_c - b_c$? Why not?
#
# ## Instructor notes
#
# - **Expected output**: Grad-CAM by hand equals minicam's to rounding; the finite
#   differences agree to about $10^{-9}$; ReLU(CAM) = 64 Grad-CAM to about $10^{-16}$ relative.
#   Counterfactual: about a fifth of its mass on the distractors (which cover about 5% of
#   the image) against a few percent for Grad-CAM; removing the distractors raises the
#   score in about 90% of the images. Flatten head: about 0.95 accuracy after the short
#   fine-tuning; HiResCAM's sum identity to about $10^{-14}$; the normalised maps of the
#   two methods differ by about 0.07 per pixel on average (correlation about 0.8), with
#   peaks more than a cell apart in about one image in ten; on this network Grad-CAM
#   points at the object more often than HiResCAM (about 0.73 against 0.62).
# - **Misconception**: "Grad-CAM generalises CAM, so it is always better". On a GAP head
#   they are the same map. On other heads Grad-CAM averages away where the weights are,
#   HiResCAM does not; neither is "the truth", but only HiResCAM's values add up to the score.
# - **Misconception**: "negative gradients are noise". The counterfactual experiment
#   shows they mark real evidence against the class: removing it raises the score.
# - **Discussion prompt**: the gradient is taken of the logit, not the probability. With
#   one-vs-rest sigmoids, how would $\partial\sigma(S_c)/\partial A$ change the map?
#   (Only by a positive factor per image: the same normalised map.) With softmax?
# - **Timing**: 10 minutes for sections 1-2, 15 for the counterfactual (ask students to
#   predict where the counterfactual map will be before showing it), 20 for the flatten
#   head. The fine-tuning runs for a few seconds.
