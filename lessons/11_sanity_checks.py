# %% [markdown]
# # Lesson 11: Sanity checks, does the map depend on what the model learned?
#
# **Objectives**
# - Run the model-parameter randomisation test of Adebayo et al. 2018 ("Sanity checks for
#   saliency maps", NeurIPS): replace the trained weights by random ones, layer by layer
#   from the top (fc, then conv3, conv2, conv1), and recompute the maps.
# - Measure how much each map changes with the Spearman rank correlation and the SSIM,
#   both checked against a naive computation in the lesson.
# - Tell apart methods whose maps follow the weights (they pass) from methods whose maps
#   survive the destruction of the model (they fail: they show the image, not the model).
#
# **Prerequisites**: lesson 00, lessons 05 (CAM), 06 (Grad-CAM) and 07 (Grad-CAM++),
# lesson 10 (Score-CAM, guided backpropagation, Guided Grad-CAM).
#
# **Code you will read**
# - `minicam/nn/module.py`: `Module.state_dict`, `Module.load_state_dict`
# - `minicam/metrics/similarity.py`: `spearman_rank_correlation`, `average_ranks`, `ssim`
# - `minicam/cam/explain.py`: `explain`; `minicam/cam/guided.py`: `guided_backprop`, `guided_gradcam`
#
# **Time**: 35 minutes.

# %%
import copy
import os

import numpy as np
import scipy.stats
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

import minicam.cam
import minicam.data
import minicam.metrics
import minicam.models
import minicam.train
import minicam.viz

SEED = 11
FAST = os.environ.get("MINICAM_FAST") == "1"  # CI: fewer images
rng = np.random.default_rng(SEED)
IMAGES = 12 if FAST else 48
LAYER = "features.relu3"
METHOD_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM",
                "guided-backprop": "guided backprop", "guided-gradcam": "Guided Grad-CAM"}

model = minicam.models.lesson_cnn()
test = minicam.data.single_instance(rng, IMAGES)
x, labels = test.images, test.labels

# %% [markdown]
# ## 1. The test
#
# An explanation of a model's decision should depend on the model. Adebayo et al. make
# this testable: destroy what the model learned, and the explanation must change. They
# randomise the weights **cascading from the top**: first the output layer, then also the
# layer below it, and so on down to the first layer. At every stage, compare the new map
# with the original, for the same image and the same class.
#
# Our stages, each a **copy** of the trained model (`copy.deepcopy`), so the trained model
# itself is never touched:
#
# | stage | re-initialised layers |
# |---|---|
# | fc | `fc` |
# | +conv3 | `fc`, `features.conv3` |
# | +conv2 | `fc`, `features.conv3`, `features.conv2` |
# | +conv1 | every layer |
#
# The random weights come from a freshly built `LessonCNN` (the initialisation it was
# trained from would also do; any draw from the same distribution is the point).

# %%
CASCADE = ["fc", "features.conv3", "features.conv2", "features.conv1"]
STAGES = ["fc", "+conv3", "+conv2", "+conv1"]
original_state = model.state_dict()                      # a copy of every trained array
fresh_state = minicam.models.LessonCNN(rng=rng).state_dict()


def randomised(layers):
    """A deep copy of the trained model with `layers` re-initialised."""
    copy_of_model = copy.deepcopy(model)
    state = copy_of_model.state_dict()
    for key in state:
        if any(key.startswith(layer + ".") for layer in layers):
            state[key] = fresh_state[key]
    copy_of_model.load_state_dict(state)
    return copy_of_model.eval()


models = {"original": model}
for stage in range(len(CASCADE)):
    layers = CASCADE[:stage + 1]
    models[STAGES[stage]] = randomised(layers)
    changed = sorted(key for key, value in models[STAGES[stage]].state_dict().items()
                     if not np.array_equal(value, original_state[key]))
    assert changed == sorted(k for k in original_state if any(k.startswith(layer + ".") for layer in layers))

print("| model | accuracy |")
print("|---|---|")
for name, m in models.items():
    print(f"| {name} | {minicam.train.accuracy(m, x, labels):.3f} |")

# %% [markdown]
# ## 2. Two similarity measures, checked by hand
#
# - **Spearman rank correlation** $\rho$: rank the pixels of each map (ties share their
#   mean rank) and take the Pearson correlation of the two rankings. 1: same order of
#   importance; 0: unrelated. It ignores the values themselves, only their order.
# - **SSIM** (Wang et al. 2004): for every $7{\times}7$ window, compare the means, the
#   variances and the covariance of the two maps,
#   $S = \frac{(2\mu_a\mu_b + C_1)(2\sigma_{ab} + C_2)}{(\mu_a^2+\mu_b^2+C_1)(\sigma_a^2+\sigma_b^2+C_2)}$,
#   and average over windows. It sees structure: blobs in the same places.
#
# We check `spearman_rank_correlation` against `scipy.stats.spearmanr`, and `ssim` against
# a plain loop over the windows, on a pair of maps from the cascade.

# %%
a = minicam.cam.explain(model, x[:1], "gradcam", LAYER, labels[:1])[0]
b = minicam.cam.explain(models["+conv3"], x[:1], "gradcam", LAYER, labels[:1])[0]

rho = minicam.metrics.spearman_rank_correlation(a, b)
rho_scipy = scipy.stats.spearmanr(a.ravel(), b.ravel()).statistic
print(f"Spearman: minicam {rho:.12f}, scipy {rho_scipy:.12f}")
assert abs(rho - rho_scipy) < 1e-12


def ssim_by_loops(a, b, win=7, C1=0.01**2, C2=0.03**2):
    values = []
    for i in range(a.shape[0] - win + 1):
        for j in range(a.shape[1] - win + 1):
            u, v = a[i:i + win, j:j + win].ravel(), b[i:i + win, j:j + win].ravel()
            mu_u, mu_v = u.mean(), v.mean()
            var_u, var_v = u.var(ddof=1), v.var(ddof=1)                 # sample (co)variances
            cov = np.sum((u - mu_u) * (v - mu_v)) / (u.size - 1)
            values.append((2 * mu_u * mu_v + C1) * (2 * cov + C2) / ((mu_u**2 + mu_v**2 + C1) * (var_u + var_v + C2)))
    return float(np.mean(values))


s, s_loops = minicam.metrics.ssim(a, b), ssim_by_loops(a, b)
print(f"SSIM: minicam {s:.12f}, loops {s_loops:.12f}")
assert abs(s - s_loops) < 1e-12
assert minicam.metrics.spearman_rank_correlation(a, a) == 1.0 and abs(minicam.metrics.ssim(a, a) - 1) < 1e-12

# %% [markdown]
# ## 3. The cascade
#
# Every method explains the same class (the true label) at `features.relu3`, on the same
# images, at every stage. The table gives the mean over the images of $\rho$ and SSIM
# between the original map and the randomised one.

# %%
maps = {stage: {method: minicam.cam.explain(m, x, method, LAYER, labels) for method in METHOD_NAMES}
        for stage, m in models.items()}

similarity = {}
print(f"mean Spearman rho / mean SSIM against the original map, {IMAGES} images\n")
print("| method | " + " | ".join(STAGES) + " |")
print("|---|" + "---|" * len(STAGES))
for method, name in METHOD_NAMES.items():
    cells = []
    for stage in STAGES:
        pairs = list(zip(maps["original"][method], maps[stage][method]))
        rho = float(np.mean([minicam.metrics.spearman_rank_correlation(u, v) for u, v in pairs]))
        s = float(np.mean([minicam.metrics.ssim(u, v) for u, v in pairs]))
        similarity[method, stage] = (rho, s)
        cells.append(f"{rho:.2f} / {s:.2f}")
    print(f"| {name} | " + " | ".join(cells) + " |")

# %% [markdown]
# ## 4. What must hold
#
# - **Randomising restores nothing**: the trained model's weights are exactly those it
#   started with, and its maps, computed again, are bit for bit the first ones. (A
#   randomisation done in place, without the copy, would silently explain a broken model
#   in every later cell of a notebook.)
# - **Grad-CAM fails the randomisation, as it should**: once the output layer is random,
#   its map is a random mixture of the feature maps, and its similarity to the original
#   falls. The bar is wide (the table is what to discuss).

# %%
for key, value in model.state_dict().items():
    assert np.array_equal(value, original_state[key]), f"{key} changed: the cascade must work on copies"
for method in METHOD_NAMES:
    again = minicam.cam.explain(model, x, method, LAYER, labels)
    assert np.array_equal(again, maps["original"][method]), f"{method}: the original maps changed"

gradcam_rho, gradcam_ssim = similarity["gradcam", "fc"]
print(f"Grad-CAM after randomising fc: rho {gradcam_rho:.2f}, SSIM {gradcam_ssim:.2f}")
assert gradcam_rho < 0.6 and gradcam_ssim < 0.6, "Grad-CAM should change once the class weights are random"
for stage in STAGES:
    assert similarity["gradcam", stage][0] < 0.6

passed = [METHOD_NAMES[m] for m in METHOD_NAMES if similarity[m, "fc"][0] < 0.6]
survived = [METHOD_NAMES[m] for m in METHOD_NAMES if similarity[m, "fc"][0] >= 0.6]
print(f"after randomising only fc, maps that changed (rho < 0.6): {', '.join(passed) or 'none'}")
print(f"maps that stayed close to the original (rho >= 0.6): {', '.join(survived) or 'none'}")

# %% [markdown]
# ## 5. The figure: one image, every method, every stage

# %%
shown = 0
columns = ["original"] + STAGES
fig = Figure(figsize=(2.1 * len(columns) + 1.6, 2.1 * len(METHOD_NAMES) + 0.6), layout="constrained")
axes = fig.subplots(len(METHOD_NAMES), len(columns), squeeze=False)
for row, (method, name) in enumerate(METHOD_NAMES.items()):
    for column, stage in enumerate(columns):
        minicam.viz.overlay(axes[row, column], x[shown], maps[stage][method][shown], colorbar=False)
        if row == 0:
            axes[row, column].set_title("trained" if stage == "original" else f"random: {stage}")
        if stage != "original":
            rho, s = similarity[method, stage]
            axes[row, column].set_xlabel(f"mean rho {rho:.2f}, SSIM {s:.2f}", fontsize=8)
    axes[row, 0].set_ylabel(name)
fig.colorbar(ScalarMappable(Normalize(0, 1), cmap="jet"), ax=axes.ravel().tolist(), label="map value", shrink=0.5)
fig.suptitle(f"cascading randomisation, one {minicam.data.CLASSES[labels[shown]]} "
             f"(the numbers are means over {IMAGES} images)")
path = minicam.viz.save_figure(fig, "11_sanity_checks")
print(f"saved {path}")

# %% [markdown]
# ## Exercises
#
# 1. Adebayo et al. also randomise **one layer at a time** (the others stay trained).
#    Do it for each of the four layers and compare with the cascade. Which layer matters
#    most for Grad-CAM? For guided backprop?
# 2. Their second test randomises the **labels**: retrain the model on shuffled labels
#    (`minicam.train.train` on a few hundred images, a few epochs) and compare the maps of
#    the two models. Predict the outcome for Grad-CAM and for guided backprop first.
# 3. Score-CAM barely changes when only `fc` is random. Use lesson 10, section 4 to
#    explain why: what do the masked images' probabilities look like for a random `fc`, and
#    what does the channel softmax do with them?
# 4. Repeat the table with the maps' signs kept: `explain(..., relu="none")` for Grad-CAM,
#    and Spearman on the absolute values as Adebayo et al. also report. Does the verdict
#    change?
# 5. A map can pass this test and still be useless: a map of pure noise changes
#    completely under randomisation. What second property must a good map have, and which
#    lesson measures it?
#
# ## Instructor notes
#
# - **Expected output** (full mode, 48 images, seed 11): the trained model at 0.98, the
#   randomised ones at 0.23-0.35 (chance is 1/3); Spearman and SSIM match scipy and the
#   loops to the last printed digit. After randomising fc alone, Grad-CAM falls to rho
#   -0.04 and SSIM 0.05 (it passes), Guided Grad-CAM to 0.28 / 0.48 (its Grad-CAM factor
#   changes, its guided factor does not); Grad-CAM++ stays at 0.82, guided backprop at 0.87
#   and Score-CAM at 0.97 (they fail at this stage). With conv3 also random they still sit
#   at 0.75-0.89. Only once conv2 is random does every method drop to 0.1-0.35; guided
#   backprop reaches about 0.1 (on this small network it needs the trained low layers, not
#   only its ReLU masks, unlike the deep nets of the paper). The exact values depend on
#   the random draw (fast mode draws other weights and gives Grad-CAM 0.37 at the first
#   stage): discuss the pattern, not the digits.
# - **Look at the figure's last column with the class**: the fully random network's
#   Grad-CAM often still covers the object (a random ReLU network responds to contrast),
#   although its ranking of pixels has nothing to do with the trained one. A low rho with a
#   map that "looks right" is exactly what the test is for.
# - **Why Grad-CAM++ survives the top randomisation**: on a GAP head its weights are
#   ReLU(W_ck)/(2 + W_ck mean(A_k)) (lesson 08), so a random fc keeps a random half of the
#   channels, and almost every channel of this net fires on the object: the map still
#   shows "where the object is", not "what the model decided". Grad-CAM's signed weights
#   subtract half the channels, which scrambles the map.
# - **Why Score-CAM survives**: its weights are a softmax over differences of
#   probabilities, at most e apart, and here often saturated (lesson 10): the map is close
#   to the sum of the channels, which the fc does not touch.
# - **Misconception**: "a map that looks like the object is a good explanation". Edge
#   detectors and untrained networks make such maps (lesson 14's untrained row). This test
#   is how one finds out.
# - **Misconception**: "failing the test means the method is wrong". It means the map is
#   dominated by something other than the randomised weights (the image, the lower layers,
#   the method's own normalisation). Say which.
# - **Timing**: 5 minutes for the test's logic, 5 for the measures, 15 for the table and the
#   figure, 10 for discussion. The script runs in a few seconds.
