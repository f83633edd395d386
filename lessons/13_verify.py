# %% [markdown]
# # Lesson 13: verifying another implementation
#
# **Objectives**
# - Name the reasons two implementations of the same CAM method return different maps:
#   conventions (score, ReLU placement, upsampling grid, normalisation order and eps) and
#   real mistakes, and tell the two apart in a report.
# - Export minicam's conformance cases, run a colleague's torch Grad-CAM++ on them following
#   the exported README, and let `minicam.conformance.verify` find the planted bug by name;
#   fix it and watch the check pass.
# - Read verify's diagnosis of a real library (torchcam 0.5.0's `GradCAMpp`) and check it
#   independently, from the activations and gradients, in NumPy.
#
# **Prerequisites**: lesson 06 (Grad-CAM, hooks and gradients), lesson 07 (Grad-CAM++
# derived: eq. 19 and its variants); lesson 05 for the upsampling and min-max steps. Some
# torch helps: the colleague's code is written in torch (installed with the test extras);
# without torch the lesson prints "skipped:" lines for those parts and runs the rest.
#
# **Code you will read**
# - `minicam/conformance/__init__.py` and `cli.py`: `export_cases`, `verify`, the
#   `minicam export-cases` and `minicam verify` commands
# - `minicam/conformance/export.py` (the files written) and `readme.py` (the README the
#   other implementation follows)
# - `minicam/conformance/verify.py`: `verify`, `map_error`, `diagnose_map`;
#   `report.py`: `Entry.sentence`
# - `minicam/conformance/variants_methods.py`: `torchcam_gradcampp`, `gradcampp_sum_g3A`;
#   `variants_pipeline.py`: the upsampling and eps variants
# - `minicam/conformance/adapters.py`: `run_torchcam`, `run_keras_tutorial` (TensorFlow)
# - `minicam/conformance/stages.py` (every stage a results file can hold) and `diagnose.py`
#
# **Time**: 45 minutes.

# %%
import contextlib
import io
import json
import os
import time
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

import minicam
import minicam.viz
from minicam.cam.capture import capture, predict
from minicam.cam.conventions import normalize_maps, resize_maps
from minicam.cam.gradcampp import alpha_closed_form
from minicam.conformance import cli, export_cases, load_cases, suite, verify
from minicam.conformance.variants import CATALOGUE

try:
    import torch
    import torch.nn.functional as F
except ImportError as error:  # the NumPy parts still run
    torch = None
    print(f"skipped (all torch parts): torch cannot be imported ({error}); pip install torch==2.13.0 to run them")

SEED = 13
FAST = os.environ.get("MINICAM_FAST") == "1"  # CI: three of the five cases
rng = np.random.default_rng(SEED)  # (nothing here is random: the cases carry their own seeds)
START = time.perf_counter()

OUT = Path(os.environ.get("MINICAM_OUT") or "minicam_out")
CASES_DIR = OUT / "13_conformance_cases"
CASE_NAMES = ("captum_toy", "flatten_net", "tiny_maps") if FAST else tuple(suite())
FIGURE_CASE = "flatten_net"  # 4x4 maps upsampled to 8x8, two images
print(f"torch {'not available' if torch is None else torch.__version__}; cases: {', '.join(CASE_NAMES)}")

# %% [markdown]
# ## 1. Why implementations disagree
#
# A CAM is a short pipeline: pick a **score** $y$ (a logit), take activations $A$ and
# gradients $g = \partial y / \partial A$ at a layer, combine them into a map at the layer's
# resolution with the **method's formula**, then **ReLU**, **upsample** to the image and
# **normalise**. Every step has more than one version in the wild
# (`docs/peers.md`, each method's section and its silent disagreements):
#
# | step | choices in circulation | who does what | verify's names |
# |---|---|---|---|
# | score | logit; softmax probability; $e^{\text{logit}}$ | papers and peers: logit; Score-CAM paper: softmax; Grad-CAM++ eq. 19 assumes $Y=e^S$ | `softmax-score`, `exp-score` |
# | ReLU | after the channel sum; none; before normalising | captum: none by default; old pytorch-grad-cam normalised first | `missing-relu`, `normalise-before-relu` |
# | upsampling grid | half-pixel bilinear; corner-aligned; nearest | cv2 / torch default; scipy `zoom`, `UpsamplingBilinear2d`; captum | `half-pixel-upsampling`, `corner-aligned-upsampling`, `nearest-upsampling` |
# | normalisation | order (resize first or not), eps 0 / 1e-7 / 1e-8, min-max or /max | tf-keras-vis; torchcam; pytorch-grad-cam; keras-io | `normalise-then-resize`, `eps-1e-7`, `eps-1e-8`, `max-normalisation` |
# | mistakes | $\sum_{ij}(g^3A)$ denominator; an in-place division that divides a copy; `model.eval()` forgotten; gradients averaged over the batch | 1Konny's Grad-CAM++; torchcam 0.3.2-0.5.0; hand-written hooks; keras-io | `gradcampp-sum-g3A`, `torchcam-0.5.0-gradcampp`, `batchnorm-train-mode`, `batch-mean-gradients` |
#
# A **convention** is a choice: two libraries that choose differently are both right on
# their own terms, and a comparison must use the same choice. A **mistake** computes
# something nobody meant. verify knows both kinds: each row above is an entry of its
# catalogue, a function that recomputes the map the way that variant would. "method"
# variants change the map at the layer; "pipeline" variants change the steps after it.

# %%
kinds = {kind: [v.name for v in CATALOGUE.values() if v.kind == kind] for kind in ("method", "pipeline")}
other_methods = [name for name in kinds["method"] if name.startswith("method-")]
print(f"verify's catalogue: {len(CATALOGUE)} entries = {len(kinds['method']) - len(other_methods)} method variants "
      f"+ {len(kinds['pipeline'])} pipeline variants + {len(other_methods)} 'another method altogether' "
      f"(e.g. {other_methods[0]})")
in_the_table = ["softmax-score", "exp-score", "missing-relu", "normalise-before-relu", "half-pixel-upsampling",
                "corner-aligned-upsampling", "nearest-upsampling", "normalise-then-resize", "eps-1e-7", "eps-1e-8",
                "max-normalisation", "gradcampp-sum-g3A", "torchcam-0.5.0-gradcampp", "batchnorm-train-mode",
                "batch-mean-gradients"]
missing = [name for name in in_the_table if name not in CATALOGUE]
assert not missing, f"the table above names variants verify does not know: {missing}"
for name in ("torchcam-0.5.0-gradcampp", "corner-aligned-upsampling"):
    variant = CATALOGUE[name]
    print(f"  {name} ({variant.kind}): {variant.summary}\n      source: {variant.source}")

# %% [markdown]
# How big is a convention difference? Upsample the $2\times2$ map $\begin{pmatrix}0&1\\2&3\end{pmatrix}$
# to $4\times4$. With **half-pixel** centres (torch `align_corners=False`, cv2) output pixel
# $u$ samples the input at $(u + \tfrac12)\tfrac{h}{H} - \tfrac12$, clamped at the border, so
# the first row is $[0, \tfrac14, \tfrac34, 1]$. With **corner-aligned** centres (torch
# `align_corners=True`, scipy `zoom`) the corners coincide and output pixel $u$ samples
# $u\,\tfrac{h-1}{H-1}$: $[0, \tfrac13, \tfrac23, 1]$. A difference of $\tfrac1{12}$ of the
# range: eight orders of magnitude above a float64 tolerance.

# %%
tiny = np.array([[[0.0, 1.0], [2.0, 3.0]]])
half_pixel = resize_maps(tiny, (4, 4), "bilinear")[0]
corners = resize_maps(tiny, (4, 4), "bilinear-corners")[0]
print("half-pixel first row:    ", np.round(half_pixel[0], 4))
print("corner-aligned first row:", np.round(corners[0], 4))
assert np.allclose(half_pixel[0], [0, 0.25, 0.75, 1], rtol=0, atol=1e-15)
assert np.allclose(corners[0], [0, 1 / 3, 2 / 3, 1], rtol=0, atol=1e-15)
# the normalisation's eps: invisible on a map of range 3, 3e-4 of the scale on a map of range 3e-4
for scale in (1.0, 1e-4):
    exact = normalize_maps(scale * half_pixel[None], "minmax")
    with_eps = normalize_maps(scale * half_pixel[None], "minmax", 1e-7)
    print(f"map range {3 * scale:.0e}: exact min-max vs eps 1e-7 differ by {np.abs(exact - with_eps).max():.1e}")
    assert np.isclose(np.abs(exact - with_eps).max(), 1 - 3 * scale / (3 * scale + 1e-7), rtol=1e-9)

# %% [markdown]
# ## 2. Export the cases
#
# `export_cases(DIR)` (or `python -m minicam export-cases DIR`) writes everything another
# implementation needs, in plain files no framework owns: each case's net as a list of
# `torch.nn` layer names and arguments (`architecture.json`), its weights with torch's
# state_dict keys (`weights.npz`), the inputs and target classes (`inputs.npz`), the layer
# to explain (`case.json`), minicam's maps (`expected.npz`), and a README that says how to
# write a **results file**: one `.npz` with keys `<case>/<method>/<stage>`, where the stage
# is `raw` (the map at the layer, with the method's own ReLU) or a convention preset such as
# `minicam` (bilinear half-pixel upsampling, exact min-max).

# %%
folder = export_cases(CASES_DIR, [suite()[name] for name in CASE_NAMES])
print(f"exported to {folder}:")
for path in sorted(folder.rglob("*")):
    if path.is_file() and (path.parent == folder or path.parent.name == FIGURE_CASE):
        print(f"  {path.relative_to(folder)}  ({path.stat().st_size} bytes)")
index = json.loads((folder / "index.json").read_text())
assert index["cases"] == list(CASE_NAMES) and index["key"] == "<case>/<method>/<stage>"
readme = (folder / "README.md").read_text()
results_section = readme[readme.index("## The results file"):readme.index("### Example")]
print("\nFrom README.md:\n" + results_section)
loaded = load_cases(folder)  # name -> (Case rebuilt in minicam, expected maps)
info = json.loads((folder / FIGURE_CASE / "case.json").read_text())
print(f"{FIGURE_CASE}: layer {info['layer']!r}, targets {info['targets']}, "
      f"gradcam++ shapes {info['shapes']['gradcam++']}, {len(loaded[FIGURE_CASE][1])} expected maps")

# %% [markdown]
# ## 3. A colleague's Grad-CAM++, in torch
#
# A colleague wrote the Grad-CAM++ below for a project and asks you to check it. They read
# the README and followed it: rebuild each net from `architecture.json` in float64 and
# eval mode, hook the layer, take the gradient of the target **logits**, and save `raw`
# and `minicam` maps. Their Grad-CAM++ is eq. 19 of the paper (lesson 07), with the pole
# rule (keep $\alpha$ only where $g > 0$ and the denominator is positive):
#
# $$\alpha_{kij} = \frac{g_{kij}^2}{2g_{kij}^2 + \big(\sum_{ab} A_{kab}\big)\,g_{kij}^3},\qquad
# w_k = \sum_{ij}\alpha_{kij}\,\mathrm{ReLU}(g_{kij}),\qquad L = \mathrm{ReLU}\Big(\sum_k w_k A_k\Big).$$
#
# They also computed Grad-CAM with the same hook, as a control. Read `colleague_gradcampp`
# closely: the bug is in one line that looks right.

# %%
if torch is not None:
    def load_exported_case(case_folder):
        """The net (torch, float64, eval), the inputs, the targets and the layer, as the README says."""
        layers = json.loads((case_folder / "architecture.json").read_text())["layers"]
        modules = OrderedDict((layer["name"], getattr(torch.nn, layer["type"])(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in layer["args"].items()})) for layer in layers)
        net = torch.nn.Sequential(modules).double()  # float64 first, then load: no rounding of the weights
        with np.load(case_folder / "weights.npz") as weights:
            net.load_state_dict({key: torch.from_numpy(weights[key]) for key in weights.files})
        with np.load(case_folder / "inputs.npz") as inputs:
            x, targets = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["targets"])
        layer = json.loads((case_folder / "case.json").read_text())["layer"]
        return net.eval(), x, targets, layer

    def activations_and_gradients(net, x, targets, layer):
        """A at the layer (forward hook) and g = d(sum of the target logits)/dA."""
        stored = {}
        handle = dict(net.named_modules())[layer].register_forward_hook(lambda m, i, out: stored.update(A=out))
        logits = net(x)
        handle.remove()
        (g,) = torch.autograd.grad(logits[torch.arange(len(x)), targets].sum(), stored["A"])
        return stored["A"].detach(), g

    def colleague_gradcam(A, g):
        return torch.relu((g.mean(dim=(2, 3), keepdim=True) * A).sum(dim=1))

    def colleague_gradcampp(A, g, fixed=False):
        """Grad-CAM++, eq. 19, as the colleague wrote it (fixed=False) and as it should be."""
        g2, g3 = g**2, g**3
        denominator = 2 * g2 + A.sum(dim=(2, 3), keepdim=True) * g3
        usable = (g > 0) & (denominator > 0)
        if fixed:
            alpha = torch.where(usable, g2 / torch.where(usable, denominator, torch.ones_like(g)), torch.zeros_like(g))
        else:
            alpha = g2.clone()
            alpha[usable].div_(denominator[usable])  # divide in place where it is safe
        weights = (alpha * torch.relu(g)).sum(dim=(2, 3), keepdim=True)
        return torch.relu((weights * A).sum(dim=1))

    def minicam_stage(cam, size):
        """The README's `minicam` preset: bilinear half-pixel upsampling, then exact min-max per image."""
        if tuple(cam.shape[1:]) != tuple(size):
            cam = F.interpolate(cam[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
        low = cam.flatten(1).min(dim=1).values[:, None, None]
        span = cam.flatten(1).max(dim=1).values[:, None, None] - low
        return torch.where(span > 0, (cam - low) / torch.where(span > 0, span, torch.ones_like(span)),
                           torch.zeros_like(cam))

    def colleague_results(fixed=False):
        """{"<case>/<method>/<stage>": map} for every exported case, as the README asks."""
        results = {}
        for name in index["cases"]:
            net, x, targets, layer = load_exported_case(folder / name)
            with torch.no_grad():  # the rebuilt net must be minicam's net: same logits
                assert np.allclose(net(x).numpy(), predict(loaded[name][0].model, x.numpy()), rtol=1e-12, atol=1e-13)
            A, g = activations_and_gradients(net, x, targets, layer)
            for method, cam in (("gradcam", colleague_gradcam(A, g)), ("gradcam++", colleague_gradcampp(A, g, fixed))):
                results[f"{name}/{method}/raw"] = cam.numpy()
                results[f"{name}/{method}/minicam"] = minicam_stage(cam, x.shape[2:]).numpy()
        return results

    buggy = colleague_results(fixed=False)
    buggy_file = folder / "results-colleague.npz"
    np.savez(buggy_file, **buggy)
    print(f"wrote {len(buggy)} maps to {buggy_file}; the rebuilt torch nets give minicam's logits to 1e-12")
else:
    buggy = buggy_file = None
    print("skipped: the colleague's torch implementation (torch is not installed); section 5 plants the same "
          "mistake in a results file built with NumPy, and verify diagnoses that one")

# %% [markdown]
# ## 4. verify the colleague's maps
#
# `verify(RESULTS, cases=DIR)` (or `python -m minicam verify RESULTS.npz --cases DIR`)
# compares each map with minicam's: the error of a map is, per image,
# $\max|r - e| / \max|e|$, and a float64 map passes at $10^{-6}$. For every failure it
# recomputes the map with each variant of its catalogue, and each pair (method variant,
# pipeline variant), and names those that reproduce the submitted map.

# %%
if buggy is not None:
    report = verify(buggy_file, cases=folder)
    print(report.to_text())
    assert not report.ok and report.exit_code == 1
    for name in CASE_NAMES:
        for stage in ("raw", "minicam"):
            control = report.entry(f"{name}/gradcam/{stage}")
            assert control.status == "PASS" and control.error < 1e-12, control.sentence()
            entry = report.entry(f"{name}/gradcam++/{stage}")
            assert entry.status == "FAIL" and entry.error > 0.05, entry.sentence()
            best = entry.diagnosis[0]
            assert best.names == ("torchcam-0.5.0-gradcampp",) and best.error < 1e-12, entry.sentence()
    worst = max(e.error for e in report.entries if e.method == "gradcam++")
    print(f"\nEvery Grad-CAM++ map fails (largest error {worst:.2g}) and every one is reproduced by "
          f"'torchcam-0.5.0-gradcampp' to rounding; every Grad-CAM control passes to 1e-12.")
else:
    print("skipped: verify on the colleague's torch results (torch is not installed)")

# %% [markdown]
# ## 5. What went wrong: indexing with a boolean mask makes a copy
#
# `alpha[usable]` with a boolean (or integer) index is **advanced indexing**: it returns
# a new tensor holding copies of the selected elements. `.div_()` then divides that
# temporary in place, and the temporary is thrown away. `alpha` keeps its value $g^2$.
# A slice (`alpha[1:]`) returns a **view**, so the same line with a slice works: that is
# why the pattern looks safe. The augmented assignment `alpha[usable] /= d` also works:
# Python turns it into `alpha.__setitem__(usable, alpha[usable] / d)`. NumPy behaves the
# same way, with `np.divide(..., out=a[mask])`.

# %%
a = np.array([1.0, 4.0, 9.0])
mask = a > 2
np.divide(a[mask], 2.0, out=a[mask])  # `out` is the temporary copy made by a[mask]
print(f"NumPy: np.divide(a[mask], 2, out=a[mask]) -> a = {a}")
assert a.tolist() == [1.0, 4.0, 9.0]
np.divide(a[1:], 2.0, out=a[1:])      # a slice is a view: this one writes into a
assert a.tolist() == [1.0, 2.0, 4.5]
a[a > 2] /= 2.0                       # __setitem__: writes into a
assert a.tolist() == [1.0, 2.0, 2.25]
if torch is not None:
    t = torch.tensor([1.0, 4.0, 9.0])
    t[t > 2].div_(2.0)
    print(f"torch: t[t > 2].div_(2) -> t = {t.tolist()}")
    assert t.tolist() == [1.0, 4.0, 9.0]
    t[1:].div_(2.0)
    t[t > 2] /= 2.0
    assert t.tolist() == [1.0, 2.0, 2.25]
else:
    print("skipped: the same demonstration with torch tensors (torch is not installed)")

# %% [markdown]
# With $\alpha = g^2$ everywhere, the weights become
# $w_k = \sum_{ij} g_{kij}^2\,\mathrm{ReLU}(g_{kij}) = \sum_{ij}\mathrm{ReLU}(g_{kij})^3$:
# channels are ranked by the cube of their positive gradients, not by eq. 19. That is what
# verify's entry `torchcam-0.5.0-gradcampp` says. Do not take its word for it: compute
# that formula ourselves, in NumPy, from minicam's own activations and gradients
# (`minicam.cam.capture`), and compare. Without torch, these NumPy maps are the results
# file: the mistake planted by hand.

# %%
def cubed_gradient_maps(case):
    """ReLU(sum_k w_k A_k) with w_k = sum_ij ReLU(g)^3, from minicam's A and g: (raw, minicam stage)."""
    captured = capture(case.model, case.x, case.layer, case.targets)
    A, g = captured.A, captured.gradients().data
    weights = (np.maximum(g, 0) ** 3).sum(axis=(2, 3))
    raw = np.maximum(np.einsum("nk,nkhw->nhw", weights, A), 0)
    return raw, normalize_maps(resize_maps(raw, case.size, "bilinear"), "minmax")


planted = {}
for name, (case, expected) in loaded.items():
    planted[f"{name}/gradcam++/raw"], planted[f"{name}/gradcam++/minicam"] = cubed_gradient_maps(case)
planted_file = folder / "results-numpy-plant.npz"
np.savez(planted_file, **planted)
planted_report = verify(planted_file, cases=folder)
for entry in planted_report.entries:
    assert entry.status == "FAIL" and entry.diagnosis[0].names == ("torchcam-0.5.0-gradcampp",), entry.sentence()
    assert entry.diagnosis[0].error < 1e-12
if buggy is None:  # without torch, this is the report to read
    print(planted_report.to_text())
print(f"NumPy plant: {planted_report.counts['FAIL']} maps, all FAIL, all diagnosed as "
      f"'{planted_report.entries[0].diagnosis[0].label}'; e.g.\n  {planted_report.entries[0].sentence()}")
if buggy is not None:
    agreement = max(np.abs(buggy[key] - planted[key]).max() / np.abs(planted[key]).max() for key in planted)
    print(f"colleague's torch maps vs sum ReLU(g)^3 computed in NumPy: max relative difference {agreement:.1e}")
    assert agreement < 1e-12

# %% [markdown]
# The figure shows what the bug does to the picture, for one case at the `minicam` stage.
# The buggy maps are plausible heat maps, close to minicam's: nobody would notice the
# difference by eye, which is why it survived in a released library. The last column says
# why they differ: the share of each channel in the weights. Cubing the gradients favours
# the channels with the largest gradients; eq. 19 weighs positive gradients almost evenly
# ($\alpha \approx \tfrac12$ when $g\sum A$ is small, lesson 07).

# %%
figure_case, expected_maps = loaded[FIGURE_CASE]
captured = capture(figure_case.model, figure_case.x, figure_case.layer, figure_case.targets)
A, g = captured.A, captured.gradients().data
weights_paper = (alpha_closed_form(A, g) * np.maximum(g, 0)).sum(axis=(2, 3))
weights_buggy = (np.maximum(g, 0) ** 3).sum(axis=(2, 3))
paper_raw = np.maximum(np.einsum("nk,nkhw->nhw", weights_paper, A), 0)
assert np.allclose(paper_raw, expected_maps["gradcam++/raw"], rtol=1e-12, atol=1e-15)  # eq. 19 is minicam's map

mine = expected_maps["gradcam++/minicam"]
theirs = (buggy if buggy is not None else planted)[f"{FIGURE_CASE}/gradcam++/minicam"]
difference = theirs - mine
limit = np.abs(difference).max()
channels = np.arange(A.shape[1])
fig = Figure(figsize=(13, 3.1 * len(mine)), layout="constrained")
axes = fig.subplots(len(mine), 4, squeeze=False)
for n in range(len(mine)):
    for ax, image, title, cmap, low, high in (
        (axes[n, 0], mine[n], "minicam (expected)", "jet", 0, 1),
        (axes[n, 1], theirs[n], "colleague (alpha = g$^2$)", "jet", 0, 1),
        (axes[n, 2], difference[n], f"colleague - minicam (max |.| {np.abs(difference[n]).max():.2f})", "RdBu_r",
         -limit, limit),
    ):
        shown = ax.imshow(image, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
        ax.set_title(f"image {n}: {title}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(shown, ax=ax, shrink=0.8)
    ax = axes[n, 3]
    ax.bar(channels - 0.2, weights_paper[n] / weights_paper[n].sum(), width=0.4, label="eq. 19 (minicam)")
    ax.bar(channels + 0.2, weights_buggy[n] / weights_buggy[n].sum(), width=0.4, label="sum ReLU(g)$^3$ (bug)")
    ax.set_xticks(channels)
    ax.set_xlabel("channel k")
    ax.set_ylabel("share of the weights")
    ax.set_title(f"image {n}: channel weights w_k / sum w", fontsize=9)
    ax.legend(fontsize=7)
fig.suptitle(f"Grad-CAM++ on case {FIGURE_CASE} (layer {figure_case.layer}, 4x4 maps -> 8x8): the no-op "
             "division gives a plausible but different map", fontsize=10)
print(f"saved {minicam.viz.save_figure(fig, '13_buggy_gradcampp')}")
for n in range(len(mine)):
    print(f"image {n}: channel shares eq. 19 {np.round(weights_paper[n] / weights_paper[n].sum(), 2)}, "
          f"bug {np.round(weights_buggy[n] / weights_buggy[n].sum(), 2)}")

# %% [markdown]
# ## 6. Fix it, verify again
#
# The fix divides out of place: `alpha = torch.where(usable, g2 / denominator, 0)` (with a
# safe denominator where `usable` is false, so that no NaN is ever computed). In a CI job
# one runs the command line and looks at its exit status: 0 all passed, 1 something
# failed, 2 the files could not be read.

# %%
if torch is not None:
    fixed = colleague_results(fixed=True)
    fixed_file = folder / "results-colleague-fixed.npz"
    np.savez(fixed_file, **fixed)
    fixed_report = verify(fixed_file, cases=folder)
    largest = max(entry.error for entry in fixed_report.entries)
    print(f"fixed: {fixed_report.counts['PASS']} of {len(fixed_report.entries)} maps pass, largest error {largest:.1e}")
    assert fixed_report.ok and fixed_report.exit_code == 0 and largest < 1e-12
    for path, expected_status in ((buggy_file, 1), (fixed_file, 0)):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):  # what `python -m minicam verify PATH --cases DIR` prints
            status = cli.verify_main([str(path), "--cases", str(folder)])
        print(f"$ python -m minicam verify {path.name} --cases {folder.name}\n  ... "
              f"{printed.getvalue().strip().splitlines()[-1]}")
        assert status == expected_status
else:
    print("skipped: the fixed colleague's code and the command line on its results (torch is not installed)")

# %% [markdown]
# ## 7. A real library: torchcam 0.5.0
#
# The bug above was not invented for this lesson. torchcam's `GradCAMpp._get_weights`
# (0.3.2 to 0.5.0) does `alpha = grad_2; alpha[idx][mask].div_(...)`, the same no-op, and it
# also uses the $\sum_{ij}(g^3 A)$ denominator (which the no-op hides). minicam's adapter
# runs torchcam's extractors on the exported cases (`normalized=False` gives `raw`,
# `normalized=True` upsampled gives the `torchcam` preset) and writes a results file.
# The `torchcam` preset means "as torchcam computes it": it passes Grad-CAM++ the option
# `divide_alpha=False` (and XGrad-CAM torchcam's eps), so those keys pass, bug included;
# the `raw` keys hold the paper's formula, and there verify names the bug.

# %%
torchcam_report = None
if torch is not None:
    try:
        import torchcam
        from minicam.conformance import adapters
    except ImportError as error:
        print(f"skipped: torchcam cannot be imported ({error}); pip install torchcam==0.5.0 to run this part")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchcam warns about hooks and shapes on these tiny nets
            torchcam_results = adapters.run_torchcam(folder)
        torchcam_report = verify(torchcam_results, cases=folder)
        print(f"torchcam {torchcam.__version__}: {len(torchcam_results)} maps; "
              f"{torchcam_report.counts['PASS']} pass, {torchcam_report.counts['FAIL']} fail")
        per_method = {}
        for entry in torchcam_report.entries:
            per_method.setdefault(entry.method, []).append(entry)
        print(f"\n{'method':<10} {'maps':>4} {'pass':>4} {'largest error':>13}  first diagnosis of the failures")
        for method, entries in per_method.items():
            names = sorted({e.diagnosis[0].label for e in entries if e.status == "FAIL" and e.diagnosis})
            print(f"{method:<10} {len(entries):>4} {sum(e.status == 'PASS' for e in entries):>4} "
                  f"{max(e.error for e in entries):>13.1e}  {', '.join(names) or '-'}")
        print("\nGradCAMpp, as verify reports it:")
        for entry in per_method["gradcam++"]:
            print(f"  {entry.sentence()}")
            if entry.stage == "torchcam":  # the preset computes as torchcam does, its bug included
                assert entry.status == "PASS" and entry.error < 1e-12, entry.sentence()
                continue
            assert entry.status == "FAIL" and entry.error > 0.05, entry.sentence()
            best = entry.diagnosis[0]
            assert best.names == ("torchcam-0.5.0-gradcampp",) and best.error < 1e-12, entry.sentence()
        for method in ("gradcam", "layercam"):
            assert all(e.status == "PASS" and e.error < 1e-12 for e in per_method[method]), method
        # the same formula, computed by hand in NumPy, reproduces torchcam's raw maps
        by_hand = max(np.abs(torchcam_results[key] - planted[key]).max() / np.abs(planted[key]).max()
                      for key in planted if key.endswith("/raw"))
        print(f"torchcam's raw GradCAMpp vs sum ReLU(g)^3 computed in NumPy: max relative difference {by_hand:.1e}")
        assert by_hand < 1e-12
else:
    print("skipped: torchcam 0.5.0 through minicam's adapter (torch is not installed)")

# %% [markdown]
# Two other rows of that table are **conventions**, not mistakes: XGrad-CAM divides by
# $\sum A + 10^{-8}$, which shows only where $\sum A$ is tiny (case `tiny_maps`) or signed
# (`captum_toy`); Score-CAM scores the **logit** where the paper uses the softmax
# probability. The bar chart puts every method's largest error on one axis.

# %%
if torchcam_report is not None:
    methods = list(per_method)
    errors = [max(max(e.error for e in per_method[m]), 1e-17) for m in methods]  # 0 shown at 1e-17 (log axis)
    failed = [any(e.status == "FAIL" for e in per_method[m]) for m in methods]
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(methods, errors, color=["tab:red" if f else "tab:green" for f in failed])
    ax.set_yscale("log")
    ax.axhline(torchcam_report.tolerance, color="black", linestyle="--", linewidth=1)
    ax.text(len(methods) - 0.5, torchcam_report.tolerance * 2, f"tolerance {torchcam_report.tolerance:.0e}",
            ha="right", fontsize=8)
    for bar, method, is_failed in zip(bars, methods, failed):
        names = sorted({e.diagnosis[0].label for e in per_method[method] if e.status == "FAIL" and e.diagnosis})
        label = "\n".join(names) if is_failed else "PASS"
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() * 3, label, ha="center", fontsize=7)
    ax.set_ylim(1e-17, 1e4)
    ax.set_ylabel("largest error over cases and stages")
    ax.set_title(f"torchcam {torchcam.__version__} against minicam, {len(CASE_NAMES)} cases (red: fails)", fontsize=10)
    print(f"saved {minicam.viz.save_figure(fig, '13_torchcam_errors')}")
else:
    print("skipped: the bar chart of torchcam's errors (torch or torchcam is not installed)")

# %% [markdown]
# ## 8. A convention is reported differently from a mistake
#
# Plant two convention differences in a results file made with NumPy from minicam's own
# expected maps (no torch needed): Grad-CAM++ upsampled on a **corner-aligned** grid
# (`F.interpolate(..., align_corners=True)` or `nn.UpsamplingBilinear2d`) for the `minicam`
# stage, with its `raw` map exact; and Grad-CAM normalised with **eps 1e-7** added to the
# range. Then plant the colleague's mistake together with the corner-aligned grid. Compare
# the three signatures:
#
# - a **mistake in the formula** fails at `raw` and at every stage, and is named by a
#   `method` variant;
# - a **convention** passes at `raw`, fails only at the stages that use the step, and only
#   on cases where the step does something, and is named by a `pipeline` variant.
#   `gap_net` needs no upsampling, so its grid cannot matter. An eps changes the top of a
#   min-max map from 1 to $r/(r + \varepsilon)$, $r$ the map's range: the error is
#   $\varepsilon/(r + \varepsilon)$, below the tolerance $10^{-6}$ only where $r > 0.1$. The
#   Grad-CAM maps of these small random nets have small ranges (printed below; only
#   `captum_toy`'s are large), so the eps of 1e-7 shows on most cases;
# - both at once are named as a pair, `method variant + pipeline variant`.

# %%
conventions = {}
for name, (case, expected) in loaded.items():
    conventions[f"{name}/gradcam++/raw"] = expected["gradcam++/raw"]
    conventions[f"{name}/gradcam++/minicam"] = normalize_maps(
        resize_maps(expected["gradcam++/raw"], case.size, "bilinear-corners"), "minmax")
    conventions[f"{name}/gradcam/minicam"] = normalize_maps(
        resize_maps(expected["gradcam/raw"], case.size, "bilinear"), "minmax", 1e-7)
both = {f"{FIGURE_CASE}/gradcam++/minicam": normalize_maps(
    resize_maps(planted[f"{FIGURE_CASE}/gradcam++/raw"], loaded[FIGURE_CASE][0].size, "bilinear-corners"), "minmax")}
convention_report = verify(conventions, cases=folder)
for name, (case, expected) in loaded.items():
    upsampled = resize_maps(expected["gradcam/raw"], case.size, "bilinear").reshape(len(case.x), -1)
    print(f"{name}: ranges of the upsampled Grad-CAM maps "
          f"{', '.join(f'{r:.1e}' for r in upsampled.max(axis=1) - upsampled.min(axis=1))}")
pair_entry = verify(both, cases=folder).entry(f"{FIGURE_CASE}/gradcam++/minicam")
mistake_report = report if buggy is not None else planted_report  # the colleague's, or the NumPy plant


def first_name(entry):
    return entry.diagnosis[0].label if entry.status == "FAIL" else "-"


def kind_of(entry):
    return " + ".join(CATALOGUE[n].kind for n in entry.diagnosis[0].names) if entry.status == "FAIL" else "-"


print(f"{'what was planted':<30} {'key':<30} {'error':>8}  {'status':<6} {'named':<26} kind")
rows = [("formula mistake (alpha = g^2)", e) for e in mistake_report.entries if e.method == "gradcam++"]
rows += [("corner-aligned upsampling", convention_report.entry(f"{n}/gradcam++/{s}"))
         for n in CASE_NAMES for s in ("raw", "minicam")]
rows += [("min-max with eps 1e-7", convention_report.entry(f"{n}/gradcam/minicam")) for n in CASE_NAMES]
rows += [("mistake + corner-aligned", pair_entry)]
for what, entry in rows:
    print(f"{what:<30} {entry.key:<30} {entry.error:>8.1e}  {entry.status:<6} {first_name(entry):<26} {kind_of(entry)}")

for what, entry in rows:
    if what.startswith("formula"):
        assert entry.status == "FAIL" and kind_of(entry) == "method"
    elif what.startswith("corner"):
        no_resize = loaded[entry.case][1]["gradcam++/raw"].shape[1:] == loaded[entry.case][0].size
        if entry.stage == "raw" or no_resize:
            assert entry.status == "PASS" and entry.error == 0.0, entry.sentence()
        else:
            assert entry.status == "FAIL" and first_name(entry) == "corner-aligned-upsampling", entry.sentence()
    elif what.startswith("min-max"):  # the error is eps / (range + eps), range of the upsampled map
        case, expected = loaded[entry.case]
        upsampled = resize_maps(expected["gradcam/raw"], case.size, "bilinear").reshape(len(case.x), -1)
        span = upsampled.max(axis=1) - upsampled.min(axis=1)
        predicted = np.max(np.where(span > 0, 1e-7 / (span + 1e-7), 0.0))  # an all-zero map stays 0 either way
        assert np.isclose(entry.error, predicted, rtol=1e-6, atol=1e-15), (entry.key, entry.error, predicted)
        if predicted > 1e-6:
            assert entry.status == "FAIL" and first_name(entry) == "eps-1e-7", entry.sentence()
        else:
            assert entry.status == "PASS", entry.sentence()
assert pair_entry.diagnosis[0].names == ("torchcam-0.5.0-gradcampp", "corner-aligned-upsampling"), pair_entry.sentence()
print(f"\nthe pair, as verify says it:\n  {pair_entry.sentence()}")

# %% [markdown]
# ## 9. A Keras tutorial, through the same cases (TensorFlow)
#
# The cases are framework-neutral: `minicam.conformance.adapters.run_keras_tutorial` rebuilds each
# net in Keras (channels-last, with `minicam.interop`'s conversions) and runs the Grad-CAM of a widely
# read Keras tutorial (keras-io `examples/vision/grad_cam.py`) as it computes it: the gradients pooled
# over the positions, each channel times its pooled gradient, then the **mean** over channels, a
# ReLU, and a division by the **max** at the layer's resolution before upsampling. It submits every
# stage (logits, $A$, $g$, the weights, `raw`, `minicam`), so verify can say where it first parts:
# the logits, $A$, $g$ and the weights agree; the raw map is $\frac1K$ of Grad-CAM's, because
# $\frac1K\sum_k$ is not $\sum_k$ (harmless after dividing by the max, but not the paper's map).
# Then tf-keras-vis's float32 Grad-CAM++: its $e^{S}$ factor overflows float32 for a logit
# $S > 88.7$ and it returns NaN; minicam raises `NonFiniteError` instead.

# %%
try:
    import tensorflow  # noqa: F401  (slow to import: about 5 s)
    import keras  # noqa: F401
except ImportError as error:
    print(f"skipped: the TensorFlow part (TensorFlow cannot be imported: {error}); pip install -e '.[peers]' to run it")
else:
    from minicam.conformance import adapters
    from minicam.errors import NonFiniteError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tutorial = verify(adapters.run_keras_tutorial(folder), cases=folder)
    for entry, agreed in tutorial.firsts:
        print(f"  {entry.key}: first differs at {entry.stage}"
              f"{'' if agreed is None else ' (' + agreed.stage + ' agrees)'}: {entry.cause()[:110]}")
    for entry in tutorial.entries:
        if entry.stage in ("logits", "A", "g", "weights"):
            assert entry.status == "PASS", entry.sentence()
        if entry.method == "gradcam" and entry.stage == "raw":
            assert entry.diagnosis[0].names == ("scale",) and "mean over channels" in entry.diagnosis[0].summary
        if entry.method == "gradcam" and entry.stage == "minicam" and entry.status == "FAIL":
            assert "keras-io-heatmap" in [m.label for m in entry.diagnosis], entry.sentence()
    # tf-keras-vis's Grad-CAM++ multiplies by exp(S) g^3: with captum_toy's logit 54 it overflows float32
    toy = loaded["captum_toy"][0]
    logit = float(predict(toy.model, toy.x)[0, toy.targets[0]])
    with np.errstate(over="ignore"):
        print(f"captum_toy image 0: logit S = {logit:.1f}; exp(S) in float32 = {np.exp(np.float32(logit))}")
    try:
        import tf_keras_vis.gradcam_plus_plus as tkv
        from tf_keras_vis.utils.scores import CategoricalScore
        case = adapters.read_case(folder / "captum_toy")
        net32 = adapters.keras_net(case["layers"], case["weights"], case["x"].shape[1:], "float32")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = np.asarray(tkv.GradcamPlusPlus(net32, clone=False)(
                CategoricalScore([int(t) for t in toy.targets]), toy.x.astype(np.float32).transpose(0, 2, 3, 1),
                penultimate_layer=toy.layer, seek_penultimate_conv_layer=False))
        print(f"tf-keras-vis GradcamPlusPlus, float32: NaN in image 0's map: {bool(np.isnan(theirs[0]).any())}")
        assert np.isnan(theirs[0]).any()
    except ImportError as error:
        print(f"skipped: tf-keras-vis's own map (it cannot be imported: {error})")
    from minicam.conformance.architecture import build, describe
    toy32 = build(describe(toy.model), toy.model.state_dict(), dtype=np.float32)  # the same net in float32
    try:
        minicam.cam.explain(toy32, toy.x.astype(np.float32), "gradcam++", toy.layer, toy.targets,
                            convention="tf-keras-vis")
        raise AssertionError("minicam should have refused the overflow")
    except NonFiniteError as error:
        print(f"minicam: NonFiniteError: {str(error)[:150]}...")

print(f"\nlesson 13 ran in {time.perf_counter() - START:.1f} s")

# %% [markdown]
# Read the table from left to right, as you would read a report on someone's code: a
# failure at `raw` means the formula; a failure only after upsampling means a convention; a
# pass within the tolerance (the eps of 1e-7 on `captum_toy`'s maps of range about 10) is
# not a difference at all. The first name in a diagnosis is the simplest explanation: single variants come
# before pairs, and among equally good matches the catalogue's order decides. Several
# names can fit one map (on a $2\times2$ map, min-max leaves few degrees of freedom: see
# `captum_toy` in section 4, where Grad-CAM+ also matches), so look at every key of a case
# before concluding.
#
# ## Exercises
#
# 1. Plant the other Grad-CAM++ mistake of the table: in the fixed `colleague_gradcampp`,
#    replace `A.sum(dim=(2, 3), keepdim=True) * g3` by `(g3 * A).sum(dim=(2, 3), keepdim=True)`.
#    Which cases fail, which pass, and why does `gap_net` not see this mistake? (Hint: what
#    is $g$ over the positions of a channel on a GAP head? See lesson 06.) On one case
#    verify finds no known variant: remove `& (denominator > 0)` as well, as 1Konny's code
#    does, and verify again. What did the guard do there?
# 2. Remove `& (denominator > 0)` from the fixed code's `usable`. Which case fails, and
#    what does verify call it? Count the positions where $2 + g\sum A \le 0$ and explain why
#    only one case has any (lesson 07, the pole of eq. 19).
# 3. Submit the colleague's fixed maps under the key `.../torchcam` instead of
#    `.../minicam`, without changing them. What does verify report, and what would you
#    change in the colleague's code to produce the torchcam preset (read
#    `minicam.cam.conventions.PRESETS`)?
# 4. Give the colleague's Grad-CAM `targets = logits.argmax(dim=1)` instead of the
#    exported targets. Which variant is named, and on which case does it not show?
# 5. Run `python -m minicam.conformance.adapters DIR torch captum` and verify both results
#    files. Which of captum's maps fail, and is that a mistake or a convention?
#
# ## Instructor notes
#
# - **Expected output** (full mode, five cases): every Grad-CAM++ map of the colleague
#   fails (errors about 1 at `raw`, 0.1 at `minicam`; 80 on `captum_toy`, whose signed
#   activations make the cubed weights large), each one reproduced by
#   `torchcam-0.5.0-gradcampp` to about 1e-15; the Grad-CAM control passes to 1e-15. After
#   the fix, every map passes to 1e-15 and the command line exits 0. torchcam 0.5.0: CAM,
#   Grad-CAM and LayerCAM pass to 1e-15; GradCAMpp fails on all ten maps with the same
#   diagnosis; XGradCAM passes to about 1e-9 except on `tiny_maps` and `captum_toy`
#   (`xgradcam-eps-1e-8`); ScoreCAM fails as `torchcam-scorecam` (logits) except on
#   `captum_toy`, where every masked input gives the same logit. Section 8:
#   corner-aligned upsampling fails everywhere except `gap_net` (no upsampling) and `raw`;
#   the eps of 1e-7 fails on every case but `captum_toy`, with errors exactly
#   $\varepsilon/(r+\varepsilon)$ (1e-2 on `tiny_maps`, whose maps have a range of 1e-5).
#   Fast mode uses three cases (`captum_toy`, `flatten_net`, `tiny_maps`).
# - **Exercise answers** (full mode). 1: `captum_toy`, `flatten_net` and `tiny_maps` fail,
#   `gap_net` and `bn_net` pass (on a GAP head $g$ is constant over a channel's positions,
#   so $\sum(g^3A) = g^3\sum A$). With the guard kept, `flatten_net` is "no known variant"
#   (closest about 0.16): $\sum(g^3A)$ can be negative there (negative gradients), the guard
#   then drops positions the catalogued variant keeps; without the guard all three are
#   named `gradcampp-sum-g3A`. 2: only `captum_toy` fails, named `gradcampp-unguarded`
#   (one position with $2 + g\sum A \le 0$; only its layer has negative activations).
#   3: `captum_toy` and `gap_net` pass, the others fail as `normalise-resize-normalise`
#   (also `resize-then-normalise`): the order of the steps, a convention. 4:
#   `predicted-class`, everywhere but `captum_toy`, whose targets are its predictions.
#   5: captum's Grad-CAM and guided backpropagation pass; `GuidedGradCam` fails as
#   `captum-guided-gradcam` (nearest upsampling, no normalisation): a convention.
# - **Misconception**: "the maps look similar, so the implementation is right". The buggy
#   maps are still plausible heat maps; only a number-by-number comparison on fixed
#   weights catches the bug. Shape tests, which is what most libraries have, cannot.
# - **Misconception**: "any difference is a bug". Most differences between libraries are
#   conventions; the point of the `raw` stage is to compare the formula before any of them.
#   Ask: which stage fails first?
# - **Misconception**: "`x[mask].op_()` writes into x". It does not in torch or NumPy;
#   `x[mask] = ...` and `x[mask] /= ...` do. Ask the class to predict the three results of
#   the NumPy cell in section 5 before running it.
# - **Discussion prompt**: verify names the closest known variant. When could a matching
#   variant be the wrong explanation (two variants that coincide on a case), and how does
#   a suite of several cases reduce that risk? (Exercise 1 is an example: the
#   $\sum(g^3A)$ mistake is invisible on a GAP head.)
# - **Discussion prompt**: torchcam's own benchmark reports GradCAMpp's Average Drop as
#   much worse than Grad-CAM's (docs/peers.md, Grad-CAM++). Would you have suspected a bug from that
#   number alone? What does lesson 12 say about such numbers?
# - **Section 9** (TensorFlow; skipped without it): the keras-io tutorial's Grad-CAM agrees on the
#   logits, $A$, $g$ and the weights, and first differs at `raw` by exactly $\frac1K$ (verify: `scale`,
#   "the mean over channels instead of the sum"); its `minicam` maps are `keras-io-heatmap` (divided by
#   the max at the layer's resolution, then resized); its "Grad-CAM++" is `method-gradcam+`. Importing
#   TensorFlow takes about 5 s of the lesson's time (fast mode: about 19 s with TensorFlow, 9 s without).
# - **Timing**: 10 minutes for section 1, 5 for the export, 15 for the colleague's code,
#   the diagnosis and the mask demonstration (let students hunt for the bug before running
#   verify), 5 for torchcam, 10 for section 8. The script runs in about 10 seconds, most
#   of it importing torch and torchcam (fast mode: three cases, about as long).
