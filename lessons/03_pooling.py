# %% [markdown]
# # Lesson 03: Pooling, global average pooling, and where CAM comes from
#
# **Objectives**
# - Compute max and average pooling by loops and with `minicam.ops`, and know where
#   their gradients go (max: all of it to the *first* maximum of each window).
# - Read global average pooling (GAP) as a plain mean over positions.
# - Show that a GAP -> Linear head makes each class score the spatial average of one
#   map, $\sum_k w_k\,\mathrm{mean}(A_k) = \mathrm{mean}(\sum_k w_k A_k)$: the class
#   activation map (CAM) of lesson 05.
#
# **Prerequisites**: lesson 01 (autograd), lesson 02 (unfold, convolution).
#
# **Code you will read**
# - `minicam/reference.py`: `max_pool2d`, `max_pool2d_backward`, `avg_pool2d`, `adaptive_avg_pool2d`
# - `minicam/ops/pool.py`: `max_pool2d`, `max_choice` (torch's tie rule, as an argmax), `MaxPool2dOp`
#   and its backward `WindowScatterOp`, `avg_pool2d`, `adaptive_avg_pool2d`
# - `minicam/models.py`: `LessonCNN.forward`; `minicam/cam/cam.py`: `cam`
#
# **Time**: 40 minutes.

# %%
import os

import numpy as np
from matplotlib.figure import Figure

import minicam
import minicam.cam
import minicam.data
import minicam.models
import minicam.reference
import minicam.viz
from minicam import Tensor, ops

SEED = 3
FAST = os.environ.get("MINICAM_FAST") == "1"  # CI: fewer images in section 5
rng = np.random.default_rng(SEED)


def relative_error(a, b):
    """max |a - b| / max |b|."""
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


# %% [markdown]
# ## 1. Max pooling
#
# Max pooling keeps the largest value of every window, channel by channel:
#
# $$y[n, c, o_h, o_w] = \max_{i, j}\ x[n, c,\ o_h s_h - p_h + i\, d_h,\ o_w s_w - p_w + j\, d_w],$$
#
# with the same window geometry (and output-size formula) as a convolution. The stride
# defaults to the kernel size, so 2x2 pooling halves the height and width. Padded
# pixels never win (they count as $-\infty$). The lesson network pools 2x2 twice.
#
# The loops (`minicam.reference.max_pool2d`) against `minicam.ops.max_pool2d`, whose
# primitive `MaxPool2dOp` (`minicam/ops/pool.py`) takes a view of the windows of the padded
# input (lesson 02's unfold, without the copy) and picks the one element of each that
# `max_choice` chooses: an argmax over the window axis. By default a tuned version of the
# same pick runs (the fast wing, `minicam/ops/fast/pool.py`); inside
# `with ops.reading_room():` the lines you read run instead. A maximum is one of the input
# numbers, not a sum, so all of them must agree *exactly*.

# %%
x = rng.standard_normal((2, 3, 8, 8))
POOL_CONFIGURATIONS = [
    dict(kernel_size=2),                                   # stride = kernel_size
    dict(kernel_size=3, stride=2, padding=1),              # overlapping windows
    dict(kernel_size=(2, 3), stride=(2, 1), dilation=2),
]
for config in POOL_CONFIGURATIONS:
    from_loops = minicam.reference.max_pool2d(x, **config)
    from_ops = ops.max_pool2d(x, **config).numpy()
    with ops.reading_room():
        from_reading_room = ops.max_pool2d(x, **config).numpy()
    print(f"max_pool2d {config}: {x.shape} -> {from_ops.shape}, identical: {np.array_equal(from_loops, from_ops)}")
    assert np.array_equal(from_loops, from_ops) and np.array_equal(from_reading_room, from_ops)

# %% [markdown]
# ### Its gradient: all of it to one element per window
#
# Near a point where every window has a single largest element, max pooling is a
# *selection*: $y = x[\text{argmax}]$. Its derivative is 1 for the selected element and
# 0 for the others, so each window sends its whole upstream gradient $g$ to the element
# it selected, and a pixel selected by several overlapping windows collects the sum
# (lesson 01's rule again):
#
# $$\frac{\partial L}{\partial x[r, s]} = \sum_{\text{windows } w \text{ that chose } (r, s)} g[w].$$

# %%
for config in POOL_CONFIGURATIONS:
    x_leaf = Tensor(x, requires_grad=True)
    y = ops.max_pool2d(x_leaf, **config)
    g = rng.standard_normal(y.shape)
    (dx,) = minicam.grad(y, x_leaf, grad_outputs=Tensor(g))
    from_loops = minicam.reference.max_pool2d_backward(x, g, **config)
    error = relative_error(dx.numpy(), from_loops)
    print(f"{config}: gradient vs reference.max_pool2d_backward, relative difference {error:.1e}")
    assert error < 1e-14

# %% [markdown]
# With overlapping windows (3x3, stride 1) on a 5x5 input, sending $g = 1$ from every
# window counts how many windows chose each pixel: the largest pixel is chosen by
# every window that contains it.

# %%
x_counts = rng.permutation(25).reshape(1, 1, 5, 5).astype(np.float64)  # distinct values: no ties
x_leaf = Tensor(x_counts, requires_grad=True)
y = ops.max_pool2d(x_leaf, kernel_size=3, stride=1)
(chosen,) = minicam.grad(y, x_leaf, grad_outputs=Tensor(np.ones(y.shape)))
print("input\n", x_counts[0, 0].astype(int), "\nhow many of the 9 windows chose each pixel\n", chosen.numpy()[0, 0].astype(int))
assert chosen.numpy().sum() == y.numel() == 9
peak = np.unravel_index(np.argmax(x_counts[0, 0]), (5, 5))
windows_containing_peak = sum(1 for oh in range(3) for ow in range(3) if oh <= peak[0] < oh + 3 and ow <= peak[1] < ow + 3)
assert chosen.numpy()[0, 0][peak] == windows_containing_peak

# %% [markdown]
# ### Ties
#
# When a window holds its maximum twice, max pooling has a kink: nudging one of the tied
# values *up* raises the output (derivative 1), nudging it *down* leaves the other one
# in charge (derivative 0). No derivative exists there, and a convention must choose.
# PyTorch, and minicam with it, gives the whole gradient to the **first** maximum in
# row-major order (row by row, left to right). ReLU's convention at 0 (gradient 0) is
# the same kind of choice. In `max_choice` (`minicam/ops/pool.py`) it is one line: the
# argmax of the booleans "equals the window's maximum" is the FIRST True. The same function
# writes torch's rules for NaN (the maximum; the last one wins) and for windows of -inf.
#
# Below, the top-left window holds 3 twice, the top-right 2 three times, the bottom-left
# is all zeros and the bottom-right all fives.

# %%
x_ties = np.array([[1.0, 3.0, 2.0, 2.0],
                   [3.0, 0.0, 2.0, 1.0],
                   [0.0, 0.0, 5.0, 5.0],
                   [0.0, 0.0, 5.0, 5.0]])[None, None]
x_leaf = Tensor(x_ties, requires_grad=True)
y = ops.max_pool2d(x_leaf, kernel_size=2)
(dx_ties,) = minicam.grad(y, x_leaf, grad_outputs=Tensor(np.ones(y.shape)))
first_maxima = np.zeros((4, 4))
first_maxima[0, 1] = first_maxima[0, 2] = first_maxima[2, 0] = first_maxima[2, 2] = 1.0  # by hand
print("input\n", x_ties[0, 0], "\npooled\n", y.numpy()[0, 0], "\ngradient (g = 1 from each window)\n", dx_ties.numpy()[0, 0])
assert np.array_equal(dx_ties.numpy()[0, 0], first_maxima)
assert np.array_equal(dx_ties.numpy(), minicam.reference.max_pool2d_backward(x_ties, np.ones(y.shape), kernel_size=2))


def pooled_sum(x_array):
    return ops.max_pool2d(x_array, kernel_size=2).numpy().sum()


h = 1e-6
for position in [(0, 1), (1, 0)]:  # the two tied 3s of the top-left window
    up, down = x_ties.copy(), x_ties.copy()
    up[(0, 0) + position] += h
    down[(0, 0) + position] -= h
    right_derivative = (pooled_sum(up) - pooled_sum(x_ties)) / h
    left_derivative = (pooled_sum(x_ties) - pooled_sum(down)) / h
    central = (pooled_sum(up) - pooled_sum(down)) / (2 * h)
    print(f"tied pixel {position}: derivative from the right {right_derivative:.3f}, from the left "
          f"{left_derivative:.3f}, central difference {central:.3f}; minicam gives {dx_ties.numpy()[(0, 0) + position]:.0f}")
    assert abs(right_derivative - 1) < 1e-6 and abs(left_derivative) < 1e-6 and abs(central - 0.5) < 1e-6

# %% [markdown]
# So finite differences cannot check a max pool at a tie (the central difference gives
# 1/2 to each tied pixel). Gradient checks use random inputs, where ties have
# probability zero; the tie rule is checked against PyTorch instead
# (`tests/test_pool_ties.py`).
#
# ## 2. Average pooling
#
# Average pooling replaces each window by its mean. It is linear in $x$, so its gradient
# is the same at every point: each window spreads $g/(k_h k_w)$ evenly over its pixels.
# For non-overlapping 2x2 windows, $dx$ is $g$ repeated over each 2x2 block, divided by 4.
#
# With padding, the divisor is a convention: `count_include_pad=True` (the default, as
# in PyTorch) divides by $k_h k_w$ even where the window hangs over the border (the
# padding counts as zeros); `False` divides by the number of real pixels.

# %%
for config in [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
               dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)]:
    error = relative_error(ops.avg_pool2d(x, **config).numpy(), minicam.reference.avg_pool2d(x, **config))
    print(f"avg_pool2d {config}: loops vs ops, relative difference {error:.1e}")
    assert error < 1e-14

x_leaf = Tensor(x, requires_grad=True)
y = ops.avg_pool2d(x_leaf, kernel_size=2)
g = rng.standard_normal(y.shape)
(dx,) = minicam.grad(y, x_leaf, grad_outputs=Tensor(g))
spread = np.kron(g, np.ones((1, 1, 2, 2))) / 4  # g repeated over each 2x2 block, divided by 4
print(f"average pooling gradient vs g spread evenly over each window: relative difference {relative_error(dx.numpy(), spread):.1e}")
assert relative_error(dx.numpy(), spread) < 1e-14

# %% [markdown]
# ## 3. Global average pooling
#
# Global average pooling is average pooling with one window covering the whole map:
# `adaptive_avg_pool2d(x, 1)` turns $(N, K, h, w)$ into $(N, K, 1, 1)$,
#
# $$\mathrm{GAP}(A_k) = \frac{1}{hw}\sum_{i, j} A_{kij}, \qquad
#   \frac{\partial\, \mathrm{GAP}(A_k)}{\partial A_{kij}} = \frac{1}{hw} \text{ at every position}.$$
#
# It has no parameters, works for any input size, and keeps no "where": after it, the
# network only knows *how much* of each feature there was.

# %%
A_random = rng.random((2, 5, 8, 8))
A_leaf = Tensor(A_random, requires_grad=True)
gap = ops.adaptive_avg_pool2d(A_leaf, 1)
print(f"GAP: {A_random.shape} -> {gap.shape}")
assert relative_error(gap.numpy()[:, :, 0, 0], A_random.mean(axis=(2, 3))) < 1e-14
assert relative_error(gap.numpy(), minicam.reference.adaptive_avg_pool2d(A_random, 1)) < 1e-14
(dA,) = minicam.grad(gap.sum(), A_leaf)
assert np.allclose(dA.numpy(), 1 / 64, rtol=1e-14, atol=0)
print("its gradient is 1/(h*w) = 1/64 at every position:", np.unique(dA.numpy()))

# %% [markdown]
# ## 4. Why a GAP -> Linear head gives a class map
#
# The lesson network ends with GAP and a Linear layer. Write $A_k$ ($k = 1..K$, $K = 32$)
# for the feature maps of its last block (`features.relu3`, each $8{\times}8$) and $W$,
# $b$ for the Linear layer. The score (logit) of class $c$ is
#
# $$S_c = \sum_k W_{ck}\ \frac{1}{hw}\sum_{i,j} A_{kij} + b_c
#       = \frac{1}{hw}\sum_{i,j}\ \underbrace{\sum_k W_{ck} A_{kij}}_{M_c(i, j)} + b_c .$$
#
# Both sums are finite and linear, so they can be swapped: **a weighted sum of averages
# is the average of the weighted sum**. $M_c$ is an $h \times w$ map, one number per
# position, and the logit is its mean plus the bias:
#
# $$S_c - b_c = \mathrm{mean}_{ij}\, M_c(i, j).$$
#
# So $M_c(i, j)$ says how much position $(i, j)$ contributes to the score of class $c$.
# That map is the **class activation map** (CAM) of Zhou et al. (2016), lesson 05. We
# check the identity on the shipped model: the activations come from
# `minicam.cam.capture`, which runs the model and keeps a named layer's output.

# %%
model = minicam.models.lesson_cnn()
data = minicam.data.single_instance(rng, 16 if FAST else 64)
captured = minicam.cam.capture(model, data.images, "features.relu3")
A = captured.A                                    # (N, 32, 8, 8)
logits = captured.output                          # (N, 3): the model's own output
W = model.fc.weight.numpy()                       # (3, 32)
b = model.fc.bias.numpy()                         # (3,)
print(f"A {A.shape}, W {W.shape}, b {b.shape}, logits {logits.shape}")

# The head, by hand: GAP then Linear
pooled = A.mean(axis=(2, 3))                      # (N, 32)
assert relative_error(pooled @ W.T + b, logits) < 1e-12

# One map per class and image, M[n, c] = sum_k W[c, k] A[n, k]
M = np.einsum("ck,nkhw->nchw", W, A)              # (N, 3, 8, 8)
mean_of_maps = M.mean(axis=(2, 3))                # (N, 3)
error = relative_error(mean_of_maps, logits - b)
print(f"max |mean(M_c) - (S_c - b_c)| relative to max |S_c - b_c|: {error:.1e} (over {len(A)} images x 3 classes)")
assert error < 1e-12

# The map of the predicted class is exactly minicam's CAM
predicted = logits.argmax(axis=1)
cam_maps = minicam.cam.METHODS["cam"](model, data.images, "features.relu3")
assert relative_error(cam_maps, M[np.arange(len(A)), predicted]) < 1e-12
print("M of the predicted class == minicam.cam.METHODS['cam'] (the CAM of lesson 05)")

# %%
shown = 0
print(f"image {shown}, a {minicam.data.CLASSES[data.labels[shown]]}:")
print("class      mean of M_c    logit S_c    bias b_c    S_c - b_c")
for c, name in enumerate(minicam.data.CLASSES):
    print(f"{name:9s} {mean_of_maps[shown, c]:11.4f} {logits[shown, c]:12.4f} {b[c]:11.4f} {logits[shown, c] - b[c]:12.4f}")

# %% [markdown]
# ## 5. Figures
#
# First, the three poolings on one real feature map: a channel of `features.relu1` (the
# first ReLU, 32x32, before the network's own pooling), the one with the most contrast.

# %%
relu1 = minicam.cam.capture(model, data.images[shown:shown + 1], "features.relu1").A  # (1, 8, 32, 32)
channel = int(np.argmax(relu1[0].std(axis=(1, 2))))
feature_map = relu1[:, channel:channel + 1]                                          # (1, 1, 32, 32)
max_pooled = ops.max_pool2d(feature_map, kernel_size=2).numpy()
avg_pooled = ops.avg_pool2d(feature_map, kernel_size=2).numpy()
gap_value = ops.adaptive_avg_pool2d(feature_map, 1).numpy()
assert max_pooled.shape == avg_pooled.shape == (1, 1, 16, 16) and gap_value.shape == (1, 1, 1, 1)
assert np.all(max_pooled >= avg_pooled)  # a maximum is never below the mean of the same window

panels = [
    ("feature map (32x32)", feature_map),
    ("max_pool2d 2x2 (16x16)", max_pooled),
    ("avg_pool2d 2x2 (16x16)", avg_pooled),
    (f"GAP (1x1) = {gap_value.item():.3f}", gap_value),
]
fig = Figure(figsize=(16, 3.9), layout="constrained")
axes = fig.subplots(1, 5)
axes[0].imshow(minicam.viz.to_display_image(data.images[shown]), interpolation="nearest")
axes[0].set_title(f"input ({minicam.data.CLASSES[data.labels[shown]]})")
top = feature_map.max()
for ax, (title, values) in zip(axes[1:], panels):
    # extent: every panel covers the same 32x32 pixel square, so pooled cells line up with their windows
    shown_image = ax.imshow(values[0, 0], cmap="viridis", vmin=0, vmax=top, interpolation="nearest",
                            extent=(-0.5, 31.5, 31.5, -0.5))
    ax.set_title(title)
fig.colorbar(shown_image, ax=axes[1:].tolist(), shrink=0.85, label=f"activation (relu1, channel {channel})")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
print("saved", minicam.viz.save_figure(fig, "03_pooling"))

# %% [markdown]
# Second, the per-position class maps $M_c$ of one image, for the three classes, with
# the object's outline. Each map's mean is its class's logit minus the bias: the
# class whose map is most positive wins.

# %%
mask = data.union_masks()[shown]
fig = Figure(figsize=(15, 4.0), layout="constrained")
axes = fig.subplots(1, 4)
axes[0].imshow(minicam.viz.to_display_image(data.images[shown]), interpolation="nearest")
axes[0].set_title(f"input: a {minicam.data.CLASSES[data.labels[shown]]}, "
                  f"predicted {minicam.data.CLASSES[predicted[shown]]}")
limit = np.abs(M[shown]).max()
for c, ax in enumerate(axes[1:]):
    drawn = ax.imshow(M[shown, c], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest",
                      extent=(-0.5, 31.5, 31.5, -0.5))  # each of the 8x8 cells covers 4x4 input pixels
    ax.contour(mask.astype(float), levels=[0.5], colors="black", linewidths=1.2)
    ax.set_title(f"M_{minicam.data.CLASSES[c]}: mean {mean_of_maps[shown, c]:.2f}\n"
                 f"= logit {logits[shown, c]:.2f} - bias {b[c]:.2f}")
fig.colorbar(drawn, ax=axes[1:].tolist(), shrink=0.85, label="M_c(i, j) = sum_k W_ck A_k(i, j)")
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
print("saved", minicam.viz.save_figure(fig, "03_class_maps"))

# %% [markdown]
# ## Exercises
#
# 1. Predict, then check, the output and the gradient (for $g = 1$) of 2x2 max pooling
#    on `[[2, 2], [2, 2]]`, and on `[[1, 2], [2, 1]]`. What would a rule "split the
#    gradient equally between tied maxima" give instead? Is it also a valid choice?
# 2. Replace the network's GAP by global *max* pooling in the derivation of section 4.
#    Can the logit still be written as a function of one map $M_c$? What changes?
# 3. Show that average pooling 2x2 is a convolution with stride 2: which weight (shape
#    $(C, C, 2, 2)$) makes `ops.conv2d` equal `ops.avg_pool2d`?
# 4. For the shipped model, find the image of `data` whose logit for its true class is
#    largest, and the one where it is smallest. Draw both images' $M_c$ maps. Where is
#    the positive evidence, and where the negative?
# 5. Show numerically that $\sum_k W_{ck}\max_{ij} A_{kij} \ne \max_{ij} \sum_k W_{ck} A_{kij}$
#    for the shipped model, but that the same swap is exact for the mean.
#
# ## Instructor notes
#
# - **Expected output**: loops and ops identical for max pooling and identical or within
#   $10^{-16}$ for average pooling; the tie gradient is 1 at (0,1), (0,2), (2,0), (2,2); the tied
#   pixels' one-sided derivatives are 1 and 0 and the central difference is 0.5; the
#   identity mean$(M_c) = S_c - b_c$ holds to about $10^{-16}$ for every image and class.
# - **Misconception**: "max pooling's gradient is split among the maxima" or "goes to
#   every pixel of the window". It goes to one pixel, the first maximum; the others in
#   the window get zero. Ties are common after a ReLU (windows of zeros!), so the rule
#   matters for any implementation that wants to match PyTorch.
# - **Misconception**: "CAM is a heuristic". On a GAP -> Linear head it is an exact
#   decomposition of the logit (minus the bias) over positions. What is heuristic is
#   the step from "contributes to the average" to "is where the object is", and the
#   upsampling of an $8{\times}8$ map to the image size.
# - **Misconception**: "the map is an 8x8 picture of the 32x32 image". Each cell sees a
#   receptive field of 18x18 input pixels (lesson 00); neighbouring cells overlap.
# - **Discussion prompt**: the identity needs the bias to be left out and no ReLU. Why
#   does the CAM paper not apply a ReLU, and why do most implementations do so anyway?
#   (Negative evidence for the class is real; it is hidden for display.)
# - **Timing**: sections 1-2, 15 minutes (the tie example on the board); section 3, 5;
#   section 4, 15 (derive the swap of sums first); figures, 5. The script runs in a few
#   seconds.
