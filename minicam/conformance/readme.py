"""The README.md written into an exported case folder: the format, the conventions, and how
to produce a results file. Generated, so that it lists the cases, presets and variants
exactly as exported."""
from __future__ import annotations

from minicam.cam.registry import REGISTRY
from minicam.conformance.format import DEFAULT_TOLERANCE, ERROR_MEASURE, FLOAT32_RULE, STAGES, stage_note
from minicam.conformance.stages import STAGE_NOTES, WEIGHTED
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
        "| `<case>/expected.npz` | minicam's values, float64: the maps keyed `<method>/<stage>`, and every stage before and between them: `logits`, `score`, `A`, `g`, `<method>/weights`, `<method>/<preset>/after-<step>` |",
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
        "One `.npz` (`np.savez(path, **values)`) holding any subset of these keys, in the order of the",
        "computation (verify reports the FIRST one that differs, with what it means, before the rest):",
        "",
        "| key | shape | value |",
        "|---|---|---|",
        f"| `<case>/logits` | (N, classes) | {STAGE_NOTES['logits']} |",
        f"| `<case>/score` | (N,) | {STAGE_NOTES['score']} |",
        f"| `<case>/<method>/A` | (N, K, h, w) | {STAGE_NOTES['A']}; channels FIRST (from Keras: `A.transpose(0, 3, 1, 2)`) |",
        f"| `<case>/<method>/g` | (N, K, h, w) | {STAGE_NOTES['g']} |",
        f"| `<case>/<method>/weights` | (N, K) | {STAGE_NOTES['weights']}; methods {', '.join(WEIGHTED)} |",
        "| `<case>/<method>/raw` | (N, h, w) | the method's map at the layer (see Stages) |",
        "| `<case>/<method>/<preset>/after-<step>` | (N, h, w) or (N, H, W) | the map after each step of the preset: `after-relu` "
        "(where the preset has a ReLU), `after-resize`, `after-normalize`, in the preset's order; a step's second time is "
        "numbered (`pytorch-grad-cam`: `after-normalize`, `after-resize`, `after-normalize-2`) |",
        "| `<case>/<method>/<preset>` | (N, H, W) | the finished map |",
        "",
        "e.g. `gap_net/logits`, `gap_net/gradcam/g`, `gap_net/gradcam/raw`, `bn_net/gradcam++/minicam/after-resize`,",
        "`bn_net/gradcam++/torchcam`. Maps are (N, h, w) for `raw` (the layer's resolution; the guided methods",
        "are at the input's size) and (N, H, W) for a preset (`case.json` lists the shapes). Values are float64",
        f"(tolerance {DEFAULT_TOLERANCE:g}) or float32 (tolerance {FLOAT32_RULE}). Other dtypes, shapes, NaN or infinite",
        "values are INVALID; unknown keys UNKNOWN; both are failures.",
        "",
        f"The error of a value is the {ERROR_MEASURE}. PASS if it is at most the tolerance.",
        "For a FAIL, verify recomputes the value with each known variant (below), each pair of a method",
        "variant and a pipeline variant, and each pair of a context (another target, score or net) and a",
        "method variant; it also tries a constant factor (e.g. 1/K: the mean over channels instead of the",
        "sum), a transposed or flipped map, another layer of the net, and, for the logits, A and g, the",
        "usual port mistakes. It names those that reproduce your value; when none does it says so, and",
        "where the largest difference is. Values you do not submit are listed, not failed (`--require-all`",
        "fails the maps). Exit status: 0 if everything passed, 1 if anything failed, 2 if the files could",
        "not be read.",
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
        "### Keras and TensorFlow (channels-last)",
        "",
        "The cases are written in torch's layouts. A channels-last framework needs these conversions",
        "(each is a documented function in `minicam.interop`, both ways; a wrong one still runs, and",
        "verify names it from your logits):",
        "",
        "| torch / the case | Keras | conversion (`minicam.interop`) | if it is wrong |",
        "|---|---|---|---|",
        "| images (N, C, H, W) | (N, H, W, C) | `x.transpose(0, 2, 3, 1)` (`images_to_nhwc`) | shape errors |",
        "| A, g (N, K, h, w) | (N, h, w, K) | `A.transpose(0, 3, 1, 2)` to save them (`images_from_nhwc`) | INVALID, says channels-last |",
        "| Conv2d weight (K, C, kh, kw) | Conv2D kernel (kh, kw, C, K) | `w.transpose(2, 3, 1, 0)` (`conv_kernel_to_hwio`); never `reshape` | `conv-kernel-reshaped` |",
        "| Linear weight (out, in) | Dense kernel (in, out) | `w.T` (`dense_kernel_to_keras`) | |",
        "| Linear after Flatten of (C, H, W) | Dense after Flatten of (H, W, C) | `w.reshape(out, C, H, W).transpose(2, 3, 1, 0).reshape(H*W*C, out)` (`flatten_dense_to_keras`); NOT `w.T` | `flatten-dense-transposed` |",
        "| BatchNorm2d weight, bias, running_mean, running_var, eps (1e-5), momentum (0.1) | gamma, beta, moving_mean, moving_variance, epsilon (default 1e-3), momentum = 1 - 0.1 | `batch_norm_to_keras`; give `epsilon=args['eps']` | `batchnorm-eps-keras` |",
        "| `padding=p` (both sides) | `ZeroPadding2D(p)` then `padding=\"valid\"`; `\"same\"` only where equal (`padding_to_keras`; stride 2 pads the bottom/right only) | | |",
        "| eval mode | `training=False` (the default of `model(x)`) | | `batchnorm-train-mode` |",
        "",
        "Resizing: `tf.image.resize(method='bilinear')` is the `minicam` preset's half-pixel bilinear;",
        "its `bicubic` is not torch's (Keys a = -0.5, border taps dropped: verify's `tf-bicubic-upsampling`).",
        "",
        "### Example: Grad-CAM in Keras (TensorFlow backend)",
        "",
        "The net rebuilt from `architecture.json` and `weights.npz`, the gradient with `tf.GradientTape`, and",
        "every stage saved (logits, A, g, weights, raw); verify then says which stage first differs.",
        "",
        "```python",
        *KERAS_EXAMPLE.strip("\n").splitlines(),
        "```",
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


# The Keras example the README shows; a test runs it exactly as printed on an exported folder and verifies it.
KERAS_EXAMPLE = '''
import json

import numpy as np
import keras
import tensorflow as tf

folder = "cases"  # the folder written by `python -m minicam export-cases cases`


def keras_net(case_folder, input_shape):
    """The case's net in Keras (channels-last, float64), with its weights converted from torch's layouts."""
    layers = json.load(open(f"{case_folder}/architecture.json"))["layers"]
    weights = np.load(f"{case_folder}/weights.npz")
    channels, height, width = input_shape
    inputs = x = keras.Input((height, width, channels), dtype="float64")
    settings = []  # (keras layer, its weights), set once the model is built
    for layer in layers:
        name, kind, args = layer["name"], layer["type"], layer["args"]
        if kind == "Conv2d":
            if any(args["padding"]):   # torch pads both sides alike: an explicit ZeroPadding2D, then "valid"
                x = keras.layers.ZeroPadding2D(tuple(args["padding"]), dtype="float64")(x)
            conv = keras.layers.Conv2D(args["out_channels"], tuple(args["kernel_size"]), strides=tuple(args["stride"]),
                                       use_bias=args["bias"], name=name, dtype="float64")
            x = conv(x)
            kernel = weights[f"{name}.weight"].transpose(2, 3, 1, 0)  # (K, C, kh, kw) -> (kh, kw, C, K): transpose
            settings.append((conv, [kernel] + ([weights[f"{name}.bias"]] if args["bias"] else [])))
        elif kind == "BatchNorm2d":  # Keras's default epsilon is 1e-3: give the case's
            norm = keras.layers.BatchNormalization(epsilon=args["eps"], name=name, dtype="float64")
            x = norm(x)
            settings.append((norm, [weights[f"{name}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]))
        elif kind in ("ReLU", "Tanh", "Sigmoid"):
            x = keras.layers.Activation(kind.lower(), name=name, dtype="float64")(x)
        elif kind == "MaxPool2d":
            x = keras.layers.MaxPooling2D(args["kernel_size"], strides=args["stride"] or args["kernel_size"], name=name,
                                          dtype="float64")(x)
        elif kind == "AdaptiveAvgPool2d":  # output_size 1: global average pooling, kept 4-D as torch does
            x = keras.layers.GlobalAveragePooling2D(keepdims=True, name=name, dtype="float64")(x)
        elif kind == "Flatten":
            flattened = tuple(x.shape[1:])  # (H, W, C): Keras flattens channels-last, in (h, w, c) order
            x = keras.layers.Flatten(name=name, dtype="float64")(x)
        elif kind == "Linear":
            dense = keras.layers.Dense(args["out_features"], use_bias=args["bias"], name=name, dtype="float64")
            x = dense(x)
            weight = weights[f"{name}.weight"]  # (out, C*H*W) in torch's (c, h, w) order
            h, w, c = flattened
            kernel = weight.reshape(-1, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1)  # NOT weight.T
            settings.append((dense, [kernel] + ([weights[f"{name}.bias"]] if args["bias"] else [])))
        else:
            raise NotImplementedError(kind)
    model = keras.Model(inputs, x)
    for keras_layer, values in settings:
        keras_layer.set_weights(values)
    return model


results = {}
for name in json.load(open(f"{folder}/index.json"))["cases"]:
    case = json.load(open(f"{folder}/{name}/case.json"))
    inputs = np.load(f"{folder}/{name}/inputs.npz")
    x, targets = inputs["x"], inputs["targets"]                    # x is (N, C, H, W)
    model = keras_net(f"{folder}/{name}", x.shape[1:])
    hooked = keras.Model(model.inputs, [model.get_layer(case["layer"]).output, model.output])
    with tf.GradientTape() as tape:
        A, logits = hooked(tf.constant(x.transpose(0, 2, 3, 1)))  # NHWC in
        tape.watch(A)
        y = tf.gather(logits, targets, axis=1, batch_dims=1)       # each image's target logit
    g = tape.gradient(y, A)                                         # dy/dA of each image (images independent)
    weights = tf.reduce_mean(g, axis=(1, 2))                        # per image and channel: (N, K)
    cam = tf.nn.relu(tf.einsum("nk,nhwk->nhw", weights, A))         # the SUM over channels, then ReLU
    results[f"{name}/logits"] = logits.numpy()
    results[f"{name}/gradcam/A"] = A.numpy().transpose(0, 3, 1, 2)  # back to (N, K, h, w)
    results[f"{name}/gradcam/g"] = g.numpy().transpose(0, 3, 1, 2)
    results[f"{name}/gradcam/weights"] = weights.numpy()
    results[f"{name}/gradcam/raw"] = cam.numpy()

np.savez("results.npz", **results)
'''
