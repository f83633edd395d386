# %% [markdown]
# # Lesson 00: Quick start, from an image to its class activation maps
#
# **Objectives**
# - Load the shipped, trained `LessonCNN`, draw test images and measure its accuracy.
# - Explain its predictions with CAM, Grad-CAM and Grad-CAM++ through `minicam.cam.explain`.
# - See a first exact identity: on a network with a global-average-pooling head,
#   ReLU(CAM) is Grad-CAM times the number of positions h*w.
#
# **Prerequisites**: none. This lesson is the ten-minute tour; the lessons after it
# build every piece from scratch.
#
# **Code you will read**
# - `minicam/models.py`: `lesson_cnn`, `LessonCNN`
# - `minicam/data.py`: `single_instance`, `CLASSES`
# - `minicam/train.py`: `accuracy`
# - `minicam/cam/explain.py`: `explain`; `minicam/cam/registry.py`: `REGISTRY`, `METHODS`
# - `minicam/cam/cam.py`: `cam_map`, `cam`; `minicam/cam/gradient.py`: `gradcam_map`, `gradcam`
# - `minicam/viz.py`: `grid`, `save_figure`
#
# **Time**: 10 minutes.

# %%
import os

import numpy as np

import minicam
import minicam.cam
import minicam.data
import minicam.models
import minicam.train
import minicam.viz
from minicam.cam.capture import predict

SEED = 0
FAST = os.environ.get("MINICAM_FAST") == "1"  # CI: fewer test images
rng = np.random.default_rng(SEED)
TEST_IMAGES = 100 if FAST else 500
SHOWN_IMAGES = 6
LAYER = "features.relu3"  # the last convolutional block, right before global average pooling

# %% [markdown]
# ## 1. The model
#
# `LessonCNN` is three convolution blocks, then global average pooling (GAP) and one
# Linear layer:
#
# $$x\ (3{\times}32{\times}32) \xrightarrow{\text{conv-relu-pool}} 8{\times}16{\times}16
# \xrightarrow{\text{conv-relu-pool}} 16{\times}8{\times}8 \xrightarrow{\text{conv-relu}}
# A\ (32{\times}8{\times}8) \xrightarrow{\text{GAP}} 32 \xrightarrow{\text{Linear}} 3 \text{ logits}.$$
#
# It was trained on synthetic images (a disk, a square or a triangle on a textured
# background) with a one-vs-rest sigmoid loss, so each class has its own probability
# $\sigma(S_c)$ (they need not sum to 1). `lesson_cnn()` loads the shipped weights and
# returns the model in evaluation mode.

# %%
model = minicam.models.lesson_cnn()
print(model)
parameter_count = sum(p.numel() for p in model.parameters())
print(f"\n{parameter_count} parameters; classes: {minicam.data.CLASSES}")

# %% [markdown]
# ## 2. Fresh test images and the accuracy
#
# The images are generated, never downloaded: `single_instance(rng, n)` draws `n`
# images of one shape each, with the label and the shape's mask (the ground truth
# that later lessons use to score the maps). These images were never seen in training
# (a different random stream), so this is a test accuracy.

# %%
test = minicam.data.single_instance(rng, TEST_IMAGES)
print(f"images {test.images.shape} {test.images.dtype}, labels {test.labels.shape}, "
      f"class counts {np.bincount(test.labels, minlength=3)}")

test_accuracy = minicam.train.accuracy(model, test.images, test.labels)
print(f"accuracy on {TEST_IMAGES} fresh images: {test_accuracy:.3f}")
assert test_accuracy >= 0.9, f"the shipped model should be at least 90% accurate, got {test_accuracy:.3f}"

# %% [markdown]
# ## 3. Predictions for a few images
#
# `predict(model, x)` runs the model without recording a graph and returns the logits
# $S$ (N, 3). The predicted class is the largest logit.

# %%
x = test.images[:SHOWN_IMAGES]
labels = test.labels[:SHOWN_IMAGES]
logits = predict(model, x)
predicted = logits.argmax(axis=1)
probabilities = 1 / (1 + np.exp(-logits))  # one-vs-rest: a sigmoid per class

print("image  true      predicted  logits (disk, square, triangle)   sigmoid of the predicted logit")
for i in range(SHOWN_IMAGES):
    true_name, predicted_name = minicam.data.CLASSES[labels[i]], minicam.data.CLASSES[predicted[i]]
    print(f"{i:5d}  {true_name:9s} {predicted_name:9s}  {np.array2string(logits[i], precision=2):32s}"
          f"  {probabilities[i, predicted[i]]:.3f}")

# %% [markdown]
# ## 4. Three explanations
#
# A class activation map says *where* in the image the evidence for a class lies. All
# three methods below weight the $K = 32$ feature maps $A_k$ (each $8{\times}8$) of
# `features.relu3` and add them up; they differ in the weights:
#
# - **CAM** (Zhou et al. 2016): $M_c = \sum_k W_{ck} A_k$, with $W$ the Linear layer's weights.
#   It needs a GAP -> Linear head, which this model has.
# - **Grad-CAM** (Selvaraju et al. 2017): $\alpha_k = \frac{1}{hw}\sum_{ij} \frac{\partial S_c}{\partial A_{kij}}$,
#   map $= \mathrm{ReLU}(\sum_k \alpha_k A_k)$. Works on any head.
# - **Grad-CAM++** (Chattopadhay et al. 2018): a weighted average of the positive
#   gradients, with weights built from second and third derivatives.
#
# `explain(model, x, method, layer)` returns each raw map upsampled to the image's
# $32{\times}32$ (bilinear) and min-max normalised to $[0, 1]$ per image; by default it
# explains the predicted class.

# %%
METHODS_SHOWN = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}
maps = {name: minicam.cam.explain(model, x, method, LAYER) for method, name in METHODS_SHOWN.items()}
for name, m in maps.items():
    assert m.shape == (SHOWN_IMAGES, 32, 32) and m.min() >= 0 and m.max() <= 1, name
    print(f"{name:10s} maps {m.shape}, values in [{m.min():.2f}, {m.max():.2f}]")

# How much of each map's mass falls on the object? A map spread evenly over the image
# would put (object area / image area) of its mass there.
masks = test.union_masks()[:SHOWN_IMAGES]
print(f"the objects cover {np.array2string(masks.mean(axis=(1, 2)), precision=2)} of their images")
for name, m in maps.items():
    share = (m * masks).sum(axis=(1, 2)) / m.sum(axis=(1, 2))
    print(f"{name:10s} share of the map's mass on the object: {np.array2string(share, precision=2)}")

# %%
column_titles = [f"{minicam.data.CLASSES[labels[i]]} -> {minicam.data.CLASSES[predicted[i]]}"
                 for i in range(SHOWN_IMAGES)]
fig = minicam.viz.grid(x, maps, column_titles=column_titles)
fig.suptitle("true -> predicted class; maps of the predicted class at features.relu3")
path = minicam.viz.save_figure(fig, "00_quick_start_maps")
print(f"saved {path}")

# %% [markdown]
# Look at the figure before reading on. The maps sit on or next to the shapes, not on
# the textured background, but they are coarse, and often they light an *edge* or a
# corner, sometimes just outside the shape. Two reasons: each of the $8{\times}8$
# positions of `features.relu3` sees an $18{\times}18$ patch of the image (its receptive
# field: three 3x3 convolutions and two 2x2 poolings), so a position just outside a
# triangle still "sees" the triangle's corner; and the network was only trained to
# classify, never told where the objects are. Whether a map is *good* is a question of
# its own, with its own measures, in later lessons.
#
# The receptive field follows from the layers: a $k{\times}k$ window adds $(k-1)$ times
# the current "jump" (the distance in input pixels between neighbouring positions),
# and a stride multiplies the jump.

# %%
receptive_field, jump = 1, 1
for name, layer in model.features.named_children():
    if hasattr(layer, "kernel_size"):  # Conv2d and MaxPool2d
        kernel = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
        stride = layer.stride if isinstance(layer.stride, int) else layer.stride[0]
        receptive_field += (kernel - 1) * jump
        jump *= stride
        print(f"after {name:6s} each position sees {receptive_field:2d} x {receptive_field:<2d} pixels, "
              f"neighbours are {jump} pixels apart")
assert (receptive_field, jump) == (18, 4)

# %% [markdown]
# ## 5. A first identity: ReLU(CAM) = h*w * Grad-CAM on a GAP head
#
# Here the score is $S_c = \sum_k W_{ck}\,\frac{1}{hw}\sum_{ij} A_{kij} + b_c$, so its
# gradient is the same at every position: $\partial S_c/\partial A_{kij} = W_{ck}/(hw)$.
# Grad-CAM's weights are then $\alpha_k = W_{ck}/(hw)$, exactly CAM's weights divided by
# $hw = 64$, and
#
# $$\mathrm{ReLU}(M_c) = hw \cdot \text{Grad-CAM}_c .$$
#
# We check it on the *raw* maps (before upsampling and normalisation) from
# `minicam.cam.METHODS`, which hold each method's own formula. The two maps are
# computed in different ways (CAM reads the Linear weights; Grad-CAM runs a backward
# pass), so only rounding may separate them.

# %%
raw_cam = minicam.cam.METHODS["cam"](model, x, LAYER)           # (N, 8, 8), signed: CAM has no ReLU
raw_gradcam = minicam.cam.METHODS["gradcam"](model, x, LAYER)   # (N, 8, 8), after Grad-CAM's ReLU
h, w = raw_cam.shape[1:]
difference = np.abs(np.maximum(raw_cam, 0) - h * w * raw_gradcam).max()
relative = difference / np.abs(raw_cam).max()
print(f"raw maps {raw_cam.shape}; h*w = {h * w}")
print(f"max |ReLU(CAM) - h*w*Grad-CAM| = {difference:.2e}, relative to max |CAM| = {np.abs(raw_cam).max():.3f}: {relative:.2e}")
assert relative < 1e-12, f"ReLU(CAM) should equal h*w*Grad-CAM on a GAP head, relative error {relative:.2e}"

negative_share = (raw_cam < 0).mean()
print(f"CAM is negative at {negative_share:.0%} of the positions, where Grad-CAM's ReLU gives 0")

# %% [markdown]
# After normalisation the factor $hw$ disappears (min-max scaling ignores scale), but
# the figure's CAM row and Grad-CAM row still differ: CAM has no ReLU, so its min-max
# scaling maps its most *negative* value to 0, while Grad-CAM's maps its zeros to 0.
# Asking `explain` to apply a ReLU to CAM too (`relu="always"`) makes the two rows equal.

# %%
cam_with_relu = minicam.cam.explain(model, x, "cam", LAYER, relu="always")
gap = np.abs(cam_with_relu - maps["Grad-CAM"]).max()
print(f"max |explain(cam, relu='always') - explain(gradcam)| = {gap:.2e}")
assert gap < 1e-12

# %% [markdown]
# ## Where to go next
#
# Every step above is built from scratch in the lessons that follow:
# - **Lesson 01**: automatic differentiation, first a 30-line scalar version, then
#   `minicam.Tensor` (the gradients that Grad-CAM needs, and the second and third
#   derivatives that Grad-CAM++ needs).
# - **Lesson 02**: convolution, as loops, as unfold + matrix product, and its backward.
# - **Lesson 03**: max, average and global average pooling, and why a GAP -> Linear head
#   makes the class score a spatial average of one map, the CAM.
# - **Lesson 05** derives CAM properly, and the lessons after it Grad-CAM, Grad-CAM++,
#   their relatives and how to measure whether a map is any good.
#
# ## Exercises
#
# 1. Explain a class that was *not* predicted: pass `target=1` (square) to `explain` for
#    images of disks. Where does the "square" evidence sit?
# 2. Compare `explain(model, x, "gradcam", "features.relu2")` with the maps at
#    `features.relu3`. Which is sharper, and which better follows the object? Why does
#    the resolution of the layer matter?
# 3. The identity of section 5 needs the head to be GAP -> Linear. Check that the
#    relative error stays below $10^{-12}$ for 50 images of your own, and for every
#    target class (`target=0, 1, 2`).
# 4. Find a misclassified image in `test` (compare `predict(model, test.images)` with
#    `test.labels`) and look at its three maps. What did the network look at?
# 5. Time `explain` for each of the three methods on 100 images. Which is the slowest,
#    and why (count the forward and backward passes)?
#
# ## Instructor notes
#
# - **Expected output**: an accuracy near 0.98 with this seed (the assert only asks for
#   0.9); the six shown images classified correctly, five with a sigmoid above 0.99 and
#   one square with a hesitant 0.67; maps on or next to the shape, the triangle's just
#   below its edge; CAM lighting the background more than Grad-CAM (its min-max scaling
#   starts from its most negative value); an identity error of exactly 0 (the two code
#   paths happen to round alike; anything below $10^{-12}$ is fine).
# - **Misconception**: "the maps show what the network sees". They show which positions
#   of an $8{\times}8$ feature map raise the score of one class; the smooth $32{\times}32$
#   picture is a bilinear upsampling, and its colours are rescaled per image, so two
#   images' maps cannot be compared by colour.
# - **Misconception**: "CAM and Grad-CAM are different methods that happen to agree".
#   On a GAP head they are the same map up to a positive factor and a ReLU; they differ
#   only on other heads (lesson 05 and after).
# - **Discussion prompt**: the model was trained with one sigmoid per class. Would the
#   maps change if we explained the softmax probability instead of the logit? (Try
#   `score="softmax"` with Grad-CAM and compare.)
# - **Timing**: 3 minutes for sections 1-3, 4 minutes for the figure, 3 minutes for the
#   identity. The script runs in 2-5 seconds.
