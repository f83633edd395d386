"""The README.md written into an exported case folder: the format, the conventions, and how
to produce a results file. Generated, so that it lists the cases, presets and variants
exactly as exported."""
from __future__ import annotations

from minicam.cam.registry import REGISTRY
from minicam.conformance.format import DEFAULT_FLOAT32_TOLERANCE, DEFAULT_TOLERANCE, ERROR_MEASURE, STAGES, stage_note
from minicam.conformance.variants import CATALOGUE


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
        f"    python -m minicam verify results.npz --cases THIS_FOLDER [--json] [--tolerance {DEFAULT_TOLERANCE:g}]",
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
        f"- `raw`: {stage_note('raw')}.",
        "- `<preset>`: the map before the method's final ReLU, then the preset's ReLU, resize to the input's size",
        "  (H, W) and per-image normalisation, in float64 (minicam's `explain(..., convention=preset)`):",
        "",
    ]
    lines += [f"  - `{preset}`: {stage_note(preset)}" for preset in STAGES[1:]]
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
    lines += [f"- `{m.name}`{' (ReLU)' if m.final_relu else ''}: {m.summary} ({m.paper})" for m in REGISTRY.values()]
    lines += ["", "## Cases", "", "| case | layer | images | input | layer map | methods | what it tests |", "|---|---|---|---|---|---|---|"]
    for case in cases:
        layer_shape = expected[case.name]["gradcam/raw"].shape[1:]
        methods = "all" if len(case.methods) == len(REGISTRY) else "all but " + ", ".join(
            m for m in REGISTRY if m not in case.methods)
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
        f"- dtype float64 (tolerance {DEFAULT_TOLERANCE:g}) or float32 (tolerance {DEFAULT_FLOAT32_TOLERANCE:g}). "
        "Other dtypes, other shapes, NaN",
        "  or infinite values are reported as INVALID; unknown keys as UNKNOWN; both are failures.",
        "",
        f"The error of a map is the {ERROR_MEASURE}. PASS if it is at most the tolerance.",
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
        "steps after it (ReLU, resize, normalisation). `docs/peers.md` is minicam's survey of these libraries",
        "(in the minicam repository, with each library's file and version); the other sources are the libraries' files.",
        "",
    ]
    for variant in CATALOGUE.values():
        if variant.name.startswith("method-"):
            continue
        scope = f" [{', '.join(variant.methods)}]" if variant.methods else ""
        lines.append(f"- `{variant.name}` ({variant.kind}){scope}: {variant.summary}. Source: {variant.source}.")
    lines += ["- `method-<name>` (method): the map of another method altogether.", ""]
    return "\n".join(lines)


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
