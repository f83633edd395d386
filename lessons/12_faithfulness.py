# %% [markdown]
# # Lesson 12: Faithfulness, does the model agree with the map?
#
# **Objectives**
# - Compute Average Drop % and % Increase in Confidence exactly as the Grad-CAM++ paper
#   defines them, and the deletion and insertion curves of RISE with their areas, for
#   Grad-CAM, Grad-CAM+, Grad-CAM++ and Score-CAM, next to a random map.
# - Recompute the numbers by hand for two images, and check the curves' endpoints.
# - See that torchcam's and pytorch-grad-cam's quantities of the same names are different
#   quantities, and that on this model the metrics say as much about the model's
#   behaviour on darkened images as about the maps.
#
# **Prerequisites**: lesson 00, lessons 05 (CAM), 06 (Grad-CAM) and 07 (Grad-CAM++),
# lesson 10 (Score-CAM), lesson 11 (why a control is needed).
#
# **Code you will read**
# - `minicam/metrics/faithfulness.py`: `confidence_scores`, `relative_drops`,
#   `average_drop`, `increase_in_confidence`, `win_percent`, `torchcam_average_drop`,
#   `torchcam_confidence_increase`, `pytorch_grad_cam_drop_in_confidence`, `importance_rank`,
#   `deletion_curve`, `insertion_curve`, `area_under_curve`
# - `minicam/cam/explain.py`: `explain`
#
# **Time**: 45 minutes.

# %%
import os

import numpy as np
import scipy.integrate
from matplotlib.figure import Figure

import minicam
import minicam.cam
import minicam.data
import minicam.metrics
import minicam.models
import minicam.viz
from minicam.cam.capture import predict

SEED = 12
FAST = os.environ.get("MINICAM_FAST") == "1"  # CI: fewer images, coarser curves
rng = np.random.default_rng(SEED)
IMAGES = 30 if FAST else 150        # for Average Drop and Increase in Confidence
CURVE_IMAGES = 10 if FAST else 48   # for deletion and insertion (steps + 1 forward passes per image and curve)
STEPS = 8 if FAST else 16
LAYER = "features.relu3"
CLASSES = minicam.data.CLASSES
METHOD_NAMES = {"gradcam": "Grad-CAM", "gradcam+": "Grad-CAM+", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM"}

model = minicam.models.lesson_cnn()
test = minicam.data.single_instance(rng, IMAGES)
x = test.images
predicted = predict(model, x).argmax(axis=1)   # explain the class the model chose, as the paper does
print(f"{IMAGES} test images, accuracy {np.mean(predicted == test.labels):.3f}")

maps = {name: minicam.cam.explain(model, x, method, LAYER, predicted) for method, name in METHOD_NAMES.items()}
maps["random map"] = rng.random(x[:, 0].shape)  # the control: a map that knows nothing

# %% [markdown]
# ## 1. The Grad-CAM++ paper's definitions
#
# For image $i$ and its class $c$, let $Y_i$ be the model's score on the image and $O_i$ the
# score on the **explanation map** $E = L \circ I$: the map $L$ (upsampled, scaled to
# $[0, 1]$) multiplied point by point into the image, every colour channel alike. The
# score is the softmax probability. Then
#
# $$ \text{Average Drop \%} = \frac{100}{N}\sum_i \frac{\max(0,\ Y_i - O_i)}{Y_i} \quad(\downarrow), \qquad
#    \text{\% Increase in Confidence} = \frac{100}{N}\sum_i \mathbb{1}[Y_i < O_i] \quad(\uparrow). $$
#
# A faithful map keeps what the model needs: the darkened image $E$ should keep most of
# the score. Before the table, the two numbers for two images, by hand: `predict` for the
# logits, our own softmax, our own drop.

# %%
def softmax_probability(images, classes):
    logits = predict(model, images)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True))[np.arange(len(classes)), classes]


two = slice(0, 2)
L = maps["Grad-CAM"][two]
Y = softmax_probability(x[two], predicted[two])
O = softmax_probability(L[:, None] * x[two], predicted[two])     # E = L o I
drops = np.maximum(0, Y - O) / Y
print(f"images 0 and 1: Y = {np.round(Y, 4)}, O = {np.round(O, 4)}, drops {np.round(drops, 4)}")

average_drop_two = minicam.metrics.average_drop(model, x[two], L, predicted[two])
increase_two = minicam.metrics.increase_in_confidence(model, x[two], L, predicted[two])
print(f"by hand: Average Drop {100 * drops.mean():.6f} %, Increase {100 * np.mean(Y < O):.1f} %; "
      f"library: {average_drop_two:.6f} %, {increase_two:.1f} %")
assert abs(average_drop_two - 100 * drops.mean()) < 1e-10
assert increase_two == 100 * np.mean(Y < O)

# %% [markdown]
# ## 2. The table
#
# The same maps for every number; the random map is uniform noise in $[0, 1]$ per pixel.
# Win % (also from the paper): the share of images where Grad-CAM++'s drop is lower than
# the other method's (ties count half).

# %%
scores = {name: minicam.metrics.confidence_scores(model, x, m, predicted) for name, m in maps.items()}
drops_of = {name: minicam.metrics.relative_drops(Y, O) for name, (Y, O) in scores.items()}
print("| map | Average Drop % (lower is better) | % Increase in Confidence (higher is better) | Win % of Grad-CAM++ against it |")
print("|---|---|---|---|")
paper = {}
for name, m in maps.items():
    ad = minicam.metrics.average_drop(model, x, m, predicted)
    ic = minicam.metrics.increase_in_confidence(model, x, m, predicted)
    Y, O = scores[name]
    assert abs(ad - 100 * drops_of[name].mean()) < 1e-10 and ic == 100 * np.mean(Y < O)
    assert 0 <= ad <= 100 and 0 <= ic <= 100
    win = minicam.metrics.win_percent(drops_of["Grad-CAM++"], drops_of[name])
    paper[name] = (ad, ic)
    print(f"| {name} | {ad:.1f} | {ic:.1f} | {win:.1f} |")

# %% [markdown]
# Look at the random map's row before ranking the methods. Then break the Average Drop
# down by the class the model predicted: the mean hides three different behaviours.

# %%
print("Average Drop % by predicted class\n")
print("| map | " + " | ".join(f"{c} ({np.sum(predicted == k)} images)" for k, c in enumerate(CLASSES)) + " |")
print("|---|" + "---|" * len(CLASSES))
for name in maps:
    print(f"| {name} | " + " | ".join(f"{100 * drops_of[name][predicted == k].mean():.1f}" for k in range(3)) + " |")

dark_logits = predict(model, np.zeros_like(x[:1]))[0]
print("\nlogits of the black image: " + ", ".join(f"{c} {v:+.1f}" for c, v in zip(CLASSES, dark_logits)))
print("how the model classifies dimmed copies of the test images (the image times a constant):")
for brightness in (1.0, 0.5, 0.3, 0.1, 0.0):
    counts = np.bincount(predict(model, brightness * x).argmax(axis=1), minlength=3)
    print(f"  brightness {brightness:.1f}: " + ", ".join(f"{c} {n}" for c, n in zip(CLASSES, counts)))

# %% [markdown]
# $E = L \circ I$ is a darkened image, and the model never saw a dark image in training.
# The printout shows what it does with them: a black image is a disk with a huge margin,
# and dimmed images drift to one class or another as the light goes down. A CAM-style
# map is near 0 away from the object, so its $E$ is mostly black; the random map dims every
# pixel by half on average and adds noise: two different kinds of darkness, two different
# answers from the model, *whatever the maps say about where the object is*. The
# per-class table shows the result: for some classes every method keeps the probability,
# for others every method loses it, and the random map does the opposite. Average Drop on
# this model measures to a large part how the model reacts to the darkening each map
# produces. The paper's metric assumes that $E$ stays an image the model understands:
# check that assumption on your model before comparing methods with it.

# %% [markdown]
# ## 3. Three quantities with one name
#
# The libraries report quantities *called* average drop and increase in confidence, but
# (see `minicam/metrics/faithfulness.py` and the research notes):
#
# | quantity | definition | unit |
# |---|---|---|
# | paper's Average Drop | $\frac{100}{N}\sum \max(0, Y-O)/Y$ | % of $Y$ |
# | torchcam `avg_drop` | $\frac1N\sum \mathrm{ReLU}(Y-O)/(Y+10^{-7})$ | fraction of $Y$ |
# | pytorch-grad-cam `DropInConfidence` | $\max(0, Y-O)$ per image, of whatever score the target gives (default: the logit) | the score's own unit |
#
# Same maps, same images:

# %%
print("| map | paper AD % | torchcam avg_drop | pytorch-grad-cam drop, softmax (mean) | "
      "pytorch-grad-cam drop, logit (mean) | paper IC % | torchcam conf_increase |")
print("|---|---|---|---|---|---|---|")
for name, m in maps.items():
    ad, ic = paper[name]
    tc_drop = minicam.metrics.torchcam_average_drop(model, x, m, predicted)
    tc_increase = minicam.metrics.torchcam_confidence_increase(model, x, m, predicted)
    pgc_softmax = minicam.metrics.pytorch_grad_cam_drop_in_confidence(model, x, m, predicted)
    pgc_logit = minicam.metrics.pytorch_grad_cam_drop_in_confidence(model, x, m, predicted, score="logit")
    print(f"| {name} | {ad:.2f} | {tc_drop:.4f} | {pgc_softmax.mean():.4f} | {pgc_logit.mean():.2f} | "
          f"{ic:.1f} | {tc_increase:.3f} |")
    Y, O = scores[name]
    assert abs(tc_drop - np.mean(np.maximum(Y - O, 0) / (Y + 1e-7))) < 1e-12   # torchcam's formula, by hand
    assert np.allclose(pgc_softmax, Y * drops_of[name], rtol=1e-12, atol=1e-15)  # absolute = Y x relative
    assert tc_increase * 100 == ic

# %% [markdown]
# torchcam's number is the paper's divided by 100 (up to its $10^{-7}$), so "0.52" and
# "52 %" are the same result. pytorch-grad-cam's is not divided by $Y$: with a confident
# softmax ($Y \approx 1$) it is close to torchcam's, and with its default logit target it
# is in logit units, a different scale altogether. A table that mixes them compares
# nothing.

# %% [markdown]
# ## 4. Deletion and insertion (Petsiuk et al. 2018, RISE)
#
# Rank the pixels by the map, most important first. **Deletion**: set them to the
# baseline (0, black) chunk by chunk and record the class probability after each step;
# a faithful map makes it fall fast (small area under the curve). **Insertion**: start
# from the baseline and reveal the pixels in the same order; the probability should rise
# fast (large area). `STEPS` chunks of equal size; the area is the trapezoid rule over the
# fraction of pixels changed.
#
# Two checks that need no trust in the library: deletion starts at the full image's
# score and ends at the black image's score; insertion the other way round.

# %%
xc, classes_c = x[:CURVE_IMAGES], predicted[:CURVE_IMAGES]
baseline_score = softmax_probability(np.zeros_like(xc), classes_c)
full_score = softmax_probability(xc, classes_c)
curves, areas = {}, {}
for name, m in maps.items():
    fractions, deletion = minicam.metrics.deletion_curve(model, xc, m[:CURVE_IMAGES], classes_c, steps=STEPS)
    _, insertion = minicam.metrics.insertion_curve(model, xc, m[:CURVE_IMAGES], classes_c, steps=STEPS)
    assert fractions[0] == 0 and fractions[-1] == 1 and len(fractions) == STEPS + 1
    assert np.allclose(deletion[:, 0], full_score, rtol=1e-12) and np.allclose(deletion[:, -1], baseline_score, rtol=1e-12)
    assert np.allclose(insertion[:, 0], baseline_score, rtol=1e-12) and np.allclose(insertion[:, -1], full_score, rtol=1e-12)
    curves[name] = (fractions, deletion, insertion)
    areas[name] = (minicam.metrics.area_under_curve(fractions, deletion), minicam.metrics.area_under_curve(fractions, insertion))
    assert np.allclose(areas[name][0], scipy.integrate.trapezoid(deletion, fractions, axis=1), rtol=1e-12)

print(f"\n{CURVE_IMAGES} images, {STEPS} steps, black baseline\n")
print("| map | deletion AUC (lower is better) | insertion AUC (higher is better) | insertion - deletion |")
print("|---|---|---|---|")
for name, (deletion_area, insertion_area) in areas.items():
    print(f"| {name} | {deletion_area.mean():.3f} | {insertion_area.mean():.3f} | {(insertion_area - deletion_area).mean():+.3f} |")

# %% [markdown]
# ## 5. The figure: mean curves

# %%
fig = Figure(figsize=(11, 4.4), layout="constrained")
ax_deletion, ax_insertion = fig.subplots(1, 2)
for name, (fractions, deletion, insertion) in curves.items():
    style = dict(linestyle="--", color="grey") if name == "random map" else {}
    ax_deletion.plot(fractions, deletion.mean(axis=0), marker=".", label=f"{name} (AUC {areas[name][0].mean():.3f})", **style)
    ax_insertion.plot(fractions, insertion.mean(axis=0), marker=".", label=f"{name} (AUC {areas[name][1].mean():.3f})", **style)
for ax, title in ((ax_deletion, "deletion: most important pixels set to black first"),
                  (ax_insertion, "insertion: most important pixels revealed first")):
    ax.set_xlabel("fraction of pixels changed")
    ax.set_ylabel("mean softmax probability of the predicted class")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.suptitle(f"RISE curves, {CURVE_IMAGES} test images, {STEPS} steps")
path = minicam.viz.save_figure(fig, "12_faithfulness")
print(f"saved {path}")

# %% [markdown]
# ## Exercises
#
# 1. Replace the black baseline by the image's mean colour (`baseline=x.mean(axis=(2, 3),
#    keepdims=True)` per image) for deletion and insertion, and by a blurred copy for
#    insertion, as the RISE authors do. Which numbers move most? Does the ranking of the
#    methods survive?
# 2. Compute Average Drop with `score="logit"`. Why does `relative_drops` refuse some
#    images, and what would a library that does not refuse them report?
# 3. Explain the *true* class instead of the predicted one for the misclassified images.
#    How do Average Drop and Increase in Confidence behave, and what should a paper say
#    about which class it explains?
# 4. Build an "oracle" map from the ground-truth masks (1 on the object, 0 elsewhere,
#    `test.union_masks()`). Where does it land in every table? Is a perfect localisation a
#    faithful explanation of *this* model?
# 5. Win % with ties: many drops are exactly 0 (the score rose). Recompute Win % with
#    `ties="lose"` and explain the difference.
#
# ## Instructor notes
#
# - **Expected output** (full mode, 150 images, seed 12): the hand computation agrees to
#   1e-14 and every curve starts and ends where it must. Average Drop: Grad-CAM 66.8 %,
#   Grad-CAM+ 58.5 %, Grad-CAM++ 55.8 %, Score-CAM 51.7 %, and the random map 57.0 %, in the
#   middle of the methods, with the best Increase in Confidence (42.7 %). By predicted
#   class: disks drop 0-7 % for the four methods, triangles 100 % for all four, squares in
#   between (Score-CAM 26 %, Grad-CAM 90 %); the random map drops 99 % on disks and 0 % on
#   triangles. The black image's logits: disk +34, triangle -156. Deletion AUC: Grad-CAM
#   0.27 (best), Score-CAM 0.40, no better than the random map's 0.39; insertion AUC:
#   Score-CAM 0.54 (best), random 0.39. The paper's and torchcam's Average Drop agree to the
#   4th digit (x 100); pytorch-grad-cam's logit drop is on another scale (34-57).
# - **The honest conclusion** on this model: the faithfulness numbers rank the methods only
#   weakly, and Average Drop mostly measures the model's behaviour on dark images. That is
#   a finding about the metric, and a reason why the paper's numbers on ImageNet cannot be
#   transferred to another model or data set.
# - **Misconception**: "lower Average Drop means a better map". A map equal to 1 everywhere
#   has Average Drop 0; Average Drop rewards large maps. Pair it with a measure that
#   rewards small maps (deletion), or with localisation.
# - **Misconception**: "torchcam's 0.27 is better than the paper's 46 %". Different units;
#   section 3 has the conversion.
# - **Discussion prompt**: deletion and insertion disagree about which method is best. What
#   does each one reward (hint: deletion rewards finding *one* decisive region, insertion
#   finding *enough* of the evidence)?
# - **Timing**: 10 minutes for the definitions and the hand check, 10 for the tables, 10 for
#   the library comparison, 15 for the curves and the discussion. The script runs in about
#   10 seconds.
