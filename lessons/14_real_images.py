# %% [markdown]
# # Lesson 14 (appendix): Real images, handwritten digits
#
# **Objectives**
# - Leave the synthetic shapes: build a localisation task from real handwritten digits
#   (scikit-learn's `load_digits`, 1797 scans of $8{\times}8$ pixels, 10 classes) pasted at
#   random positions on a larger, noisy canvas, so that the true location is known.
# - Train a small minicam CNN with a global-average-pooling head on it, in NumPy, and
#   check that its CAM and Grad-CAM are the same map up to a factor (the GAP identity).
# - Measure whether the maps find the digit: the pointing game and the energy pointing
#   game against the known placement box, next to the score of random maps.
#
# **Prerequisites**: lesson 00, lessons 05 (CAM) and 06 (Grad-CAM), and
# lesson 04 (the training loop of `minicam.train`).
#
# **Code you will read**
# - `minicam/models.py`: `LessonCNN` (here with one input channel and 10 classes)
# - `minicam/train.py`: `train`, `accuracy`; `minicam/ops/softmax.py`: `cross_entropy`
# - `minicam/cam/cam.py`: `cam`; `minicam/cam/gradient.py`: `gradcam`
# - `minicam/metrics/localisation.py`: `pointing_game`, `energy_pointing_game`
#
# **Time**: 30 minutes (the training runs in about 15 seconds).
#
# **This lesson needs scikit-learn, an optional extra** (the digits ship inside it; nothing
# is downloaded): `pip install "minicam[lessons]"`, or `pip install scikit-learn`.
# Without it the script prints a line starting with "skipped:" and exits cleanly.

# %%
import os
import sys

import numpy as np
from matplotlib.patches import Rectangle

try:
    from sklearn.datasets import load_digits
except ImportError:
    print('skipped: this lesson needs scikit-learn, an optional extra. Install it with '
          'pip install "minicam[lessons]" (or pip install scikit-learn), then run the lesson again.')
    sys.exit(0)

import minicam
import minicam.cam
import minicam.metrics
import minicam.models
import minicam.train
import minicam.viz
from minicam.cam.capture import predict

SEED = 14
FAST = os.environ.get("MINICAM_FAST") == "1"  # CI: one copy of each digit, two epochs
rng = np.random.default_rng(SEED)
CANVAS = 24          # the canvas is CANVAS x CANVAS pixels; a digit is 8 x 8
NOISE = 0.1          # standard deviation of the background noise; ink is in [0, 1]
COPIES = 1 if FAST else 4   # each training digit is pasted at COPIES random places
EPOCHS = 2 if FAST else 8
TEST_DIGITS = 397

# %% [markdown]
# ## 1. The digits, pasted at random places
#
# `load_digits()` returns the images (1797, 8, 8) with ink values 0 to 16 and their
# labels 0 to 9. We keep the last `TEST_DIGITS` scans (in a random order) for testing, so
# test digits are handwriting the model never saw. Each digit, scaled to $[0, 1]$, is
# added to a canvas of Gaussian noise at a random position; the $8{\times}8$ **placement
# box** is the ground truth for localisation. Training digits are pasted `COPIES` times,
# at different places: the network must learn that a digit is the same wherever it is.

# %%
digits = load_digits()
print(f"load_digits: images {digits.images.shape}, ink from {digits.images.min():.0f} to "
      f"{digits.images.max():.0f}, labels {np.unique(digits.target)}")
order = rng.permutation(len(digits.target))
train_ids, test_ids = order[:-TEST_DIGITS], order[-TEST_DIGITS:]


def paste(ids, copies):
    """Images (n, 1, CANVAS, CANVAS), labels (n,) and placement boxes (n, CANVAS, CANVAS) bool."""
    n = len(ids) * copies
    images = rng.normal(0, NOISE, size=(n, 1, CANVAS, CANVAS))
    boxes = np.zeros((n, CANVAS, CANVAS), dtype=bool)
    labels = np.tile(digits.target[ids], copies)
    for row, digit in enumerate(np.tile(ids, copies)):
        top, left = rng.integers(0, CANVAS - 8 + 1, size=2)
        images[row, 0, top:top + 8, left:left + 8] += digits.images[digit] / 16
        boxes[row, top:top + 8, left:left + 8] = True
    return images, labels, boxes


train_x, train_y, _ = paste(train_ids, COPIES)
test_x, test_y, test_boxes = paste(test_ids, 1)
box_share = 64 / CANVAS**2
print(f"training images {train_x.shape}, test images {test_x.shape}; the box covers {box_share:.1%} of a canvas")
assert test_boxes.sum(axis=(1, 2)).tolist() == [64] * TEST_DIGITS

# %% [markdown]
# ## 2. A small CNN with a GAP head, trained in NumPy
#
# `LessonCNN(in_channels=1, classes=10)`: three $3{\times}3$ convolution blocks (8, 16 and
# 32 channels, two max-pools), global average pooling, one Linear layer. It is trained
# with softmax cross-entropy (10 mutually exclusive classes) and Adam, in float32, by
# `minicam.train.train`, the same loop that trained the shipped model.

# %%
model = minicam.models.LessonCNN(in_channels=1, classes=10, dtype=np.float32, rng=rng)
history = minicam.train.train(model, train_x, train_y, epochs=EPOCHS, batch_size=32, lr=5e-3, rng=rng,
                              test=(test_x, test_y), loss_function=minicam.ops.cross_entropy)
model = model.to(np.float64)  # explain in float64, like every other lesson
test_accuracy = minicam.train.accuracy(model, test_x, test_y)
print(f"test accuracy after {EPOCHS} epochs: {test_accuracy:.3f} (chance: 0.1)")
assert history[-1]["loss"] < history[0]["loss"], "the training loss should go down"
if not FAST:
    assert test_accuracy > 0.5, f"the digit classifier should beat chance by far; got {test_accuracy:.3f}"

# %% [markdown]
# ## 3. CAM and Grad-CAM, and the identity that ties them
#
# The head is GAP -> Linear, so (lesson 00) $\mathrm{ReLU}(\text{CAM}) = hw \cdot
# \text{Grad-CAM}$ at the last layer. We check it on the new model before measuring anything:
# it tells us that the layer we explain really is the one the head averages.

# %%
LAYER = "features.relu3"
predicted = predict(model, test_x).argmax(axis=1)
raw_cam = minicam.cam.METHODS["cam"](model, test_x, LAYER, predicted)
raw_gradcam = minicam.cam.METHODS["gradcam"](model, test_x, LAYER, predicted)
h, w = raw_cam.shape[1:]
error = np.abs(np.maximum(raw_cam, 0) - h * w * raw_gradcam).max() / np.abs(raw_cam).max()
print(f"maps at {LAYER}: {h} x {w} (one cell = {CANVAS // h} pixels); max |ReLU(CAM) - hw Grad-CAM| / max |CAM| = {error:.1e}")
assert error < 1e-12

# %% [markdown]
# ## 4. Do the maps find the digit?
#
# Maps of the **predicted** class (what the model decided), upsampled to the canvas and
# normalised by `explain`. Two measures against the placement box:
#
# - **pointing game**: the share of maps whose peak lies in the box;
# - **energy pointing game**: the share of the map's mass inside the box.
#
# What would a map that knows nothing score? We measure it too, with random maps (one
# uniform random value per pixel): about the box's share of the canvas on both measures.
# And a second control, which matters more: the Grad-CAM of the **same architecture with
# its initial, untrained weights** (explaining whatever class it predicts).

# %%
maps = {
    "CAM": minicam.cam.explain(model, test_x, "cam", LAYER, predicted),
    "Grad-CAM": minicam.cam.explain(model, test_x, "gradcam", LAYER, predicted),
    "random map": rng.random(test_x[:, 0].shape),
}
untrained = minicam.models.LessonCNN(in_channels=1, classes=10, rng=np.random.default_rng(SEED + 1))
maps["Grad-CAM, untrained network"] = minicam.cam.explain(untrained, test_x, "gradcam", LAYER,
                                                          predict(untrained, test_x).argmax(axis=1))
right = predicted == test_y
print(f"{TEST_DIGITS} test images, {right.sum()} classified correctly\n")
print("| map | pointing game (all) | pointing game (digits the trained model gets right) | energy in box (all) |")
print("|---|---|---|---|")
scores = {}
for name, m in maps.items():
    hits = minicam.metrics.pointing_game(m, test_boxes)
    energy = minicam.metrics.energy_pointing_game(m, test_boxes)
    scores[name] = (hits.mean(), energy.mean())
    correct_hits = hits[right].mean() if right.any() else float("nan")
    print(f"| {name} | {hits.mean():.3f} | {correct_hits:.3f} | {energy.mean():.3f} |")
    assert hits.shape == energy.shape == (TEST_DIGITS,)

assert abs(scores["random map"][1] - box_share) < 0.02, "a random map's energy share should be the box's area share"
if not FAST:
    assert scores["Grad-CAM"][0] > 3 * box_share, "Grad-CAM should point at the digit far more often than chance"

# %% [markdown]
# Read the last row before the others. An untrained network's feature maps already
# respond to the bright strokes of ink (a convolution with random weights followed by a
# ReLU is a crude edge and blob detector), so its map lands on the digit too, often. A
# high pointing game therefore shows that the map finds *the ink*; it does not show that
# the map explains *why the network chose its class*. Lesson 11 (sanity checks) turns this
# observation into a test.

# %% [markdown]
# ## 5. The figure
#
# Eight test digits, the box drawn in white, the two maps of the trained model's predicted
# class, and the untrained network's Grad-CAM.

# %%
shown = np.arange(8)
titles = [f"true {test_y[i]}, pred {predicted[i]}" for i in shown]
rows_shown = {"CAM": "CAM", "Grad-CAM": "Grad-CAM", "Grad-CAM, untrained network": "Grad-CAM,\nuntrained"}
fig = minicam.viz.grid(test_x[shown], {label: maps[name][shown] for name, label in rows_shown.items()},
                       column_titles=titles)
image_axes = [ax for ax in fig.axes if ax.get_images()]  # the grid's panels, row by row (not the colorbar)
for row in range(1 + len(rows_shown)):
    for column, i in enumerate(shown):
        rows, cols = np.nonzero(test_boxes[i])
        image_axes[row * len(shown) + column].add_patch(
            Rectangle((cols.min() - 0.5, rows.min() - 0.5), 8, 8, fill=False, edgecolor="white", linewidth=1.5))
fig.suptitle(f"handwritten digits on a noisy {CANVAS}x{CANVAS} canvas; white: where the digit was pasted")
path = minicam.viz.save_figure(fig, "14_real_images")
print(f"saved {path}")

# %% [markdown]
# ## Exercises
#
# 1. Localise with the *true* class instead of the predicted one. For a misclassified digit,
#    which map points at the digit more often, and what does that say about the mistakes?
# 2. Make the task harder: paste a second, different digit on each canvas (a distractor).
#    Does the map of the predicted class pick the right one? Use the counterfactual
#    Grad-CAM of lesson 10 on the other digit's class.
# 3. The maps are $6{\times}6$ for a $24{\times}24$ canvas: each cell covers 4 pixels, and the
#    box is 2 cells wide. Explain at `features.relu2` ($12{\times}12$) with Grad-CAM and
#    LayerCAM and compare the energy in the box.
# 4. Train for more epochs (or with `COPIES = 8`) and plot the pointing game against the
#    test accuracy after each epoch. Does localisation improve with accuracy, or earlier?
# 5. Replace `load_digits` by another small image set that ships with a package you have
#    (e.g. scikit-image's sample images cut into patches). What must you know about each
#    image to measure localisation?
#
# ## Instructor notes
#
# - **Expected output** (full mode, seed 14): test accuracy about 0.82 after 8 epochs
#   (it rises further with more epochs; float32 training means the last digits can move
#   when the library's arithmetic changes); the identity at about 1e-16; the pointing game
#   of CAM and Grad-CAM about 0.88, far above the random maps' 0.11 (the box is 64 of 576
#   pixels), and Grad-CAM's energy in the box about 0.5. The untrained network's Grad-CAM
#   also points at the digit most of the time: that is the lesson's sting, do not skip it.
#   Fast mode trains two epochs on one copy of each digit: accuracy near chance (its
#   asserts are lighter), yet its maps still point at the digits, for the same reason.
# - **Why pasting**: real data sets rarely come with the location of the evidence. Pasting
#   real digits on a canvas keeps real handwriting while giving an exact box, so a
#   localisation score means something.
# - **Misconception**: "a good classifier has good maps". A classifier can be right for a
#   wrong reason (here there is little to exploit besides the ink, so the maps do land on
#   the digit; with structured backgrounds they may not).
# - **Misconception**: "CAM and Grad-CAM disagree on this model". Only their
#   normalisation differs (CAM is signed: its min-max starts at its most negative value).
# - **Packaging**: scikit-learn is an optional extra (`pip install "minicam[lessons]"`); the
#   test suite runs this lesson in fast mode and accepts the "skipped:" line when it is
#   missing.
# - **Timing**: 5 minutes for the data, 5 while the model trains (discuss the loop), 10 for
#   the identity and the measures, 10 for the figure and the exercises.
