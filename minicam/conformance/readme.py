"""The README.md written into an exported case folder: the format, the conventions, and how
to produce a results file. Generated, so that it lists the cases, presets and variants
exactly as exported."""
from __future__ import annotations

from minicam.cam.conventions import PRESET_NOTES
from minicam.cam.registry import HAS_FINAL_RELU
from minicam.conformance.cases import STAGES

# What each method's expected map is, precisely enough to reproduce it (minicam.cam's docstrings
# have the derivations). A, g = dy/dA, sums over positions (i, j), Z = h * w.
METHOD_NOTES = {
    "cam": "sum_k W[c, k] A_k with W the final Linear layer's weight (Zhou et al. 2016); no ReLU, no bias",
    "gradcam": "ReLU(sum_k mean_ij(g_k) A_k) (Selvaraju et al. 2017, eq. 1-2)",
    "gradcam++": "ReLU(sum_k w_k A_k), w_k = sum_ij alpha_kij ReLU(g_kij), alpha = 1 / (2 + g sum_ab A_kab) (eq. 19) "
                 "where g > 0 and that denominator is > 0, else 0; no exp(S) factor, no renormalisation of alpha",
    "gradcam+": "ReLU(sum_k mean_ij(ReLU(g_k)) A_k) (Lerma & Lucas 2022)",
    "hirescam": "ReLU(sum_k g_k * A_k) (Draelos & Carin 2020)",
    "gradcam-elementwise": "sum_k ReLU(g_k * A_k) (pytorch-grad-cam's GradCAMElementWise); no final ReLU",
    "xgradcam": "ReLU(sum_k w_k A_k), w_k = sum_ij(g A) / sum_ij(A), and w_k = 0 where sum_ij(A) <= 0 (no eps)",
    "layercam": "ReLU(sum_k ReLU(g_k) * A_k) (Jiang et al. 2021)",
    "scorecam": "ReLU(sum_k alpha_k A_k), alpha = softmax over k of C_k, C_k = p(X * H_k) - p(0), p the target's "
                "softmax probability, H_k = min-max (exact; a constant channel gives 0) of A_k upsampled bilinearly "
                "(half-pixel) to the input size, the same mask for every colour channel (Wang et al. 2020, Algorithm 1)",
    "ablationcam": "ReLU(sum_k w_k A_k), w_k = (y - y_k) / |y|, y_k the logit with channel k of the layer set to 0 "
                   "(Desai & Ramaswamy 2020; |y| so that a negative logit does not flip the map)",
    "eigencam": "per image, O = A as (h*w, K), uncentred; the map is O v1 (v1 the first right singular vector), signed so "
                "that its sum is positive (if the sum is 0 to rounding: its largest-|.| element positive); no ReLU",
    "eigengradcam": "eigencam of g * A",
    "smoothgradcam++": "Grad-CAM++ with derivatives averaged over noisy inputs x + noise[s] (noise in inputs.npz): "
                       "D_p = mean_s exp(S_s - max_s S_s) g_s^p for p = 1, 2, 3; alpha = D2 / (2 D2 + sum_ab A_ab D3) "
                       "where D1 > 0 and alpha > 0, else 0; w_k = sum_ij alpha ReLU(D1); A of the clean input; "
                       "the target class is the case's",
    "guided-backprop": "the gradient of the logit with respect to the input with every nn.ReLU passing back only "
                       "positive gradients where its input was positive (Springenberg et al. 2015), then max over the "
                       "colour channels of |value|: (N, H, W)",
    "guided-gradcam": "guided backpropagation (N, C, H, W) times Grad-CAM (with ReLU) upsampled bilinearly (half-pixel) "
                      "to the input size and min-max normalised per image, then max over colour channels of |value|",
}


def readme(cases, expected) -> str:
    """The README for `cases`; expected: case name -> its expected maps (for the shapes)."""
    cases = list(cases)
    lines = [
        "# minicam conformance cases",
        "",
        "Small, deterministic test cases for class activation map (CAM) implementations, with the maps",
        "minicam (a pure-NumPy reference implementation) computes for them. Run your implementation on",
        "every case, save its maps in one `.npz` file, and let minicam say whether they match and, if not,",
        "which known convention or mistake explains the difference:",
        "",
        "    python -m minicam verify results.npz --cases THIS_FOLDER [--json] [--tolerance 1e-6]",
        "",
        "## Files",
        "",
        "| file | content |",
        "|---|---|",
        "| `index.json` | the case names, the stages, the key scheme, the tolerances |",
        "| `<case>/case.json` | the layer to explain, the targets, the methods, map shapes, method options, published values |",
        "| `<case>/architecture.json` | the net: `layers`, a list of `{name, type, args}` in order; `type` is a torch.nn class, `args` its constructor arguments |",
        "| `<case>/weights.npz` | the state_dict, with torch's keys (`conv1.weight`, `bn1.running_var`, `fc.bias`, ...), float64 |",
        "| `<case>/inputs.npz` | `x` (N, C, H, W) float64; `targets` (N,) int64, one class per image; `smoothgradcam++/noise` (samples, N, C, H, W) |",
        "| `<case>/expected.npz` | minicam's maps, keyed `<method>/<stage>`, float64 |",
        "",
        "## Conventions",
        "",
        "- Layout NCHW; weights (out, in, kh, kw); every net is a `torch.nn.Sequential` of the listed layers, in",
        "  **eval mode** (BatchNorm uses its running statistics).",
        "- The layer explained is the OUTPUT of the module named `layer` in `case.json` (a forward hook on it).",
        "  `A` is that output (N, K, h, w); `g = dy/dA`.",
        "- The score `y` of image n is the **logit** (the model's output before any softmax) of class",
        "  `targets[n]`. Nothing is explained for the predicted class unless it is the target. Score-CAM",
        "  alone uses the softmax probability (as its paper). Gradients of the sum of the batch's scores",
        "  give each image its own gradient: the images are independent.",
        "- Everything is per image: weights, normalisation, targets.",
        "",
        "## Stages: what a map means",
        "",
        "- `raw`: " + _raw_note(),
        "- `<preset>`: the map before the method's final ReLU, then the preset's ReLU, resize to the input's size",
        "  (H, W) and per-image normalisation, in float64 (minicam's `explain(..., convention=preset)`):",
        "",
    ]
    lines += [f"  - `{preset}`: {PRESET_NOTES[preset]}" for preset in STAGES[1:]]
    lines += [
        "",
        "  The expected maps are float64 for every preset, `pytorch-grad-cam` included (that library",
        "  returns float32: submit float32 maps and they are compared at the float32 tolerance).",
        "  Resizing is separable and linear: bilinear half-pixel = torch `F.interpolate(mode='bilinear',",
        "  align_corners=False)`; corner-aligned = `align_corners=True`; nearest = torch's legacy `nearest`.",
        "  Min-max: `(x - min) / (max - min)` per image (with eps: `/ (max - min + eps)`); without eps a map",
        "  with no range becomes 0.",
        "",
        "## Methods",
        "",
        "Method names as in `minicam.cam.METHODS`. `ReLU` marks a method whose paper ends with a ReLU",
        "(part of its `raw` map).",
        "",
    ]
    lines += [f"- `{method}`{' (ReLU)' if HAS_FINAL_RELU[method] else ''}: {note}" for method, note in METHOD_NOTES.items()]
    lines += ["", "## Cases", "", "| case | layer | images | input | layer map | methods | what it tests |", "|---|---|---|---|---|---|---|"]
    for case in cases:
        layer_shape = expected[case.name]["gradcam/raw"].shape[1:]
        methods = "all" if len(case.methods) == len(METHOD_NOTES) else "all but " + ", ".join(
            m for m in METHOD_NOTES if m not in case.methods)
        lines.append(f"| `{case.name}` | `{case.layer}` | {len(case.x)} | {tuple(case.x.shape[1:])} | "
                     f"{tuple(layer_shape)} | {methods} | {case.description} |")
    lines += [
        "",
        "## The results file",
        "",
        "One `.npz` (`np.savez(path, **maps)`) holding any subset of the maps:",
        "",
        "- key `<case>/<method>/<stage>`, e.g. `gap_net/gradcam/raw` or `bn_net/gradcam++/torchcam`;",
        "- value: the maps of all the case's images, shape (N, h, w) for `raw` (the layer's resolution; the",
        "  guided methods are at the input's size) and (N, H, W) for a preset (`case.json` lists the shapes);",
        "- dtype float64 (tolerance 1e-6) or float32 (tolerance 1e-4). Other dtypes, other shapes, NaN",
        "  or infinite values are reported as INVALID; unknown keys as UNKNOWN; both are failures.",
        "",
        "The error of a map is, for each image, `max|result - expected| / max|expected|` (absolute where the",
        "expected map is all zeros); the largest over the images. PASS if it is at most the tolerance.",
        "For a FAIL, verify recomputes the map with each known variant (below), and with each pair of a",
        "method variant and a pipeline variant, and names those that reproduce your map. Maps you do not",
        "submit are listed, not failed (`--require-all` fails them). Exit status: 0 if everything passed,",
        "1 if anything failed, 2 if the files could not be read.",
        "",
        "### Example: Grad-CAM in torch",
        "",
        "```python",
        *TORCH_EXAMPLE.strip("\n").splitlines(),
        "```",
        "",
        "For presets, resize and normalise as the stage says, e.g. for `minicam`:",
        "`F.interpolate(cam[:, None], size=x.shape[2:], mode='bilinear', align_corners=False)[:, 0]`, then",
        "`(m - m.min()) / (m.max() - m.min())` per image. minicam's own adapters for captum and torchcam",
        "are in `minicam/conformance/adapters.py`.",
        "",
        "## Known variants and mistakes (what verify looks for)",
        "",
        "A `method` variant changes how the map is computed at the layer; a `pipeline` variant changes the",
        "steps after it (ReLU, resize, normalisation). `peers.md` is minicam's survey of these libraries",
        "(shared/research/peers.md in the minicam repository); the other sources are the libraries' files.",
        "",
    ]
    from minicam.conformance.variants import CATALOGUE

    for variant in CATALOGUE.values():
        if variant.name.startswith("method-"):
            continue
        scope = f" [{', '.join(variant.methods)}]" if variant.methods else ""
        lines.append(f"- `{variant.name}` ({variant.kind}){scope}: {variant.summary}. Source: {variant.source}.")
    lines += ["- `method-<name>` (method): the map of another method altogether.", ""]
    return "\n".join(lines)


def _raw_note():
    from minicam.conformance.export import RAW_NOTE

    return RAW_NOTE + "."


# The example the README shows; a test runs it on an exported folder and verifies its output.
TORCH_EXAMPLE = '''
import json
from collections import OrderedDict

import numpy as np
import torch

folder = "cases"  # the folder written by `python -m minicam export-cases cases`


def load_net(case_folder):
    layers = json.load(open(f"{case_folder}/architecture.json"))["layers"]
    net = torch.nn.Sequential(OrderedDict(
        (layer["name"], getattr(torch.nn, layer["type"])(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in layer["args"].items()}))
        for layer in layers)).double()       # float64 first: loading into float32 would round the weights
    weights = np.load(f"{case_folder}/weights.npz")
    net.load_state_dict({key: torch.from_numpy(weights[key]) for key in weights.files})
    return net.eval()


results = {}
for name in json.load(open(f"{folder}/index.json"))["cases"]:
    case = json.load(open(f"{folder}/{name}/case.json"))
    net = load_net(f"{folder}/{name}")
    inputs = np.load(f"{folder}/{name}/inputs.npz")
    x, targets = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["targets"])
    stored = {}
    layer = dict(net.named_modules())[case["layer"]]
    handle = layer.register_forward_hook(lambda module, inp, out: stored.setdefault("A", out))
    logits = net(x)
    handle.remove()
    A = stored["A"]
    y = logits[torch.arange(len(x)), targets]            # the target's logit, not its softmax
    (g,) = torch.autograd.grad(y.sum(), A)
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * A).sum(dim=1))   # Grad-CAM (N, h, w)
    results[f"{name}/gradcam/raw"] = cam.detach().numpy()

np.savez("results.npz", **results)
'''
