# %% [markdown]
# # Lesson 09: From the first layer to the last
#
# **Objectives**
# - Compute Grad-CAM and LayerCAM at every convolution and ReLU layer of the shipped
#   `LessonCNN`, for the same images, and recompute Grad-CAM by hand from `capture()`.
# - See the trade-off between a layer's resolution and its class-specificity, measured
#   on a batch of test images (localisation in the object, and how much the map changes
#   when another class is asked for).
# - Prove and check two identities: LayerCAM at a convolution equals LayerCAM at the
#   ReLU after it (Grad-CAM does not), and at the last layer of a GAP head LayerCAM is
#   CAM with the negative class weights dropped.
#
# **Prerequisites**: lesson 00 (the tour), lessons 05 (CAM) and 06 (Grad-CAM),
# lesson 03 (pooling: why a GAP head makes the gradient the same at every position).
#
# **Code you will read**
# - `minicam/cam/capture.py`: `capture`, `Capture.A`, `Capture.gradients`
# - `minicam/cam/gradient.py`: `gradcam_map`, `layercam_map` (and their model-facing `gradcam`, `layercam`)
# - `minicam/cam/cam.py`: `cam`
# - `minicam/cam/explain.py`: `explain`
# - `minicam/metrics/localisation.py`: `energy_pointing_game`, `pointing_game`
#
# **Time**: 35 minutes.

# %%
import os

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

import minicam
import minicam.cam
import minicam.data
import minicam.metrics
import minicam.models
import minicam.nn
import minicam.viz
from minicam.cam.capture import predict

SEED = 9
FAST = os.environ.get("MINICAM_FAST") == "1"  # CI: fewer test images
rng = np.random.default_rng(SEED)
TEST_IMAGES = 24 if FAST else 120
CLASSES = minicam.data.CLASSES

model = minicam.models.lesson_cnn()
LAYERS = [name for name, module in model.named_modules()
          if isinstance(module, (minicam.nn.Conv2d, minicam.nn.ReLU))]
print("the layers we explain:", LAYERS)

# %% [markdown]
# ## 1. What each layer sees: map size and receptive field
#
# A map at a layer has that layer's spatial size $h \times w$. In `LessonCNN` the
# $3{\times}3$ convolutions keep the size (padding 1), and each $2{\times}2$ max-pool halves
# it: $32 \to 16 \to 8$.
#
# Each position of a layer depends on a square patch of the input, its **receptive
# field** $r$. Walking through the layers with the *jump* $j$ (the distance in input
# pixels between two neighbouring positions of the layer):
#
# $$ r_{\text{out}} = r_{\text{in}} + (k - 1)\, j_{\text{in}}, \qquad j_{\text{out}} = j_{\text{in}}\, s $$
#
# for a layer with kernel size $k$ and stride $s$ (ReLU: $k = s = 1$), from $r = j = 1$ at
# the input. Shallow layers see small patches at full resolution (edges, colours);
# deep layers see most of the object, on a coarse grid.

# %%
def receptive_fields(features):
    """{layer name: (jump, receptive field)} for a Sequential of conv / relu / max-pool layers."""
    r, j, table = 1, 1, {}
    for name, layer in features.named_children():
        if isinstance(layer, (minicam.nn.Conv2d, minicam.nn.MaxPool2d)):
            k = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
            s = layer.stride if isinstance(layer.stride, int) else layer.stride[0]
            r, j = r + (k - 1) * j, j * s
        table["features." + name] = (j, r)
    return table


fields = receptive_fields(model.features)
test = minicam.data.single_instance(rng, TEST_IMAGES)
x, labels = test.images, test.labels
image_size = x.shape[2]

print("| layer | activations A (K, h, w) | jump (px) | receptive field (px) |")
print("|---|---|---|---|")
activation_shapes = {}
for layer in LAYERS:
    A = minicam.cam.capture(model, x[:1], layer).A
    activation_shapes[layer] = A.shape[1:]
    jump, field = fields[layer]
    print(f"| {layer} | {A.shape[1:]} | {jump} | {field} x {field} |")
    # the map size is the input size divided by the jump (each pooling halves it)
    assert A.shape[2:] == (image_size // jump, image_size // jump), layer
assert fields["features.relu3"] == (4, 18)  # by hand: 3, 4, 8, 10, 18 along conv1 pool1 conv2 pool2 conv3

# %% [markdown]
# ## 2. Grad-CAM at any layer, recomputed from `capture()`
#
# Nothing in Grad-CAM's formula is tied to the last layer. At a layer with activations
# $A$ (K, h, w) and $g = \partial y_c / \partial A$ (the gradient of the class logit),
#
# $$ \alpha_k = \frac{1}{hw} \sum_{ij} g_{kij}, \qquad
#    L = \mathrm{ReLU}\Big(\sum_k \alpha_k A_k\Big) \quad (h \times w). $$
#
# `capture(model, x, layer, target)` runs the model once, keeps $A$ as a leaf tensor and
# the class scores $y$ as a graph above it; `.gradients()` is one backward pass. We
# recompute Grad-CAM from these two arrays with NumPy and compare with the library's
# `gradcam` (the raw map, before upsampling) at every layer.

# %%
def gradcam_by_hand(model, x, layer, target):
    cap = minicam.cam.capture(model, x, layer, target)
    A, g = cap.A, cap.gradients().data        # (N, K, h, w) each
    alpha = g.mean(axis=(2, 3))                # (N, K): eq. 1, averaged gradients
    return np.maximum(np.einsum("nk,nkhw->nhw", alpha, A), 0)  # eq. 2


print("| layer | raw map shape | max abs(hand - library) |")
print("|---|---|---|")
for layer in LAYERS:
    library = minicam.cam.METHODS["gradcam"](model, x, layer, labels)
    hand = gradcam_by_hand(model, x, layer, labels)
    error = np.abs(library - hand).max()
    print(f"| {layer} | {library.shape} | {error:.1e} |")
    assert library.shape == (TEST_IMAGES, *activation_shapes[layer][1:]), layer
    assert error <= 1e-12 * max(1.0, np.abs(hand).max()), f"{layer}: Grad-CAM differs from its formula by {error:.2e}"

    maps = minicam.cam.explain(model, x, "gradcam", layer, labels)
    assert maps.shape == (TEST_IMAGES, image_size, image_size) and maps.min() >= 0 and maps.max() <= 1

# %% [markdown]
# **Grad-CAM at the first convolution is one linear filter.** `conv1` is linear in the
# image: $Z_k = V_k \star x + b_k$ ($V_k$ its $3{\times}3{\times}3$ kernels). So the sum
# inside Grad-CAM's ReLU is
#
# $$ \sum_k \alpha_k Z_k = \Big(\sum_k \alpha_k V_k\Big) \star x + \sum_k \alpha_k b_k , $$
#
# a *single* $3{\times}3$ filter on the image, whose weights the gradient chooses per image
# and class. Whatever the class, Grad-CAM at `conv1` can only be a colour-and-edge
# detector. We check it with `minicam.ops.conv2d` on a few images.

# %%
first = "features.conv1"
cap = minicam.cam.capture(model, x[:4], first, labels[:4])
alpha = cap.gradients().data.mean(axis=(2, 3))                       # (4, 8)
V, b = model.features.conv1.weight.data, model.features.conv1.bias.data
signed = minicam.cam.METHODS["gradcam"](model, x[:4], first, labels[:4], relu=False)
for i in range(4):
    one_filter = np.einsum("k,kchw->chw", alpha[i], V)[None]          # (1, 3, 3, 3): out, in, kh, kw
    one_bias = np.array([alpha[i] @ b])
    filtered = minicam.ops.conv2d(minicam.Tensor(x[i:i + 1]), minicam.Tensor(one_filter),
                                  minicam.Tensor(one_bias), padding=1).data[0, 0]
    error = np.abs(filtered - signed[i]).max()
    assert error <= 1e-12 * np.abs(signed[i]).max(), f"image {i}: Grad-CAM at conv1 is not one filter ({error:.1e})"
print(f"Grad-CAM at {first} = ReLU(one 3x3 filter on the image): checked on 4 images")

# %% [markdown]
# ## 3. LayerCAM, and an identity between a convolution and its ReLU
#
# LayerCAM (Jiang et al. 2021) does not average the gradient over positions: each
# activation is weighted by its *own* positive gradient,
#
# $$ L = \mathrm{ReLU}\Big(\sum_k \mathrm{ReLU}(g_{k}) \odot A_k\Big). $$
#
# Its paper argues that this is what makes shallow layers usable: at conv1, Grad-CAM's
# single weight per channel mixes the gradient of every position of a $32{\times}32$ map.
#
# **An identity.** Let $Z$ be a convolution's output and $A = \mathrm{ReLU}(Z)$ the next
# layer. Backpropagating through the ReLU, $g^Z = g^A \odot [Z > 0]$. Then
#
# $$ \mathrm{ReLU}(g^Z) \odot Z = \mathrm{ReLU}(g^A) \odot [Z > 0] \odot Z
#    = \mathrm{ReLU}(g^A) \odot \mathrm{ReLU}(Z) = \mathrm{ReLU}(g^A) \odot A , $$
#
# so **LayerCAM at `convN` equals LayerCAM at `reluN`**, position by position. Grad-CAM
# has no such identity: the average $\frac{1}{hw}\sum_{ij} g^Z_{kij}$ drops the gradient
# where $Z \le 0$, and the sum $\sum_k \alpha_k Z_k$ keeps the negative activations.

# %%
print("| pair | LayerCAM: max abs difference | Grad-CAM: max abs difference (relative) |")
print("|---|---|---|")
for n in (1, 2, 3):
    conv, relu = f"features.conv{n}", f"features.relu{n}"
    layercam_conv = minicam.cam.METHODS["layercam"](model, x, conv, labels)
    layercam_relu = minicam.cam.METHODS["layercam"](model, x, relu, labels)
    gradcam_conv = minicam.cam.METHODS["gradcam"](model, x, conv, labels)
    gradcam_relu = minicam.cam.METHODS["gradcam"](model, x, relu, labels)
    same = np.abs(layercam_conv - layercam_relu).max()
    different = np.abs(gradcam_conv - gradcam_relu).max() / np.abs(gradcam_relu).max()
    print(f"| {conv} / {relu} | {same:.1e} | {different:.2f} |")
    assert same <= 1e-12 * np.abs(layercam_relu).max(), f"LayerCAM at {conv} and {relu} should be equal"
    assert different > 1e-3, "Grad-CAM at a convolution and at its ReLU should differ"

# %% [markdown]
# ## 4. The last layer: both methods collapse to CAM-like formulas
#
# At `features.relu3` the head is GAP -> Linear:
# $y_c = \sum_k W_{ck}\, \frac{1}{hw}\sum_{ij} A_{kij} + b_c$, so the gradient is the same at
# every position, $g_{kij} = W_{ck} / (hw)$. Then
#
# - Grad-CAM $= \frac{1}{hw}\,\mathrm{ReLU}\big(\sum_k W_{ck} A_k\big) = \mathrm{ReLU}(\text{CAM}) / hw$;
# - LayerCAM $= \frac{1}{hw}\,\mathrm{ReLU}\big(\sum_k \mathrm{ReLU}(W_{ck}) A_k\big)$: CAM
#   **without the channels that count against the class**.
#
# The second line predicts that LayerCAM is *less* class-specific at the last layer: a
# channel that fires on any shape (most do: it is what makes objects stand out from the
# background) adds to the map of every class whose weight on it is positive, and
# nothing subtracts the evidence for the other classes.

# %%
last = "features.relu3"
A = minicam.cam.capture(model, x, last).A
h, w = A.shape[2:]
W = model.fc.weight.data[labels]                                      # (N, K): W_c for each image's class
cam_raw = minicam.cam.METHODS["cam"](model, x, last, labels)          # sum_k W_ck A_k, signed
layercam_from_weights = np.maximum(np.einsum("nk,nkhw->nhw", np.maximum(W, 0), A), 0) / (h * w)

error_gradcam = np.abs(minicam.cam.METHODS["gradcam"](model, x, last, labels) - np.maximum(cam_raw, 0) / (h * w)).max()
error_layercam = np.abs(minicam.cam.METHODS["layercam"](model, x, last, labels) - layercam_from_weights).max()
print(f"Grad-CAM - ReLU(CAM)/hw:                  max abs difference {error_gradcam:.1e}")
print(f"LayerCAM - ReLU(sum ReLU(W_ck) A_k)/hw:    max abs difference {error_layercam:.1e}")
assert error_gradcam <= 1e-12 * np.abs(cam_raw).max() / (h * w)
assert error_layercam <= 1e-12 * layercam_from_weights.max()
print(f"class weights W (3 x {W.shape[1]}): share of negative entries per class "
      f"{np.round((model.fc.weight.data < 0).mean(axis=1), 2)}")

# %% [markdown]
# ## 5. Measured: localisation and class-specificity, layer by layer
#
# For each layer and method, on the same test images (maps from `explain`: upsampled to
# $32{\times}32$, min-max normalised). Each image holds one object, of its true class:
#
# - **energy, true class**: `energy_pointing_game`, the share of the map's mass inside the
#   object's mask when the true class is explained (a uniform map scores the object's
#   share of the pixels);
# - **energy, other classes**: the same for the maps of the two *other* classes. A
#   class-specific method should put little of that mass on the object: there is no
#   evidence for a square on a disk;
# - **pointing game**: `pointing_game`, the share of images whose true-class map peaks on the object;
# - **other-class correlation**: the Pearson correlation between the true-class map and
#   each other-class map, averaged. Near 1: the map hardly depends on the class asked
#   for; near 0 or negative: it does. Pairs where a map is constant (all zero after the
#   ReLU) have no correlation and are left out; the last column counts them.

# %%
def class_correlation(maps_true, maps_other):
    """Mean Pearson correlation over the image pairs where both maps vary; and how many were left out."""
    values, left_out = [], 0
    for a, b in zip(maps_true, maps_other):
        if a.std() == 0 or b.std() == 0:
            left_out += 1
            continue
        values.append(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    return float(np.mean(values)), left_out


masks = test.union_masks()
other_classes = [(labels + 1) % 3, (labels + 2) % 3]
accuracy = float(np.mean(predict(model, x).argmax(axis=1) == labels))
print(f"{TEST_IMAGES} test images, accuracy {accuracy:.3f}; the objects cover {masks.mean():.1%} of the pixels\n")

METHOD_NAMES = {"gradcam": "Grad-CAM", "layercam": "LayerCAM"}
results = {}
print("| method | layer | map size | energy, true class | energy, other classes | pointing game "
      "| other-class correlation | pairs left out |")
print("|---|---|---|---|---|---|---|---|")
for method, method_name in METHOD_NAMES.items():
    for layer in LAYERS:
        maps = minicam.cam.explain(model, x, method, layer, labels)
        other_maps = [minicam.cam.explain(model, x, method, layer, other) for other in other_classes]
        energy = minicam.metrics.energy_pointing_game(maps, masks)
        energy_other = np.mean([minicam.metrics.energy_pointing_game(m, masks) for m in other_maps], axis=0)
        hits = minicam.metrics.pointing_game(maps, masks)
        correlations = [class_correlation(maps, m) for m in other_maps]
        correlation = float(np.mean([c for c, _ in correlations]))
        left_out = sum(n for _, n in correlations)
        results[method, layer] = dict(energy=energy.mean(), energy_other=energy_other.mean(),
                                      pointing=hits.mean(), correlation=correlation)
        size = "x".join(map(str, activation_shapes[layer][1:]))
        print(f"| {method_name} | {layer} | {size} | {energy.mean():.3f} | {energy_other.mean():.3f} | "
              f"{hits.mean():.3f} | {correlation:+.3f} | {left_out} of {2 * TEST_IMAGES} |")
        assert energy.shape == energy_other.shape == hits.shape == (TEST_IMAGES,)
        assert 0 <= energy.min() and energy.max() <= 1 and -1 <= correlation <= 1

# %% [markdown]
# Robust checks of the section-4 prediction (the bars are wide; the printed numbers are
# what to discuss): at the last layer LayerCAM's maps depend less on the class than
# Grad-CAM's, and put more of a wrong class's mass on the object; and both methods put
# more than a uniform share of the true class's mass on the object.

# %%
assert results["layercam", last]["correlation"] > results["gradcam", last]["correlation"] + 0.2
assert results["layercam", last]["energy_other"] > results["gradcam", last]["energy_other"]
for method in METHOD_NAMES:
    assert results[method, last]["energy"] > 1.5 * masks.mean()
best = {m: max(LAYERS, key=lambda layer: results[m, layer]["energy"]) for m in METHOD_NAMES}
print(f"layer with the most true-class energy in the object: Grad-CAM {best['gradcam']}, LayerCAM {best['layercam']}")

# %% [markdown]
# ## 6. The figure: one row per layer
#
# One test image; columns: Grad-CAM and LayerCAM of its true class, and of another
# class. Read each row for the resolution (the blur of bilinear upsampling from $8{\times}8$
# is visible at the bottom) and each pair of columns for class-specificity.

# %%
# the first test image that is classified correctly and whose last-layer Grad-CAM peaks on the object
# (a typical success: exercise 4 looks at the others)
last_layer_hits = minicam.metrics.pointing_game(minicam.cam.explain(model, x, "gradcam", last, labels), masks)
correct = predict(model, x).argmax(axis=1) == labels
shown = int(np.flatnonzero(correct & last_layer_hits)[0])
image, true_class = x[shown:shown + 1], int(labels[shown])
other_class = (true_class + 1) % 3
columns = [("gradcam", true_class), ("gradcam", other_class), ("layercam", true_class), ("layercam", other_class)]

fig = Figure(figsize=(2.2 * len(columns) + 2.2, 2.2 * len(LAYERS) + 0.8), layout="constrained")
axes = fig.subplots(len(LAYERS), len(columns), squeeze=False)
for row, layer in enumerate(LAYERS):
    for column, (method, target) in enumerate(columns):
        overlay_map = minicam.cam.explain(model, image, method, layer, target)[0]
        minicam.viz.overlay(axes[row, column], image[0], overlay_map, colorbar=False)
        if row == 0:
            axes[row, column].set_title(f"{METHOD_NAMES[method]}\nclass: {CLASSES[target]}")
    size = "x".join(map(str, activation_shapes[layer][1:]))
    axes[row, 0].set_ylabel(f"{layer.split('.')[1]} ({size})")
fig.colorbar(ScalarMappable(Normalize(0, 1), cmap="jet"), ax=axes.ravel().tolist(), label="map value", shrink=0.5)
fig.suptitle(f"one {CLASSES[true_class]}, explained at every layer")
path = minicam.viz.save_figure(fig, "09_layers")
print(f"saved {path}")

# %% [markdown]
# ## Exercises
#
# 1. Repeat section 3 with HiResCAM ($\mathrm{ReLU}(\sum_k g_k \odot A_k)$,
#    `"hirescam"`). Prove that it, too, is equal at a convolution and at its ReLU, and check
#    it numerically. Which other method of `minicam.cam.METHODS` has the identity?
# 2. The LayerCAM paper fuses shallow and deep maps: it scales each map by
#    $\tanh(2 M / \max M)$ and takes the element-wise maximum. Fuse LayerCAM at `relu1`,
#    `relu2` and `relu3` this way and measure the energy in the object. Does the fusion
#    beat the best single layer?
# 3. Compute the receptive field of `relu3` with a gradient instead of the formula: take
#    the gradient of one activation in the middle of the $8{\times}8$ map with respect to the
#    input (`minicam.grad`) and find the bounding box of its non-zero entries. Why can the box
#    be *smaller* than 18 x 18 (think of ReLUs and max-pools), but never larger?
# 4. The figure shows an image where Grad-CAM at the last layer peaks on the object.
#    Draw the same figure for the first correctly classified image where it does *not*
#    (`correct & ~last_layer_hits`). Does any layer, or LayerCAM, do better on it?
# 5. Change `TEST_IMAGES` and the seed. Which numbers of the table are stable, and which
#    move by more than a few hundredths? What does that say about a table computed on 24
#    images?
#
# ## Instructor notes
#
# - **Expected output**: Grad-CAM recomputed by hand agrees to rounding (here exactly 0:
#   the library runs the same arithmetic); the LayerCAM identity holds exactly at all
#   three pairs, while Grad-CAM at `convN` and `reluN` differ by 77-100 % of the map's
#   maximum; the two last-layer formulas hold to rounding. Full mode (120 images, seed 9)
#   gives, for Grad-CAM, true-class energy 0.37 / 0.15 / 0.20 / 0.21 / 0.24 / 0.31 from
#   `conv1` to `relu3` (the objects cover 11 % of the pixels), with a third of the maps at
#   `relu1`, `conv2` and `relu2` empty after the ReLU; LayerCAM gives 0.37 / 0.44 / 0.25 and
#   the best pointing game (0.73 at the last layer, Grad-CAM 0.69). LayerCAM's
#   other-class correlation rises from +0.22 to +0.62 with depth; Grad-CAM's stays near
#   -0.1 to -0.2 except at `relu2`. Numbers move with the seed and the image count:
#   discuss them, do not memorise them.
# - **The textbook story holds only in part here, and that is worth saying.** "Shallow
#   layers: fine but not class-specific; deep layers: coarse but class-specific" fits
#   LayerCAM's correlation column and Grad-CAM's empty maps at `relu1`, but Grad-CAM at
#   `conv1` localises *well* (0.37, and only 0.11 for the wrong classes). Section 2 says
#   why: there it is one class-chosen linear filter, and these objects are painted much
#   brighter or darker than the background, so a contrast filter finds them. On natural
#   images, where objects are not defined by contrast, expect it to fail. Ask students to
#   predict the table before running it.
# - **Misconception**: "deeper is always better". Deeper layers are more class-specific
#   but coarser: an $8{\times}8$ map cannot follow a triangle's edge. The LayerCAM paper's
#   point is that shallow layers carry fine detail if the weighting keeps the spatial
#   gradient.
# - **Misconception**: "a map at a convolution and at its ReLU are the same thing". For
#   LayerCAM (and HiResCAM) yes, provably; for Grad-CAM no, and the table shows by how much.
# - **Misconception**: "LayerCAM is simply better". At the last layer it is CAM without
#   the negative weights, so it cannot show what speaks *against* a class, and its maps of
#   different classes look alike (section 4). Ask students which property they need.
# - **Discussion prompt**: the correlation column measures whether the map depends on the
#   class; the energy column whether it sits on the object. Can a map score well on one
#   and badly on the other? Find such a row.
# - **Timing**: 5 minutes for section 1, 10 for sections 2-3 (do the ReLU identity on the
#   board), 5 for section 4, 10 for the table and the figure, 5 for questions. The script
#   runs in a few seconds.
