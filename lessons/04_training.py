# %% [markdown]
# # Lesson 04: Training the GAP network in NumPy
#
# **Objectives**
# - Train `LessonCNN` (three conv blocks -> global average pooling -> Linear) from random
#   weights on synthetic shapes, with minicam's own autograd and Adam, and read its loss
#   and accuracy curves.
# - Explain why it is trained with a one-vs-rest sigmoid loss rather than softmax
#   cross-entropy, and what that choice does to the class activation maps of later lessons.
# - Compare the model you trained with the shipped one on the same test images.
#
# **Prerequisites**: lesson 01 (autograd), lesson 02 (convolution), lesson 03 (pooling and GAP).
#
# **Code you will read**
# - `minicam/data.py`: `single_instance`, `shape_mask`, `textured_background`
# - `minicam/models.py`: `LessonCNN`, `lesson_cnn`
# - `minicam/train.py`: `train`, `one_vs_rest_loss`, `accuracy`, `train_lesson_cnn`
# - `minicam/optim.py`: `Adam`; `minicam/ops/softmax.py`: `cross_entropy`
#
# **Time**: 35 minutes (the training itself runs for about 20 seconds).

# %%
import os
import time

import numpy as np
from matplotlib.figure import Figure

import minicam
import minicam.data
import minicam.models
import minicam.train
import minicam.viz
from minicam import Tensor, ops
from minicam.cam.capture import predict

SEED = 0
FAST = os.environ.get("MINICAM_FAST") == "1"  # CI: a few hundred images, three epochs
rng = np.random.default_rng(SEED)

TRAIN_IMAGES = 300 if FAST else 2000
TEST_IMAGES = 100 if FAST else 400
EPOCHS = 3 if FAST else 16
BATCH_SIZE = 32
LEARNING_RATE = 5e-3
CLASSES = minicam.data.CLASSES

# %% [markdown]
# ## 1. The data
#
# `single_instance(rng, n)` paints one shape (disk, square or triangle, class chosen at
# random) on a textured, noisy background. Each shape gets a random size, position,
# rotation and colour (bright or dark), so only the *shape* tells the classes apart. Every
# image comes with the shape's mask: we never use it for training, only later to ask
# whether a map points at the object.
#
# The training and test images come from the same generator but from different parts of
# the random stream: the test images were never seen in training.

# %%
start = time.perf_counter()
train_set = minicam.data.single_instance(rng, TRAIN_IMAGES)
test_set = minicam.data.single_instance(rng, TEST_IMAGES)
print(f"train images {train_set.images.shape}, test images {test_set.images.shape}, "
      f"{train_set.images.dtype}, made in {time.perf_counter() - start:.1f} s")
print(f"class counts: train {np.bincount(train_set.labels, minlength=3)}, "
      f"test {np.bincount(test_set.labels, minlength=3)}  ({', '.join(CLASSES)})")
object_share = train_set.union_masks().mean()
print(f"the object covers {object_share:.1%} of an image on average")
assert set(np.unique(train_set.labels)) == {0, 1, 2}

# %%
EXAMPLES_PER_CLASS = 4
fig = Figure(figsize=(2.0 * EXAMPLES_PER_CLASS, 6.2), layout="constrained")
axes = fig.subplots(3, EXAMPLES_PER_CLASS)
for c, name in enumerate(CLASSES):
    for j, index in enumerate(np.flatnonzero(train_set.labels == c)[:EXAMPLES_PER_CLASS]):
        ax = axes[c, j]
        ax.imshow(minicam.viz.to_display_image(train_set.images[index]), interpolation="nearest")
        # the ground-truth mask's outline, drawn at the pixel edges
        ax.contour(train_set.masks[index][0].astype(float), levels=[0.5], colors="red", linewidths=1.2)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[c, 0].set_ylabel(name)
fig.suptitle("training images, one row per class (red: the outline of the object's mask)")
print(f"saved {minicam.viz.save_figure(fig, '04_training_data')}")

# %% [markdown]
# ## 2. The model
#
# `LessonCNN` is conv-relu-pool, conv-relu-pool, conv-relu, then global average pooling
# (GAP) and one Linear layer:
#
# $$S_c = \sum_k W_{ck}\,\frac{1}{hw}\sum_{ij} A_{kij} + b_c ,$$
#
# with $A$ the $K = 32$ feature maps of `features.relu3` ($8{\times}8$ each). This is the
# head that CAM needs (lesson 05). We train in float32, which is about twice as fast as
# float64 here; the lessons that *explain* the model load the weights into float64, where
# identities hold to $10^{-12}$.

# %%
model = minicam.models.LessonCNN(dtype=np.float32, rng=rng)
for name, parameter in model.named_parameters():
    print(f"{name:24s} {parameter.shape!s:16s} {parameter.numel():6d} numbers")
print(f"{sum(p.numel() for p in model.parameters())} parameters in all")

# %% [markdown]
# ## 3. The loss: one sigmoid per class, not a softmax
#
# With logits $z \in \mathbb{R}^{N\times C}$ and labels $y_n$, the usual loss is softmax
# cross-entropy, $-\log \frac{e^{z_{n y_n}}}{\sum_c e^{z_{nc}}}$. It depends only on the
# **differences** between logits: adding the same number $t$ to every logit of an image
# changes nothing. So nothing forces a class's logit to come from its *own* object. With
# three classes, the network may learn "disk detector", "square detector", and a third
# logit that is simply a constant: "triangle" then means "neither of the others", and its
# evidence is the background, everywhere at once. Its class activation map (lesson 05) is
# flat, and tells you nothing.
#
# `minicam.train.one_vs_rest_loss` asks instead one yes/no question per class: is *this*
# shape in the image? Each logit goes through its own sigmoid, with target
# $t_{nc} = [y_n = c]$, and the binary cross-entropy is averaged over images and classes:
#
# $$L = \frac{1}{NC}\sum_{n,c} \Big(-t_{nc}\log\sigma(z_{nc}) - (1-t_{nc})\log(1-\sigma(z_{nc}))\Big)
#     = \frac{1}{NC}\sum_{n,c} \big(\mathrm{softplus}(z_{nc}) - t_{nc} z_{nc}\big),$$
#
# using $-\log\sigma(z) = \mathrm{softplus}(-z) = \mathrm{softplus}(z) - z$. Every logit
# must now be high exactly when its own shape is present, on a background that all images
# share, so every class must find positive evidence on its object. Its gradient is
# $\partial L/\partial z_{nc} = (\sigma(z_{nc}) - t_{nc})/(NC)$.
#
# We check the three claims: the softplus form equals the textbook form, the gradient is
# $(\sigma - t)/(NC)$, and a shift of all logits leaves softmax cross-entropy unchanged
# but not the one-vs-rest loss.

# %%
z_values = rng.normal(0, 3, size=(6, 3))
z_values[0, 0] = 40.0  # a large logit: the textbook form with log(1 - sigmoid) fails here, softplus does not
labels_demo = np.array([0, 1, 2, 0, 1, 2])
targets = np.eye(3)[labels_demo]

z = Tensor(z_values, requires_grad=True)
loss = minicam.train.one_vs_rest_loss(z, labels_demo)

sigma = 1 / (1 + np.exp(-z_values))
with np.errstate(divide="ignore", invalid="ignore"):
    textbook = np.mean(-targets * np.log(sigma) - (1 - targets) * np.log(1 - sigma))
stable = np.mean(np.logaddexp(0, z_values) - targets * z_values)  # softplus(z) - t z, in NumPy
print(f"one_vs_rest_loss = {loss.item():.12f}; the same in NumPy = {stable:.12f}; "
      f"the textbook form = {textbook} (log(1 - sigmoid(40)) = log(0) in float64)")
assert abs(loss.item() - stable) < 1e-12
z_small = z_values[1:]  # without the 40, the textbook form is finite and must agree
textbook_small = np.mean(-targets[1:] * np.log(sigma[1:]) - (1 - targets[1:]) * np.log(1 - sigma[1:]))
assert abs(minicam.train.one_vs_rest_loss(Tensor(z_small), labels_demo[1:]).item() - textbook_small) < 1e-12

(gradient,) = minicam.grad(loss, z)
expected_gradient = (sigma - targets) / z_values.size
print(f"max |dL/dz - (sigmoid(z) - t)/(NC)| = {np.abs(gradient.data - expected_gradient).max():.1e}")
assert np.allclose(gradient.data, expected_gradient, rtol=1e-12, atol=1e-15)

shift = 7.5
softmax_before = ops.cross_entropy(Tensor(z_values), labels_demo).item()
softmax_after = ops.cross_entropy(Tensor(z_values + shift), labels_demo).item()
ovr_after = minicam.train.one_vs_rest_loss(Tensor(z_values + shift), labels_demo).item()
print(f"add {shift} to every logit: softmax cross-entropy {softmax_before:.6f} -> {softmax_after:.6f}, "
      f"one-vs-rest {loss.item():.6f} -> {ovr_after:.6f}")
assert abs(softmax_before - softmax_after) < 1e-12  # only differences of logits matter
assert ovr_after > loss.item() + 1.0                  # every logit is judged on its own

# %% [markdown]
# At initialisation the logits are small, so each sigmoid is near $1/2$ and the loss is
# near $\log 2 \approx 0.693$ (the loss of a coin toss per class). The first epoch should
# start there.

# %%
initial_logits = predict(model, train_set.images[:256].astype(np.float32))
initial_loss = minicam.train.one_vs_rest_loss(Tensor(initial_logits), train_set.labels[:256]).item()
print(f"initial logits in [{initial_logits.min():.3f}, {initial_logits.max():.3f}]; "
      f"initial loss {initial_loss:.4f} (log 2 = {np.log(2):.4f})")
assert abs(initial_loss - np.log(2)) < 0.1

# %% [markdown]
# ## 4. Training
#
# `minicam.train.train` is the textbook loop: shuffle, then for each mini-batch of 32
# images: forward, loss, `loss.backward()`, one Adam step. After each epoch it records the
# mean loss, the training accuracy (counted *during* the epoch, while the weights still
# change) and the test accuracy (after the epoch). The shipped weights used 3000 images
# and 30 epochs (`python -m minicam.train`); here fewer images and epochs, and a larger
# learning rate, keep the lesson short.

# %%
history = minicam.train.train(
    model, train_set.images, train_set.labels, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LEARNING_RATE,
    rng=rng, test=(test_set.images, test_set.labels), log=print,
)
final = history[-1]
print(f"\n{TRAIN_IMAGES} images x {EPOCHS} epochs in {final['seconds']:.1f} s: "
      f"loss {history[0]['loss']:.4f} -> {final['loss']:.4f}, test accuracy {final['test_accuracy']:.3f}")

assert final["loss"] < history[0]["loss"], "the loss should decrease"
if not FAST:
    assert final["test_accuracy"] >= 0.8, f"expected at least 80% test accuracy, got {final['test_accuracy']:.3f}"

# %% [markdown]
# ## 5. The curves
#
# Typically the loss sits on a plateau for a few epochs (the network first learns to
# predict the class frequencies, $\sigma(z) \approx 1/3$), then falls once the filters
# start to tell corners and curves apart.

# %%
epochs = [row["epoch"] for row in history]
fig = Figure(figsize=(9.5, 3.6), layout="constrained")
ax_loss, ax_accuracy = fig.subplots(1, 2)
ax_loss.plot(epochs, [row["loss"] for row in history], "o-", color="black", label="training loss")
ax_loss.axhline(np.log(2), color="grey", linestyle=":", label="log 2 (a coin per class)")
ax_loss.set_xlabel("epoch")
ax_loss.set_ylabel("one-vs-rest loss (mean over images and classes)")
ax_loss.set_ylim(bottom=0)
ax_loss.legend()
ax_loss.set_title("loss")
ax_accuracy.plot(epochs, [row["train_accuracy"] for row in history], "o-", label="train (during the epoch)")
ax_accuracy.plot(epochs, [row["test_accuracy"] for row in history], "s-", label="test (after the epoch)")
ax_accuracy.axhline(1 / 3, color="grey", linestyle=":", label="chance (1/3)")
ax_accuracy.set_xlabel("epoch")
ax_accuracy.set_ylabel("accuracy")
ax_accuracy.set_ylim(0, 1.02)
ax_accuracy.legend(loc="lower right")
ax_accuracy.set_title("accuracy")
for ax in (ax_loss, ax_accuracy):
    ax.set_xticks(epochs)
    ax.grid(alpha=0.3)
fig.suptitle(f"LessonCNN, {TRAIN_IMAGES} training images, batch {BATCH_SIZE}, Adam lr {LEARNING_RATE}")
print(f"saved {minicam.viz.save_figure(fig, '04_training_curves')}")

# %% [markdown]
# ## 6. Our model against the shipped one
#
# `minicam.models.lesson_cnn()` loads the weights shipped with minicam (3000 images,
# 30 epochs, seed 0). We measure both models on the *same* test images. The confusion
# matrix counts, for each true class (row), how often each class was predicted (column).
#
# The shipped weights are stored in float32 and loaded into a float64 model
# (`load_state_dict` casts); the predicted classes do not depend on that precision.

# %%
shipped = minicam.models.lesson_cnn()


def confusion_matrix(logits, labels):
    counts = np.zeros((3, 3), dtype=int)
    np.add.at(counts, (labels, logits.argmax(axis=1)), 1)
    return counts


results = {}
for name, net in (("ours", model), ("shipped", shipped)):
    logits = predict(net, test_set.images.astype(next(iter(net.parameters())).dtype))
    results[name] = logits
    counts = confusion_matrix(logits, test_set.labels)
    accuracy = np.trace(counts) / counts.sum()
    # minicam.train.accuracy runs batches of 256: the same count, up to a float32 near-tie
    assert abs(accuracy - minicam.train.accuracy(net, test_set.images, test_set.labels)) <= 1.001 / len(test_set.labels)
    print(f"{name:8s} test accuracy {accuracy:.3f}; confusion matrix (rows: true {CLASSES}, columns: predicted)")
    print(counts)

shipped_accuracy = minicam.train.accuracy(shipped, test_set.images, test_set.labels)
assert shipped_accuracy >= 0.9, f"the shipped model should reach 90%, got {shipped_accuracy:.3f}"

# float32 weights in a float64 model: the same classes, logits equal to float32 rounding
shipped32 = minicam.models.LessonCNN(dtype=np.float32)
shipped32.load_state_dict(shipped.state_dict())
logits32 = predict(shipped32, test_set.images.astype(np.float32))
relative = np.abs(logits32 - results["shipped"]).max() / np.abs(results["shipped"]).max()
print(f"shipped model in float32 vs float64: max relative logit difference {relative:.1e}, "
      f"same predictions: {np.array_equal(logits32.argmax(1), results['shipped'].argmax(1))}")
assert relative < 1e-4

# %% [markdown]
# ## Exercises
#
# 1. Train with softmax cross-entropy instead: pass `loss_function=minicam.ops.cross_entropy`
#    to `minicam.train.train`. Does the accuracy change? Then compute, for the test images,
#    the standard deviation over positions of the CAM of each class
#    (`minicam.cam.METHODS["cam"](model.eval(), x, "features.relu3", target=c)`), averaged
#    over images. Is one class's map much flatter than the others? Compare with the model
#    trained one-vs-rest.
# 2. Double the learning rate, then halve it. How does the length of the initial plateau
#    change? What happens with `lr=5e-2`?
# 3. Train on 500 images for 40 epochs. Plot the training and the test accuracy: where
#    does the gap between them (overfitting) open?
# 4. The training accuracy in the history is counted during the epoch, the test accuracy
#    after it. Recompute the training accuracy after each epoch with
#    `minicam.train.accuracy` (write your own loop calling `train(..., epochs=1)`), and
#    explain the difference with the recorded one in the first epochs.
# 5. Time one epoch in float32 and in float64 (`LessonCNN(dtype=np.float64, ...)`). Where
#    does the time go? (Lesson 02 discusses im2col and memory traffic.)
#
# ## Instructor notes
#
# - **Expected output** (full mode, seed 0): the initial loss is about 0.67 and the first
#   epoch's mean about 0.64 (below log 2: predicting 1/3 for every class beats a coin);
#   the loss stays on a plateau for two or three epochs and falls to about 0.04; the test
#   accuracy climbs from about 1/3 to about 0.98 in 16 epochs, in 20 to 40 seconds on two
#   cores (depending on the load). The shipped model scores about 0.98 on the same test
#   images. Fast mode (300 images, 3 epochs) only shows the loss decreasing; its accuracy
#   stays near chance (it predicts one class for everything), which is expected.
# - **Misconception**: "the loss is wrong because it is not softmax". Both are proper
#   classification losses; they differ in what they force each logit to mean. Ask which
#   one a CAM needs: a logit that is *evidence for its class*, located in the image.
# - **Misconception**: "train accuracy below test accuracy means a bug". The training
#   accuracy is averaged over an epoch whose weights keep improving, so it lags.
# - **Discussion prompt**: with softmax, $S_c + t$ for all $c$ gives the same loss. What
#   does that freedom do to $M_c = \sum_k W_{ck} A_k$, whose mean is $S_c - b_c$? (A
#   constant added to a logit can come from the bias or from a constant map.)
# - **Timing**: 5 minutes on the data, 10 on the loss and its checks, 5 while the model
#   trains (use the time to read `minicam/train.py` together), 10 on the curves and the
#   comparison, 5 for questions.
