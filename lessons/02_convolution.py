# %% [markdown]
# # Lesson 02: Convolution, three ways, and its backward
#
# **Objectives**
# - Compute a 2-D convolution three ways (loops, unfold + matrix product, `minicam.ops.conv2d`)
#   and show that they agree to rounding; know the output-size formula.
# - Derive the backward of a convolution as matrix products:
#   $dW = G X^\top$ through unfold, $dx = \mathrm{fold}(W^\top G)$, and check it against
#   the autograd, finite differences and the three primitives of `minicam/ops/conv.py`.
# - See what hand-made kernels (edge detectors, a blur) extract from an image.
#
# **Prerequisites**: lesson 01 (autograd, the gradient of a copy is a sum).
#
# **Code you will read**
# - `minicam/reference.py`: `conv2d`, `unfold` (the loops: the definition)
# - `minicam/ops/im2col.py`: `UnfoldOp`, `FoldOp`, `window_view`, `fold_columns`, `conv_output_size`
# - `minicam/ops/conv.py`: `conv2d` and its primitives `Conv2dOp` (unfold -> matmul),
#   `ConvTranspose2dOp` and `ConvWeightOp` (the backward: each forward in a few lines of NumPy)
#
# **Time**: 45 minutes.

# %%
import os
import time

import numpy as np
from matplotlib.figure import Figure

import minicam
import minicam.data
import minicam.reference
import minicam.viz
from minicam import Tensor, ops

SEED = 2
FAST = os.environ.get("MINICAM_FAST") == "1"  # CI: a smaller timing example
rng = np.random.default_rng(SEED)


def relative_error(a, b):
    """max |a - b| / max |b|: the yardstick of every check below."""
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / np.abs(b).max()


# %% [markdown]
# ## 1. The definition
#
# A convolution layer with weight $w$ of shape $(K, C, k_h, k_w)$ and bias $b$ of shape
# $(K,)$ slides every one of its $K$ filters over the input $x$ of shape $(N, C, H, W)$:
#
# $$y[n, k, o_h, o_w] = b[k] + \sum_{c=0}^{C-1}\sum_{i=0}^{k_h-1}\sum_{j=0}^{k_w-1}
#   w[k, c, i, j]\; x_p[n, c,\ o_h s_h + i\, d_h,\ o_w s_w + j\, d_w],$$
#
# with $x_p$ the input padded with $p$ zeros on each side, $s$ the stride and $d$ the
# dilation (the gap between the kernel's taps). Deep-learning "convolution" does not
# flip the kernel: it is a cross-correlation, as in PyTorch.
#
# A hand check: with the kernel $\begin{pmatrix}1 & 0\\ 0 & -1\end{pmatrix}$ every output is
# a pixel minus its lower-right neighbour. On $x = $ `arange(16).reshape(4, 4)` that is
# $x_{r,c} - x_{r+1,c+1} = -5$ everywhere.

# %%
x_small = np.arange(16.0).reshape(1, 1, 4, 4)
w_small = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
print(x_small[0, 0])
y_small = minicam.reference.conv2d(x_small, w_small)
print("the loops give\n", y_small[0, 0])
assert np.array_equal(y_small, np.full((1, 1, 3, 3), -5.0))
assert np.array_equal(ops.conv2d(x_small, w_small).numpy(), y_small)

# %% [markdown]
# ## 2. The output size
#
# A window spans $d(k - 1) + 1$ pixels; it fits at $\lfloor (H + 2p - d(k-1) - 1)/s \rfloor + 1$
# positions along an axis of the padded input:
#
# $$O_H = \left\lfloor \frac{H + 2p_h - d_h(k_h - 1) - 1}{s_h} \right\rfloor + 1 .$$
#
# "Same" padding for stride 1 and odd $k$ is $p = d(k-1)/2$, which gives $O_H = H$.
# Below, the formula against the shapes that the loops and `ops.conv2d` actually return.

# %%
print("  H  k  s  p  d   formula  loops  ops.conv2d")
for H, k, s, p, d in [(32, 3, 1, 1, 1), (32, 3, 2, 1, 1), (9, 3, 2, 0, 1), (10, 3, 1, 2, 2), (7, 5, 3, 2, 1), (8, 2, 2, 0, 1)]:
    formula = (H + 2 * p - d * (k - 1) - 1) // s + 1
    x_probe = np.zeros((1, 1, H, H))
    w_probe = np.zeros((1, 1, k, k))
    from_loops = minicam.reference.conv2d(x_probe, w_probe, stride=s, padding=p, dilation=d).shape[2]
    from_ops = ops.conv2d(x_probe, w_probe, stride=s, padding=p, dilation=d).shape[2]
    print(f"{H:3d} {k:2d} {s:2d} {p:2d} {d:2d}   {formula:7d} {from_loops:6d} {from_ops:11d}")
    assert formula == from_loops == from_ops == ops.conv_output_size(H, k, s, p, d)

# %% [markdown]
# ## 3. Three ways to compute it
#
# **Loops** (`minicam.reference.conv2d`): six nested loops, the formula above verbatim.
#
# **Unfold + matrix product** ("im2col"). Copy every window of the padded input into a
# column: `unfold` gives $X$ of shape $(N,\ C k_h k_w,\ L)$ with $L = O_H O_W$ windows,
# the rows ordered channel first, then kernel row $i$, then column $j$. Then the sum
# over $(c, i, j)$ is a matrix product with the flattened weight $W_m$ of shape
# $(K,\ C k_h k_w)$:
#
# $$Y_n = W_m X_n + b\,\mathbf 1^\top \quad (K \times L), \qquad y = Y \text{ reshaped to } (N, K, O_H, O_W).$$
#
# All the work is one big matrix product, which NumPy (BLAS) does fast.
#
# **`minicam.ops.conv2d`** computes that same product in one primitive, `Conv2dOp`
# (`minicam/ops/conv.py`): its forward is an einsum of the weight with a *view* of the
# windows of the padded input (`window_view`: unfold without the copy),
# `np.einsum("nchwij,kcij->nkhw", windows, w)`. By default a tuned version of the same sums
# runs (the fast wing, `minicam/ops/fast/`); inside `with ops.reading_room():` the lines you
# read in `conv.py` run instead. The two agree to rounding.
#
# First, what unfold does on a tiny example: column $l$ is window $l$, flattened.

# %%
tiny = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
tiny_columns = ops.unfold(tiny, kernel_size=2).numpy()
print("input\n", tiny[0, 0], "\ncolumns of unfold(kernel_size=2): one 2x2 window each\n", tiny_columns[0])
assert np.array_equal(tiny_columns[0][:, 0], tiny[0, 0, :2, :2].ravel())  # window 0 is the top-left 2x2 block

# %%
N, C, H, W, K = 2, 3, 9, 8, 4
x = rng.standard_normal((N, C, H, W))
CONFIGURATIONS = [
    dict(kernel=(3, 3), stride=1, padding=1, dilation=1),
    dict(kernel=(3, 3), stride=2, padding=1, dilation=1),
    dict(kernel=(3, 2), stride=(2, 1), padding=(0, 1), dilation=(2, 1)),
]
for config in CONFIGURATIONS:
    kh, kw = config["kernel"]
    geometry = dict(stride=config["stride"], padding=config["padding"], dilation=config["dilation"])
    w = rng.standard_normal((K, C, kh, kw))
    b = rng.standard_normal(K)

    y_loops = minicam.reference.conv2d(x, w, b, **geometry)

    columns = ops.unfold(x, (kh, kw), **geometry).numpy()       # (N, C*kh*kw, L)
    assert np.array_equal(columns, minicam.reference.unfold(x, (kh, kw), **geometry))
    flat_weight = w.reshape(K, C * kh * kw)                      # (K, C*kh*kw)
    Y = flat_weight @ columns + b[:, None]                       # (N, K, L): one product per image
    y_unfold = Y.reshape(N, K, *y_loops.shape[2:])

    y_ops = ops.conv2d(x, w, b, **geometry).numpy()
    with ops.reading_room():                                     # the forward written in ops/conv.py
        y_read = ops.conv2d(x, w, b, **geometry).numpy()

    errors = relative_error(y_unfold, y_loops), relative_error(y_ops, y_loops), relative_error(y_read, y_loops)
    print(f"kernel {config['kernel']}, {geometry}: output {y_loops.shape}, unfold {columns.shape}; "
          f"relative differences to the loops: unfold+matmul {errors[0]:.1e}, ops.conv2d {errors[1]:.1e}, "
          f"in the reading room {errors[2]:.1e}")
    assert max(errors) < 1e-12

# %% [markdown]
# How much faster is the matrix product than the loops? (On a batch of 32x32 RGB images,
# 8 filters of 3x3: the first layer of the lesson network.)

# %%
timing_images = 1 if FAST else 4
x_time = rng.standard_normal((timing_images, 3, 32, 32))
w_time = rng.standard_normal((8, 3, 3, 3))
start = time.perf_counter()
y_time_loops = minicam.reference.conv2d(x_time, w_time, padding=1)
seconds_loops = time.perf_counter() - start
start = time.perf_counter()
y_time_ops = ops.conv2d(x_time, w_time, padding=1).numpy()
seconds_ops = time.perf_counter() - start
assert relative_error(y_time_ops, y_time_loops) < 1e-12
print(f"{timing_images} image(s): loops {seconds_loops * 1e3:.0f} ms, ops.conv2d {seconds_ops * 1e3:.2f} ms "
      f"({seconds_loops / seconds_ops:.0f} times faster)")

# %% [markdown]
# ## 4. The backward
#
# Let $G = \partial L / \partial y$ be the gradient arriving from above, reshaped to
# $(N, K, L)$. Since $Y_n = W_m X_n + b \mathbf 1^\top$ is a matrix product, its VJP is the
# matrix calculus you know from a Linear layer:
#
# $$\frac{\partial L}{\partial W_m} = \sum_n G_n X_n^\top, \qquad
#   \frac{\partial L}{\partial X_n} = W_m^\top G_n, \qquad
#   \frac{\partial L}{\partial b_k} = \sum_{n, l} G_{n,k,l}.$$
#
# The weight gradient is summed over images (the weight is shared: lesson 01's "used
# many times, gets the sum") and, hidden in the product, over the $L$ window positions.
#
# $\partial L/\partial X$ is a gradient for the *columns*. A pixel was copied into every
# window that covers it, so its gradient is the sum over those copies: that sum is
# `fold` (col2im), which adds every column back into its window. `fold` is the adjoint
# (transpose) of `unfold`:
#
# $$\langle \mathrm{unfold}(x),\ Z \rangle = \langle x,\ \mathrm{fold}(Z) \rangle \quad\text{for all } x, Z,
#   \qquad\text{so}\qquad \frac{\partial L}{\partial x} = \mathrm{fold}\!\left(W_m^\top G\right).$$
#
# We check the autograd's gradients (a) against finite differences, one coordinate at
# a time, (b) against these closed forms, and (c) against a convolution built by hand
# from differentiable ops.

# %%
kh, kw = 3, 3
geometry = dict(stride=2, padding=1, dilation=1)
x_leaf = Tensor(rng.standard_normal((N, C, H, W)), requires_grad=True)
w_leaf = Tensor(rng.standard_normal((K, C, kh, kw)), requires_grad=True)
b_leaf = Tensor(rng.standard_normal(K), requires_grad=True)
y = ops.conv2d(x_leaf, w_leaf, b_leaf, **geometry)
G = rng.standard_normal(y.shape)                      # the upstream gradient
loss = (Tensor(G) * y).sum()                          # L = <G, y>, so dL/dy = G
dx, dw, db = minicam.grad(loss, [x_leaf, w_leaf, b_leaf])
print(f"y {y.shape}; dx {dx.shape}, dw {dw.shape}, db {db.shape}")


# (a) finite differences: nudge one entry at a time, in both directions
def loss_value(x_array, w_array, b_array):
    with minicam.no_grad():
        return float(np.sum(G * ops.conv2d(x_array, w_array, b_array, **geometry).numpy()))


def finite_difference_gradient(arrays, which, h=1e-6):
    gradient = np.zeros_like(arrays[which])
    for position in np.ndindex(gradient.shape):
        plus = [a.copy() for a in arrays]
        minus = [a.copy() for a in arrays]
        plus[which][position] += h
        minus[which][position] -= h
        gradient[position] = (loss_value(*plus) - loss_value(*minus)) / (2 * h)
    return gradient


arrays = [x_leaf.numpy(), w_leaf.numpy(), b_leaf.numpy()]
for which, (name, autograd_gradient) in enumerate([("x", dx), ("w", dw), ("b", db)]):
    numeric = finite_difference_gradient(arrays, which)
    error = relative_error(autograd_gradient.numpy(), numeric)
    print(f"d L/d{name}: {numeric.size:4d} finite differences, relative difference to the autograd {error:.1e}")
    assert error < 1e-8

# %%
# (b) the closed forms, through unfold and fold
columns = ops.unfold(x_leaf.numpy(), (kh, kw), **geometry).numpy()   # X: (N, C*kh*kw, L)
G_flat = G.reshape(N, K, -1)                                          # G: (N, K, L)
flat_weight = w_leaf.numpy().reshape(K, -1)                           # W_m: (K, C*kh*kw)

dw_closed = np.einsum("nkl,nml->km", G_flat, columns).reshape(w_leaf.shape)  # sum_n G_n X_n^T
dx_columns = flat_weight.T @ G_flat                                          # W_m^T G_n: (N, C*kh*kw, L)
dx_closed = ops.fold(dx_columns, output_size=(H, W), kernel_size=(kh, kw), **geometry).numpy()
db_closed = G.sum(axis=(0, 2, 3))

for name, closed, autograd_gradient in [("x", dx_closed, dx), ("w", dw_closed, dw), ("b", db_closed, db)]:
    error = relative_error(autograd_gradient.numpy(), closed)
    print(f"d L/d{name}: closed form vs autograd, relative difference {error:.1e}")
    assert error < 1e-12

# fold is the adjoint of unfold: <unfold(x), Z> = <x, fold(Z)>
Z = rng.standard_normal(columns.shape)
left = np.sum(columns * Z)
right = np.sum(x_leaf.numpy() * ops.fold(Z, (H, W), (kh, kw), **geometry).numpy())
print(f"<unfold(x), Z> = {left:.12f}   <x, fold(Z)> = {right:.12f}")
assert abs(left - right) < 1e-12 * np.linalg.norm(columns) * np.linalg.norm(Z)

# %% [markdown]
# These closed forms are minicam's backward. `Conv2dOp.backward` (in `minicam/ops/conv.py`)
# returns two more primitives: `ConvTranspose2dOp(g, w)`, whose forward is
# $\mathrm{fold}(W_m^\top G)$ with the padding cropped off, and `ConvWeightOp(x, g)`, whose
# forward is $\sum_n G_n X_n^\top$. Each of the three is the others' adjoint, so each one's
# backward is the other two, and second derivatives come out exact.
#
# (c) A last check: build the convolution by hand from differentiable ops, pad -> unfold ->
# matmul -> reshape, and let the autograd find its gradients through `fold` (unfold's
# backward) and the matrix products. They equal the primitives' gradients, and so do the
# second derivatives (here: of $\langle dW, V\rangle$ with respect to $x$).

# %%
def conv2d_composite(x, w, b, stride, padding, dilation):
    """conv2d as pad -> unfold -> matmul -> reshape (+ bias), each step a differentiable op."""
    (N, C, H, W), (K, _, kh, kw) = x.shape, w.shape
    (sh, sw), (dh, dw) = ops.as_pair(stride, "stride", "conv2d", 1), ops.as_pair(dilation, "dilation", "conv2d", 1)
    (ph, pw) = ops.as_pair(padding, "padding", "conv2d", 0)                           # ints or (h, w) pairs
    columns = ops.unfold(ops.pad(x, (pw, pw, ph, ph)), (kh, kw), dilation=(dh, dw), stride=(sh, sw))  # (N, C*kh*kw, L)
    Y = ops.matmul(w.reshape(K, C * kh * kw), columns) + b.reshape(1, K, 1)                          # (N, K, L)
    return Y.reshape(N, K, ops.conv_output_size(H, kh, sh, ph, dh), ops.conv_output_size(W, kw, sw, pw, dw))


y_composite = conv2d_composite(x_leaf, w_leaf, b_leaf, **geometry)
assert relative_error(y_composite.numpy(), y.numpy()) < 1e-12
V = rng.standard_normal(w_leaf.shape)
second = {}
for name, output in [("ops.conv2d", y), ("composite", y_composite)]:
    grads = minicam.grad((Tensor(G) * output).sum(), [x_leaf, w_leaf, b_leaf], create_graph=True)
    (second[name],) = minicam.grad((grads[1] * Tensor(V)).sum(), x_leaf)    # d<dW, V>/dx
    for label, mine, closed in zip("xwb", grads, (dx_closed, dw_closed, db_closed)):
        assert relative_error(mine.numpy(), closed) < 1e-12, (name, label)
error = relative_error(second["composite"].numpy(), second["ops.conv2d"].numpy())
print(f"the composite's gradients equal the primitives'; second derivatives: relative difference {error:.1e}")
assert error < 1e-12

# %% [markdown]
# For stride 1 there is a second way to see $dx$: every output pixel spreads its gradient
# back over the window it came from, with the kernel's weights, so $dx$ is a convolution
# of $G$ with the kernel **flipped** in both axes and its $K$ and $C$ axes swapped, padded
# by $k - 1 - p$ (a "full" convolution, often called a transposed convolution).

# %%
stride_one = dict(stride=1, padding=1, dilation=1)
y1 = ops.conv2d(x_leaf, w_leaf, **stride_one)
G1 = rng.standard_normal(y1.shape)
(dx1,) = minicam.grad((Tensor(G1) * y1).sum(), x_leaf)
flipped = w_leaf.numpy().transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]    # (C, K, kh, kw), rotated by 180 degrees
dx1_as_convolution = ops.conv2d(G1, np.ascontiguousarray(flipped), padding=kh - 1 - stride_one["padding"]).numpy()
error = relative_error(dx1.numpy(), dx1_as_convolution)
print(f"stride 1: dx from the autograd vs conv2d(G, flipped kernel): relative difference {error:.1e}")
assert error < 1e-12

# %% [markdown]
# ## 5. What a filter detects
#
# A trained network learns its kernels, but hand-made ones show what a kernel *can* do.
# A Sobel kernel is a smoothed difference: it responds to a change of brightness across
# the image (a vertical edge for the horizontal difference), with a sign that says dark
# -> bright or bright -> dark. The Laplacian responds to any edge, and the box filter
# averages (a blur). We apply them with padding 1, so each feature map has the image's
# size, to the grey version (mean over R, G, B) of a synthetic image.

# %%
image = minicam.data.single_instance(rng, 1, size=64, radius=(14.0, 20.0)).images[0]  # (3, 64, 64)
grey = image.mean(axis=0)[None, None]                                                 # (1, 1, 64, 64)
kernels = {
    "Sobel x (vertical edges)": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "Sobel y (horizontal edges)": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "Laplacian (all edges)": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "box blur": [[1 / 9] * 3] * 3,
}
weight = np.array(list(kernels.values()), dtype=np.float64)[:, None]                  # (4, 1, 3, 3)
feature_maps = ops.conv2d(grey, weight, padding=1).numpy()[0]                         # (4, 64, 64)
assert feature_maps.shape == (4, 64, 64)

# The Sobel x map is the horizontal difference of the vertically smoothed image:
smoothed = np.pad(grey[0, 0], 1)
smoothed = smoothed[:-2] + 2 * smoothed[1:-1] + smoothed[2:]                         # rows: [1, 2, 1]
sobel_x_by_slicing = smoothed[:, 2:] - smoothed[:, :-2]                              # columns: [-1, 0, 1]
assert relative_error(feature_maps[0], sobel_x_by_slicing) < 1e-12

# %%
fig = Figure(figsize=(15, 6.4), layout="constrained")
axes = fig.subplots(2, 5)
axes[0, 0].imshow(minicam.viz.to_display_image(image), interpolation="nearest")
axes[0, 0].set_title("input image")
axes[1, 0].imshow(grey[0, 0], cmap="gray", interpolation="nearest")
axes[1, 0].set_title("grey input x")
for column, (name, kernel) in enumerate(kernels.items(), start=1):
    kernel = np.array(kernel)
    limit = np.abs(kernel).max()
    axes[0, column].imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit)
    for (i, j), value in np.ndenumerate(kernel):
        colour = "white" if abs(value) > 0.6 * limit else "black"  # readable on dark cells
        axes[0, column].text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=12, color=colour)
    axes[0, column].set_title(name)
    limit = np.abs(feature_maps[column - 1]).max()
    shown = axes[1, column].imshow(feature_maps[column - 1], cmap="RdBu_r", vmin=-limit, vmax=limit,
                                   interpolation="nearest")
    fig.colorbar(shown, ax=axes[1, column], shrink=0.8)
    axes[1, column].set_title("feature map")
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("conv2d(x, kernel, padding=1): hand-made 3x3 kernels (top) and their feature maps (bottom; red > 0 > blue)")
print("saved", minicam.viz.save_figure(fig, "02_kernels_and_feature_maps"))

# %% [markdown]
# ## Exercises
#
# 1. Compute by hand the output of `conv2d` for the 3x3 input `arange(1, 10)` and the
#    kernel `[[1, 1], [1, 1]]` with padding 1 (a 4x4 output). Check with
#    `minicam.reference.conv2d`.
# 2. How many multiplications does a 3x3 convolution from 16 to 32 channels do on a
#    batch of 64 images of 8x8 (padding 1)? How many numbers does unfold copy? Which is
#    larger, and what does that say about where the time goes?
# 3. Write `dx` for stride 2 as a convolution too: insert zeros between the rows and
#    columns of $G$ ("dilate" $G$), then convolve with the flipped kernel. Check it
#    against `minicam.grad`.
# 4. Verify $\langle \mathrm{unfold}(x), Z\rangle = \langle x, \mathrm{fold}(Z)\rangle$
#    with padding 2 and dilation 2. Why must fold *crop* the padding at the end?
# 5. Print the first convolution's weights of the shipped model
#    (`minicam.models.lesson_cnn().features.conv1.weight`). Do some of the 8 filters look
#    like colour detectors or edge detectors? Apply them to an image and show the maps.
#
# ## Instructor notes
#
# - **Expected output**: the hand example gives -5 everywhere; the output-size table
#   agrees on every row; unfold+matmul and `ops.conv2d` match the loops to about
#   $10^{-16}$; finite differences agree with the autograd to a few $10^{-10}$ (the loss
#   is linear in each argument, so only rounding, about $10^{-16}/h$, remains); the
#   closed forms agree to about $10^{-16}$, and so do the hand-built composite's first and
#   second derivatives; the matrix version is 100 to 600 times
#   faster than the loops (measured here; it depends on the machine and its load).
# - **In the figure**: the frame along the borders of the Sobel and Laplacian maps is
#   the zero padding: at the border the kernel sees a step from the image to zeros.
#   Ask students to predict which borders light up for which kernel.
# - **Misconception**: "a CNN convolution flips the kernel". It does not (it is a
#   cross-correlation); the flip appears in the *backward* for the input (section 4),
#   which is why the backward of a convolution is a "transposed convolution".
# - **Misconception**: "the weight gradient is the gradient at one position". The kernel
#   is shared by all positions and images, so its gradient sums over all of them. This
#   is the same rule as the bias of lesson 01, section 3.
# - **Misconception**: confusing the order of unfold's rows. It is channel first, then
#   kernel row, then kernel column, matching `w.reshape(K, -1)`; a transposed order
#   still gives a plausible-looking but wrong output, which is why the loops exist.
# - **Discussion prompt**: unfold copies each pixel up to $k_h k_w$ times. Why is
#   im2col still the standard way to implement convolution on CPUs? (One large matrix
#   product uses the cache and vector units well; the copy is cheap by comparison.)
# - **Timing**: sections 1-2, 10 minutes; section 3, 10; section 4, 20 (derive the
#   closed forms on the board first); section 5, 5. The script runs in a few seconds.
