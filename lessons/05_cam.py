# %% [markdown]
# # Lesson 05: Class activation mapping (CAM)
#
# **Objectives**
# - Derive CAM (Zhou et al. 2016) from a global-average-pooling head, and compute it by
#   hand from a layer's activations and the Linear layer's weights.
# - Read the CAM of every class of one image, and see what upsampling and per-image
#   normalisation add to the raw map, and what they hide.
# - Measure whether the maps point at the objects (the pointing game), against a baseline.
#
# **Prerequisites**: lesson 03 (pooling: a GAP -> Linear head averages one map), lesson 04
# (the trained model and its one-vs-rest loss).
#
# **Code you will read**
# - `minicam/cam/cam.py`: `cam_map` (the formula), `cam`, `final_linear`
# - `minicam/cam/capture.py`: `capture`, `Capture`, `predict`; `minicam/cam/maps.py`: `weighted_sum`
# - `minicam/cam/explain.py`: `explain`; `minicam/cam/conventions.py`: `postprocess`,
#   `resize_maps`, `normalize_maps`; `minicam/ops/resize.py`: `interpolation_matrix`
# - `minicam/metrics/localisation.py`: `peak_locations`, `pointing_game`
#
# **Time**: 45 minutes.

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
import minicam.viz
from minicam import Tensor, ops
from minicam.cam.capture import predict

SEED = 0
FAST = os.environ.get("MINICAM_FAST") == "1"  # CI: fewer images in the pointing game
rng = np.random.default_rng(SEED)

LAYER = "features.relu3"  # the last convolution's ReLU: right before global average pooling
POINTING_IMAGES = 120 if FAST else 300
CLASSES = minicam.data.CLASSES

model = minicam.models.lesson_cnn()  # the shipped weights, float64, eval mode
data = minicam.data.single_instance(rng, POINTING_IMAGES)
print(f"{len(data)} test images, class counts {np.bincount(data.labels, minlength=3)} {CLASSES}")

# %% [markdown]
# ## 1. From the class score to the class map
#
# Let $A \in \mathbb{R}^{K\times h\times w}$ be the output of `features.relu3` for one
# image ($K = 32$ maps of $8{\times}8$). The head is global average pooling, then a Linear
# layer with weights $W \in \mathbb{R}^{C\times K}$ and bias $b$:
#
# $$S_c = \sum_k W_{ck}\,\underbrace{\frac{1}{hw}\sum_{ij} A_{kij}}_{\mathrm{GAP}(A_k)} + b_c .$$
#
# Both sums are finite, so they can be swapped:
#
# $$S_c = \frac{1}{hw}\sum_{ij}\underbrace{\sum_k W_{ck} A_{kij}}_{M_c(i,j)} + b_c ,
# \qquad M_c = \sum_k W_{ck} A_k .$$
#
# $M_c$ is the **class activation map** (Zhou et al. 2016, eq. 2): the same weighted sum
# that makes the score, done at every position instead of after averaging. Its mean is the
# score without the bias, $\frac{1}{hw}\sum_{ij} M_c(i,j) = S_c - b_c$: the map says how
# the score is spread over the positions. There is no ReLU and no bias in the paper's map.
#
# We take $A$ from `minicam.cam.capture` (a forward hook keeps the layer's output) and $W$,
# $b$ from the model's `fc` layer, and compute everything with plain NumPy.

# %%
x = data.images[:8]
captured = minicam.cam.capture(model, x, LAYER)  # the predicted class, by default
A = captured.A                                    # (N, K, h, w)
W, b = model.fc.weight.data, model.fc.bias.data   # (C, K), (C,)
N, K, h, w = A.shape
print(f"A {A.shape}, W {W.shape}, b {b.shape}; each position of A covers {32 // h} x {32 // w} input pixels")

# the score, by hand: GAP, then the Linear layer
gap = A.mean(axis=(2, 3))                          # (N, K)
S = gap @ W.T + b                                  # (N, C)
logits = predict(model, x)
print(f"max |S by hand - model output| = {np.abs(S - logits).max():.1e}")
assert np.allclose(S, logits, rtol=1e-12, atol=1e-12)
assert np.allclose(captured.scores.data, logits[np.arange(N), captured.classes], rtol=1e-12, atol=1e-12)

# the class activation maps of every class, by hand: M[n, c] = sum_k W[c, k] A[n, k]
M = np.einsum("ck,nkij->ncij", W, A)               # (N, C, h, w)

# the same sum as a loop over channels, for one image and one class: a weighted sum of maps
c0 = captured.classes[0]
M_loop = np.zeros((h, w))
for k in range(K):
    M_loop += W[c0, k] * A[0, k]
assert np.allclose(M_loop, M[0, c0], rtol=1e-12, atol=1e-12)

# ... and minicam's CAM, which reads the same weights through hooks, for the predicted class
library = minicam.cam.METHODS["cam"](model, x, LAYER)          # (N, h, w)
difference = np.abs(library - M[np.arange(N), captured.classes]).max()
print(f"max |M by hand - METHODS['cam']| = {difference:.1e}")
assert difference < 1e-12 * np.abs(M).max()

# the identity mean(M_c) = S_c - b_c, for every image and every class
identity_error = np.abs(M.mean(axis=(2, 3)) - (S - b)).max()
print(f"max |mean_ij M_c - (S_c - b_c)| over {N} images x {len(CLASSES)} classes = {identity_error:.1e}")
assert identity_error < 1e-12

# %% [markdown]
# The map is a sum of $K$ feature maps, each scaled by its class weight. A few channels
# carry most of the score: we rank them by their contribution $W_{ck}\,\mathrm{GAP}(A_k)$
# to $S_c$ and draw the largest ones next to their sum.

# %%
contributions = W[c0] * gap[0]                     # (K,): they add up to S_c - b_c
order = np.argsort(-np.abs(contributions))
top = order[:5]
assert np.isclose(contributions.sum(), S[0, c0] - b[c0], rtol=1e-12, atol=1e-12)
print(f"image 0 ({CLASSES[data.labels[0]]}), class {CLASSES[c0]}: S = {S[0, c0]:.3f}, b = {b[c0]:.3f}")
for k in top:
    print(f"  channel {k:2d}: W = {W[c0, k]:+.3f}, GAP(A_k) = {gap[0, k]:.3f}, contribution {contributions[k]:+.3f}")
print(f"  the top {len(top)} of {K} channels give {contributions[top].sum():+.3f} of {contributions.sum():+.3f}")

fig = Figure(figsize=(16, 3.4), layout="constrained")
axes = fig.subplots(1, len(top) + 2)
axes[0].imshow(minicam.viz.to_display_image(x[0]), interpolation="nearest")
axes[0].set_title(f"input ({CLASSES[data.labels[0]]})")
for ax, k in zip(axes[1:], top):
    limit = np.abs(A[0, k]).max()
    image = ax.imshow(A[0, k], cmap="viridis", vmin=0, vmax=max(limit, 1e-12), interpolation="nearest")
    ax.set_title(f"$A_{{{k}}}$\n$W_{{c{k}}}$ = {W[c0, k]:+.2f}", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
limit = np.abs(M[0, c0]).max()
image = axes[-1].imshow(M[0, c0], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
axes[-1].set_title(f"$M_c$ = sum over\nall {K} channels", fontsize=10)
fig.colorbar(image, ax=axes[-1], shrink=0.8)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(f"CAM of class '{CLASSES[c0]}' as a weighted sum of feature maps (8x8, before upsampling)")
print(f"saved {minicam.viz.save_figure(fig, '05_cam_weighted_sum')}")

# %% [markdown]
# ## 2. The map of every class of one image
#
# Nothing stops us from computing $M_c$ for a class that is *not* in the image. Its mean
# is still $S_c - b_c$, now a low (negative) score, and the map shows where the evidence
# *against* that class sits: often the object of another class pulls it down. We measure
# this on all test images: the mean of the upsampled map inside the object and outside
# it, for the class that is present and for the two that are not, and the share of
# images where the inside is higher than the outside.

# %%
masks = data.union_masks()                                   # (N, H, W) bool: where the object is
raw_all = {c: minicam.cam.METHODS["cam"](model, data.images, LAYER, target=c) for c in range(3)}
print("class      present?  images   mean of the map: inside / outside / whole   share with inside > outside")
table = {}
for c in range(3):
    upsampled = minicam.cam.conventions.resize_maps(raw_all[c], (32, 32))
    inside = (upsampled * masks).sum(axis=(1, 2)) / masks.sum(axis=(1, 2))
    outside = (upsampled * ~masks).sum(axis=(1, 2)) / (~masks).sum(axis=(1, 2))
    whole = raw_all[c].mean(axis=(1, 2))                     # = S_c - b_c
    for present in (True, False):
        chosen = (data.labels == c) == present
        row = (inside[chosen].mean(), outside[chosen].mean(), whole[chosen].mean(), np.mean(inside[chosen] > outside[chosen]))
        table[c, present] = row
        print(f"{CLASSES[c]:9s}  {'yes' if present else 'no ':8s}  {chosen.sum():6d}   "
              f"{row[0]:+8.2f} / {row[1]:+7.2f} / {row[2]:+6.2f}{'':18s}{row[3]:.2f}")
for c in range(3):
    inside_present, outside_present, _, share_present = table[c, True]
    inside_absent, _, whole_absent, share_absent = table[c, False]
    assert inside_present > outside_present + 5     # a class's map is high on its own object
    assert whole_absent < 0 and inside_absent < 0   # an absent class: a negative score, and a negative map on the object
    assert share_present > share_absent

# %% [markdown]
# `explain` turns each raw $8{\times}8$ map into a $32{\times}32$ map in $[0, 1]$: bilinear
# upsampling, then per-image min-max scaling. The scaling erases the sign and the size of
# the map: the map of an absent class also spans $[0, 1]$, and its brightest spot is
# only the place where the evidence against the class is *weakest*. The figure shows both:
# raw maps on one shared signed scale (top), normalised overlays (bottom).

# %%
example = int(np.flatnonzero(data.labels == 2)[0])  # an image of a triangle
example_logits = predict(model, data.images[example : example + 1])[0]
print(f"image {example} ({CLASSES[data.labels[example]]}): logits "
      + ", ".join(f"{CLASSES[c]} {example_logits[c]:+.2f}" for c in range(3)))
normalised_all = {c: minicam.cam.explain(model, data.images[example : example + 1], "cam", LAYER, target=c)[0]
                  for c in range(3)}
for c in range(3):
    raw = raw_all[c][example]
    print(f"  M_{CLASSES[c]:9s} raw values in [{raw.min():+7.2f}, {raw.max():+7.2f}], mean {raw.mean():+6.2f} "
          f"= S - b = {example_logits[c] - b[c]:+6.2f}; normalised to [{normalised_all[c].min():.0f}, "
          f"{normalised_all[c].max():.0f}]")
    assert np.isclose(raw.mean(), example_logits[c] - b[c], rtol=1e-12, atol=1e-12)

fig = Figure(figsize=(11.5, 5.6), layout="constrained")
axes = fig.subplots(2, 4)
limit = max(np.abs(raw_all[c][example]).max() for c in range(3))
for row in range(2):
    axes[row, 0].imshow(minicam.viz.to_display_image(data.images[example]), interpolation="nearest")
    axes[row, 0].contour(masks[example].astype(float), levels=[0.5], colors="magenta", linewidths=1.2)
    axes[row, 0].set_title("input (magenta: object)")
for c in range(3):
    axes[0, c + 1].imshow(raw_all[c][example], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    axes[0, c + 1].set_title(f"raw $M_{{{CLASSES[c]}}}$, mean {raw_all[c][example].mean():+.1f}")
    minicam.viz.overlay(axes[1, c + 1], data.images[example], normalised_all[c], colorbar=False,
                        title=f"explain(): {CLASSES[c]}")
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(ScalarMappable(Normalize(-limit, limit), "RdBu_r"), ax=axes[0, :].tolist(), label="raw CAM (8x8)")
fig.colorbar(ScalarMappable(Normalize(0, 1), "jet"), ax=axes[1, :].tolist(), label="normalised map")
fig.suptitle(f"CAM of every class for one image of a {CLASSES[data.labels[example]]}")
print(f"saved {minicam.viz.save_figure(fig, '05_cam_all_classes')}")

# %% [markdown]
# ## 3. Upsampling and normalisation, by hand
#
# minicam's pipeline after the raw map (`minicam/cam/conventions.py`, preset "minicam"):
#
# 1. no ReLU for CAM (its paper has none; `explain(..., relu="always")` adds one);
# 2. bilinear upsampling with **half-pixel centres** (torch `align_corners=False`, OpenCV
#    `INTER_LINEAR`): output pixel $i$ of $H$ reads the input at
#    $y = (i + \tfrac12)\,\tfrac{h}{H} - \tfrac12$, clamped at 0, and mixes rows
#    $\lfloor y\rfloor$ and $\lfloor y\rfloor + 1$ (the last row repeats at the border);
#    the same along columns;
# 3. per-image min-max, $(m - \min m)/(\max m - \min m)$.
#
# We write the upsampling as loops, check it against `minicam.ops.interpolate`, and check
# the whole chain against `explain`.

# %%
def bilinear_half_pixel(small, out_h, out_w):
    """(h, w) -> (out_h, out_w), the loop version of torch's bilinear, align_corners=False."""
    in_h, in_w = small.shape
    out = np.empty((out_h, out_w))
    for i in range(out_h):
        y = max((i + 0.5) * in_h / out_h - 0.5, 0.0)
        y0 = int(y)
        y1, ty = min(y0 + 1, in_h - 1), y - y0
        for j in range(out_w):
            xx = max((j + 0.5) * in_w / out_w - 0.5, 0.0)
            x0 = int(xx)
            x1, tx = min(x0 + 1, in_w - 1), xx - x0
            top = (1 - tx) * small[y0, x0] + tx * small[y0, x1]
            bottom = (1 - tx) * small[y1, x0] + tx * small[y1, x1]
            out[i, j] = (1 - ty) * top + ty * bottom
    return out


raw_predicted = library                                   # (N, 8, 8): CAM of the predicted class
by_hand = np.stack([bilinear_half_pixel(m, 32, 32) for m in raw_predicted])
by_ops = ops.interpolate(Tensor(raw_predicted[:, None]), size=(32, 32), mode="bilinear", align_corners=False).data[:, 0]
print(f"max |loop bilinear - ops.interpolate| = {np.abs(by_hand - by_ops).max():.1e}")
assert np.allclose(by_hand, by_ops, rtol=1e-12, atol=1e-12)

low = by_hand.min(axis=(1, 2), keepdims=True)
high = by_hand.max(axis=(1, 2), keepdims=True)
normalised_by_hand = (by_hand - low) / (high - low)
explained = minicam.cam.explain(model, x, "cam", LAYER)
print(f"max |min-max(bilinear(M)) - explain(model, x, 'cam', ...)| = {np.abs(normalised_by_hand - explained).max():.1e}")
assert np.allclose(normalised_by_hand, explained, rtol=1e-12, atol=1e-12)

# the choice of grid is a convention that changes the numbers: the corner-aligned grid
corners = minicam.cam.explain(model, x, "cam", LAYER, interpolation="bilinear-corners")
print(f"half-pixel vs corner-aligned grid: the normalised maps differ by up to {np.abs(corners - explained).max():.2f}")

# %% [markdown]
# Half-pixel centres keep the map where the feature map was: position $(i, j)$ of the
# $8{\times}8$ map is the centre of the input block $4i \dots 4i+3$, and its value lands
# there. The corner-aligned grid stretches the $8{\times}8$ map so its corner *values*
# land on the corner *pixels*, which shifts everything by up to a pixel and a half.
# Libraries disagree on this (see `minicam.cam.PRESETS`).
#
# ## 4. The pointing game, by hand
#
# Does the map point at the object? The pointing game (Zhang et al. 2016) asks, for each
# image: is the map's maximum on the object? The share of hits over a data set is the
# score. We explain the **true** class of each image, take the peak of the normalised
# $32{\times}32$ map (the first maximum in row-major order if several tie) and look it up
# in the object's mask.
#
# A score means little without a baseline. Here the objects are large (about 12% of
# the image) and often near the centre, so a map that ignores the image and always points
# at the centre pixel also scores. We report both.

# %%
maps = minicam.cam.explain(model, data.images, "cam", LAYER, target=data.labels)   # (N, 32, 32)
flat_peaks = maps.reshape(len(maps), -1).argmax(axis=1)
peak_rows, peak_cols = np.unravel_index(flat_peaks, maps.shape[1:])
hits = masks[np.arange(len(maps)), peak_rows, peak_cols]
share = hits.mean()
centre_hits = masks[:, 16, 16]   # the baseline: always point at the pixel (16, 16)
print(f"pointing game, CAM of the true class, {len(hits)} images: {hits.sum()} hits, share {share:.3f}")
print(f"baseline 'always the centre pixel': share {centre_hits.mean():.3f}")
for c in range(3):
    chosen = data.labels == c
    print(f"  {CLASSES[c]:9s} {hits[chosen].mean():.3f} of {chosen.sum()} images (centre baseline {centre_hits[chosen].mean():.3f})")

# the same game in minicam.metrics
library_hits = minicam.metrics.pointing_game(maps, data.masks)
assert np.array_equal(hits, library_hits)
assert np.array_equal(np.stack([peak_rows, peak_cols], axis=1), minicam.metrics.peak_locations(maps))
assert share >= 0.6, f"CAM should point at the object in most images, got {share:.3f}"
assert share >= centre_hits.mean() + 0.15, "CAM should beat the centre baseline clearly"

# %% [markdown]
# The triangles score lowest. Where do their misses point? We measure the distance from
# each missed peak to the nearest object pixel, and whether the peak lies *below* the
# object's lowest row (the triangles here stand on a flat base).

# %%
object_rows = [np.flatnonzero(m.any(axis=1)) for m in masks]
misses = np.flatnonzero(~hits)
distances = np.array([np.sqrt(((np.argwhere(masks[i]) - [peak_rows[i], peak_cols[i]]) ** 2).sum(axis=1)).min()
                      for i in misses])
below = np.array([peak_rows[i] > object_rows[i].max() for i in misses])
print(f"{len(misses)} misses; distance from the peak to the object: median {np.median(distances):.1f} px, "
      f"90th percentile {np.percentile(distances, 90):.1f} px (one feature-map cell = 4 px)")
for c in range(3):
    chosen = data.labels[misses] == c
    if chosen.any():
        print(f"  {CLASSES[c]:9s} {chosen.sum():3d} misses, {below[chosen].mean():.0%} of them below the object")

for tolerance in (2, 4):
    tolerant = minicam.metrics.pointing_game(maps, data.masks, tolerance=tolerance)
    print(f"with a tolerance of {tolerance} px (a hit if an object pixel lies within it): share {tolerant.mean():.3f}")

# %% [markdown]
# Each position of `features.relu3` sees an $18{\times}18$ patch of the input (lesson 00),
# so the feature that fires for "triangle" can sit one cell below the triangle's base and
# still see it. CAM shows where the *feature map* that made the score is strong, not
# where the object is; for this network those differ by a cell for many triangles.
#
# The figure: some images of each class with the CAM of their true class; the cross is
# the peak, the magenta line the object's outline. For each class we show its first
# hit and its first miss.

# %%
shown = []  # for each class, its first hit and its first miss
for c in range(3):
    for outcome in (True, False):
        candidates = np.flatnonzero((data.labels == c) & (hits == outcome))
        shown += [int(candidates[0])] if len(candidates) else []
shown = np.array(shown)
titles = [f"{CLASSES[data.labels[i]]}: {'hit' if hits[i] else 'miss'}" for i in shown]
fig = minicam.viz.grid(data.images[shown], {"CAM, true class": maps[shown]}, column_titles=titles)
grid_axes = fig.axes[: 2 * len(shown)]  # the image row, then the map row (the colorbar comes after)
for column, i in enumerate(shown):
    for ax in (grid_axes[column], grid_axes[len(shown) + column]):
        ax.contour(masks[i].astype(float), levels=[0.5], colors="magenta", linewidths=1.2)
    grid_axes[len(shown) + column].plot(peak_cols[i], peak_rows[i], marker="x", color="white", markersize=9,
                                        markeredgewidth=2.5)
    grid_axes[len(shown) + column].plot(peak_cols[i], peak_rows[i], marker="x", color="black", markersize=7,
                                        markeredgewidth=1.2)
fig.suptitle(f"CAM at {LAYER} (pointing game share {share:.2f} on {len(hits)} images; x = the peak)")
print(f"saved {minicam.viz.save_figure(fig, '05_cam_grid')}")

# %% [markdown]
# ## Exercises
#
# 1. Add the bias to the map, $M_c + b_c$, and recompute the pointing game. Does
#    anything change? Why not? (What does min-max scaling do to a constant?)
# 2. Compute CAM at `features.conv3` (before the ReLU) with your own `einsum` from
#    `capture(model, x, "features.conv3").A`. Does `mean(M_c) = S_c - b_c` still hold?
#    Does `METHODS["cam"]` accept that layer? Read the check in `minicam/cam/cam.py` to
#    find out why.
# 3. Run the pointing game with `relu="always"` in `explain`. Can a ReLU move the peak?
#    Which images change, if any?
# 4. The authors' code quantises the normalised map to `uint8` *before* resizing it. Do
#    that by hand (`np.round(255 * m) / 255` on the min-max scaled $8{\times}8$ map, then
#    `bilinear_half_pixel`) and measure the largest change against `explain`.
# 5. Build a harder baseline for the pointing game: a map that is high on the brightest
#    or darkest pixels of the image (hint: `np.abs(image - image.mean()).sum(0)`). How
#    close does it get to CAM? What does that say about the data set?
#
# ## Instructor notes
#
# - **Expected output**: all identities hold to about $10^{-14}$; the present class has a
#   much higher mean inside its object than outside (disks and squares in every image,
#   triangles in about half of them, because their map peaks below the base); an absent
#   class has a negative mean and is negative on the object; pointing game about 0.75 against a centre
#   baseline near 0.5; disks and squares above 0.8, triangles near 0.55, with most
#   triangle misses one cell below the base (median distance 4 px); with a 4 px tolerance
#   about 0.88.
# - **Misconception**: "CAM needs a ReLU / is a probability map". The paper's map is
#   signed; its mean is the logit minus the bias. The ReLU and the $[0, 1]$ range are
#   display conventions.
# - **Misconception**: "a normalised map of an absent class shows where that class is".
#   Min-max scaling maps every image's map onto $[0, 1]$; print the raw values before
#   reading colours. Compare the raw means in section 2.
# - **Misconception**: "the pointing game measures how good a method is". It also
#   measures the data set: a map that always points at the centre scores about 0.5 here.
# - **Discussion prompt**: the network was trained to classify, never to localise. Why
#   does CAM localise at all? (GAP forces every position to contribute to the score with
#   the same weights, so an object anywhere raises the score through the positions that
#   see it.)
# - **Timing**: 10 minutes for section 1, 10 for section 2 (let students guess the map of
#   an absent class before showing it), 10 for the upsampling, 15 for the pointing game
#   and its baseline. The script runs in a few seconds.
