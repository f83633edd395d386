"""Other implementations run on the exported cases, writing results files for verify (needs torch).

Everything here works from an exported folder only (minicam export-cases DIR), as
a third party would: the nets are rebuilt in torch from architecture.json and
weights.npz, in float64 and eval mode.

  run_torch(DIR)     a hand-written torch port ("a colleague's code"): Grad-CAM raw, and with
                     the minicam and pytorch-grad-cam presets (the latter in float32, as that
                     library returns); Grad-CAM++ with pytorch-grad-cam's formula (eps 1e-6)
  run_captum(DIR)    captum 0.9: LayerGradCam (relu_attributions=True -> raw; False, upsampled
                     by LayerAttribution.interpolate -> captum), GuidedBackprop, GuidedGradCam
  run_torchcam(DIR)  torchcam 0.5: CAM, GradCAM, GradCAMpp, XGradCAM, LayerCAM, ScoreCAM, ISCAM;
                     normalized=False -> raw; normalized=True, upsampled bilinearly
                     (align_corners=False, as its fuse_cams) -> torchcam.
                     SmoothGradCAMpp and SSCAM are not run: they draw their own noise, which cannot
                     be set to the exported noise, so their maps cannot be compared number by number
                     here (tests/test_peers_parity.py replays torch's generator instead).
  run_keras_tutorial(DIR)  (TensorFlow) the keras-io Grad-CAM tutorial's code (examples/vision/grad_cam.py),
                     written as it computes: one image at a time, gradients pooled with reduce_mean over
                     (batch, rows, columns), each channel times its pooled gradient, the MEAN over
                     channels, ReLU, divided by the max, upsampled bilinearly; and its "Grad-CAM++"
                     (ReLU of the gradients before pooling: Grad-CAM+, summed over channels). Every
                     stage is submitted (logits, A, g, weights, raw, minicam).
  run_tf_keras_vis(DIR) (TensorFlow) tf-keras-vis 0.8.7 Gradcam, GradcamPlusPlus, Layercam (float64) and
                     Scorecam (float32: it cannot run on float64 nets) -> the tf-keras-vis preset
  write_results(DIR) all of them -> DIR/results-<name>.npz

    python -m minicam.conformance.adapters DIR      (export first: python -m minicam export-cases DIR)

Maps come back as float64 NumPy arrays (N, h, w) or (N, H, W), keyed "<case>/<method>/<stage>".
torch (and keras, for keras_net) is imported inside the functions, so importing this module
never needs them.
"""
from __future__ import annotations

import json
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np

from minicam import files


# ----------------------------------------------------------------------------
# The exported cases, read as a third party would
# ----------------------------------------------------------------------------


def read_case(folder) -> dict:
    """case.json, the layer list, the weights and the inputs of one exported case."""
    folder = Path(folder)
    case = json.loads((folder / "case.json").read_text())
    case["layers"] = json.loads((folder / "architecture.json").read_text())["layers"]
    with np.load(folder / "weights.npz") as weights:
        case["weights"] = {key: weights[key] for key in weights.files}
    with np.load(folder / "inputs.npz") as inputs:
        case["x"], case["target_array"] = inputs["x"], inputs["targets"]
    return case


def cases_in(folder):
    """(name, case dict) for every case of an exported folder, in order."""
    folder = Path(folder)
    for name in json.loads((folder / "index.json").read_text())["cases"]:
        yield name, read_case(folder / name)


def torch_net(layers, weights):
    """torch.nn.Sequential of the named layers (torch.nn.<type>(**args)), weights loaded, float64, eval."""
    import torch

    modules = OrderedDict()
    for layer in layers:
        args = {key: tuple(value) if isinstance(value, list) else value for key, value in layer["args"].items()}
        modules[layer["name"]] = getattr(torch.nn, layer["type"])(**args)
    net = torch.nn.Sequential(modules).double()  # float64 BEFORE loading: loading into float32 would round
    net.load_state_dict({key: torch.from_numpy(np.asarray(value)) for key, value in weights.items()})
    return net.eval()


def keras_net(layers, weights, input_shape, dtype="float64"):
    """The same net as a Keras 3 model (channels-last, as Keras computes), weights converted, for
    tf-keras-vis: it takes images (N, H, W, C) and gives the same logits as torch_net on (N, C, H, W).

    Each layer keeps its exported name (a torch padding becomes a ZeroPadding2D called
    "<name>_pad" before it), so a layer's output is found by the same name. Conversions:
    Conv2d (K, C, kh, kw) -> kernel (kh, kw, C, K); Linear (out, in) -> Dense kernel (in, out);
    BatchNorm2d -> BatchNormalization with the running statistics and torch's eps; a Flatten of
    feature maps first permutes them back to (C, H, W) so that the Linear's columns line up.
    input_shape: one image's (C, H, W), as the case's x.shape[1:].
    """
    import keras

    state = {key: np.asarray(value) for key, value in weights.items()}
    channels, height, width = input_shape
    x = inputs = keras.Input(shape=(height, width, channels), dtype=dtype)
    four_d = True
    for layer in layers:
        name, kind, args = layer["name"], layer["type"], layer["args"]
        if kind == "Conv2d":
            if args.get("groups", 1) != 1:
                raise NotImplementedError(f"keras_net: layer {name!r} has groups={args['groups']}")
            if any(args["padding"]):
                x = keras.layers.ZeroPadding2D(tuple(args["padding"]), name=f"{name}_pad", dtype=dtype)(x)
            conv = keras.layers.Conv2D(args["out_channels"], tuple(args["kernel_size"]), strides=tuple(args["stride"]),
                                       dilation_rate=tuple(args["dilation"]), use_bias=args["bias"], name=name,
                                       dtype=dtype)
            x = conv(x)
            kernel = [state[f"{name}.weight"].transpose(2, 3, 1, 0)]
            conv.set_weights(kernel + ([state[f"{name}.bias"]] if args["bias"] else []))
        elif kind == "Linear":
            dense = keras.layers.Dense(args["out_features"], use_bias=args["bias"], name=name, dtype=dtype)
            x = dense(x)
            dense.set_weights([state[f"{name}.weight"].T] + ([state[f"{name}.bias"]] if args["bias"] else []))
        elif kind == "BatchNorm2d":
            norm = keras.layers.BatchNormalization(epsilon=args["eps"], name=name, dtype=dtype)
            x = norm(x)
            norm.set_weights([state[f"{name}.{key}"] for key in ("weight", "bias", "running_mean", "running_var")])
        elif kind == "ReLU":
            x = keras.layers.ReLU(name=name, dtype=dtype)(x)
        elif kind in ("Tanh", "Sigmoid"):
            x = keras.layers.Activation(kind.lower(), name=name, dtype=dtype)(x)
        elif kind == "MaxPool2d":
            if any(np.atleast_1d(args["padding"])) or any(np.atleast_1d(args["dilation"]) != 1) or args["ceil_mode"]:
                raise NotImplementedError(f"keras_net: layer {name!r} pads, dilates or rounds up")
            kernel = tuple(np.broadcast_to(args["kernel_size"], 2))
            stride = tuple(np.broadcast_to(args["stride"] or args["kernel_size"], 2))
            x = keras.layers.MaxPooling2D(kernel, strides=stride, name=name, dtype=dtype)(x)
        elif kind == "AdaptiveAvgPool2d":
            if tuple(np.broadcast_to(args["output_size"], 2)) != (1, 1):
                raise NotImplementedError(f"keras_net: layer {name!r} pools to {args['output_size']}, not 1 x 1")
            x = keras.layers.GlobalAveragePooling2D(keepdims=True, name=name, dtype=dtype)(x)
        elif kind == "Flatten":
            x = keras.layers.Permute((3, 1, 2), name=f"{name}_to_chw", dtype=dtype)(x) if four_d else x
            x = keras.layers.Flatten(name=name, dtype=dtype)(x)
        else:
            raise NotImplementedError(f"keras_net: no Keras layer for {kind} ({name!r})")
        four_d = len(x.shape) == 4
    return keras.Model(inputs, x)


def _upsample(maps, size, align_corners=False):
    import torch.nn.functional as F

    if tuple(maps.shape[1:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=align_corners)[:, 0]


def _minmax(maps, eps=0.0):
    """(x - min) / (max - min + eps) per map; exact (constant -> 0) when eps is 0."""
    import torch

    low = maps.flatten(1).min(dim=1).values[:, None, None]
    high = maps.flatten(1).max(dim=1).values[:, None, None]
    scale = high - low + eps
    return torch.where(scale > 0, (maps - low) / torch.where(scale > 0, scale, torch.ones_like(scale)),
                       torch.zeros_like(maps))


def _numpy(tensor):
    return tensor.detach().cpu().numpy()


# ----------------------------------------------------------------------------
# A hand-written torch port
# ----------------------------------------------------------------------------


def activations_and_gradients(net, x, layer, targets):
    """A at `layer` (a forward hook) and g = d(sum of target logits)/dA (torch.autograd.grad)."""
    import torch

    stored = {}
    module = dict(net.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, inputs, output: stored.setdefault("A", output))
    try:
        logits = net(x)
    finally:
        handle.remove()
    y = logits[torch.arange(len(x)), targets]
    (g,) = torch.autograd.grad(y.sum(), stored["A"])
    return stored["A"].detach(), g


def run_torch(folder) -> dict:
    """Grad-CAM as the papers define it, and pytorch-grad-cam's Grad-CAM++ and pipeline, in torch."""
    import torch

    results = {}
    for name, case in cases_in(folder):
        net = torch_net(case["layers"], case["weights"])
        x, targets = torch.from_numpy(case["x"]), torch.from_numpy(case["target_array"])
        A, g = activations_and_gradients(net, x, case["layer"], targets)
        signed = (g.mean(dim=(2, 3), keepdim=True) * A).sum(dim=1)
        cam = torch.relu(signed)
        results[f"{name}/gradcam/raw"] = _numpy(cam)
        results[f"{name}/gradcam/minicam"] = _numpy(_minmax(_upsample(cam, x.shape[2:])))
        results[f"{name}/gradcam/pytorch-grad-cam"] = _pytorch_grad_cam_pipeline(cam, x.shape[2:])
        # pytorch-grad-cam grad_cam_plusplus.py: aij = g^2 / (2 g^2 + sum(A) g^3 + 1e-6), 0 where g = 0
        sum_A = A.sum(dim=(2, 3), keepdim=True)
        aij = g**2 / (2 * g**2 + sum_A * g**3 + 1e-6)
        aij = torch.where(g != 0, aij, torch.zeros_like(aij))
        weights = (torch.relu(g) * aij).sum(dim=(2, 3), keepdim=True)
        plusplus = torch.relu((weights * A).sum(dim=1))
        results[f"{name}/gradcam++/raw"] = _numpy(plusplus)
        results[f"{name}/gradcam++/pytorch-grad-cam"] = _pytorch_grad_cam_pipeline(plusplus, x.shape[2:])
    return results


def _pytorch_grad_cam_pipeline(cam, size):
    """base_cam.py: ReLU'd map -> scale_cam_image (min-max, eps 1e-7, then cv2 bilinear resize =
    torch align_corners=False) -> float32 -> ReLU, min-max (eps 1e-7) again."""
    import torch

    maps = _upsample(_minmax(cam, 1e-7), size).float()
    return _numpy(_minmax(torch.relu(maps), 1e-7))


# ----------------------------------------------------------------------------
# captum
# ----------------------------------------------------------------------------


def run_captum(folder) -> dict:
    import torch
    from captum.attr import GuidedBackprop, GuidedGradCam, LayerAttribution, LayerGradCam

    results = {}
    for name, case in cases_in(folder):
        net = torch_net(case["layers"], case["weights"])
        x, targets = torch.from_numpy(case["x"]), case["targets"]
        layer = dict(net.named_modules())[case["layer"]]
        gradcam = LayerGradCam(net, layer)
        results[f"{name}/gradcam/raw"] = _numpy(gradcam.attribute(x, target=targets, relu_attributions=True)[:, 0])
        signed = gradcam.attribute(x, target=targets, relu_attributions=False)
        results[f"{name}/gradcam/captum"] = _numpy(LayerAttribution.interpolate(signed, tuple(x.shape[2:]))[:, 0])
        guided = GuidedBackprop(net).attribute(x, target=targets)
        results[f"{name}/guided-backprop/raw"] = _numpy(guided.abs().amax(dim=1))
        guided_gradcam = GuidedGradCam(net, layer).attribute(x, target=targets)
        results[f"{name}/guided-gradcam/raw"] = _numpy(guided_gradcam.abs().amax(dim=1))
    return results


# ----------------------------------------------------------------------------
# torchcam
# ----------------------------------------------------------------------------

TORCHCAM_METHODS = OrderedDict([
    ("cam", "CAM"), ("gradcam", "GradCAM"), ("gradcam++", "GradCAMpp"), ("xgradcam", "XGradCAM"),
    ("layercam", "LayerCAM"), ("scorecam", "ScoreCAM"), ("iscam", "ISCAM"),
])


def run_torchcam(folder) -> dict:
    import torch
    import torchcam.methods

    results = {}
    for name, case in cases_in(folder):
        net = torch_net(case["layers"], case["weights"])
        x = torch.from_numpy(case["x"])
        linear = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Linear)][-1]
        for method, class_name in TORCHCAM_METHODS.items():
            if method not in case["methods"]:
                continue
            extractor_class = getattr(torchcam.methods, class_name)
            for normalized, stage in ((False, "raw"), (True, "torchcam")):
                options = {"fc_layer": linear} if method == "cam" else {}
                with extractor_class(net, case["layer"], input_shape=tuple(x.shape[1:]), **options) as extractor:
                    if method in ("cam", "scorecam", "iscam"):
                        with torch.no_grad():
                            net(x)  # the hooks keep the activations (and, for Score-CAM, the input)
                        maps = extractor(class_idx=case["targets"], normalized=normalized)
                    else:
                        maps = extractor(class_idx=case["targets"], scores=net(x), normalized=normalized)
                maps = maps[0].detach()
                results[f"{name}/{method}/{stage}"] = _numpy(_upsample(maps, x.shape[2:]) if normalized else maps)
    return results


# ----------------------------------------------------------------------------
# All of them
# ----------------------------------------------------------------------------

# ----------------------------------------------------------------------------
# TensorFlow: the keras-io tutorial and tf-keras-vis
# ----------------------------------------------------------------------------


def _keras_case(case):
    return keras_net(case["layers"], case["weights"], case["x"].shape[1:])


def run_keras_tutorial(folder) -> dict:
    """The keras-io Grad-CAM tutorial's computation (make_gradcam_heatmap), on every case, one image at a
    time as the tutorial runs it; its "Grad-CAM++" under gradcam++ (the ReLU of the gradients before
    pooling). Keys: logits, gradcam/{A, g, weights, raw, minicam}, gradcam++/{raw, minicam}."""
    import keras
    import tensorflow as tf

    results = {}
    for name, case in cases_in(folder):
        model = _keras_case(case)
        grad_model = keras.Model(model.inputs, [model.get_layer(case["layer"]).output, model.output])
        images = case["x"].transpose(0, 2, 3, 1)
        size = case["x"].shape[2:]
        rows = {key: [] for key in ("logits", "A", "g", "pooled", "raw", "heatmap", "plus_raw", "plus_heatmap")}
        for image, target in zip(images, case["target_array"]):
            with tf.GradientTape() as tape:
                last_conv_layer_output, preds = grad_model(image[None])
                class_channel = preds[:, int(target)]
            grads = tape.gradient(class_channel, last_conv_layer_output)
            pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))           # over the batch AND the positions
            weighted = last_conv_layer_output.numpy()[0] * pooled_grads.numpy()  # each channel times its weight
            heatmap = np.mean(weighted, axis=-1)                           # the MEAN over channels
            relu = np.maximum(heatmap, 0)
            rows["raw"].append(relu)
            rows["heatmap"].append(relu / np.max(relu))                   # divided by the max
            # its "Grad-CAM++": ReLU of the gradients before pooling, the sum over channels
            plus = np.maximum(last_conv_layer_output.numpy()[0] @ tf.reduce_mean(tf.nn.relu(grads), axis=(0, 1, 2))
                              .numpy(), 0)
            rows["plus_raw"].append(plus)
            rows["plus_heatmap"].append(plus / np.max(plus))
            rows["logits"].append(preds.numpy()[0])
            rows["A"].append(last_conv_layer_output.numpy()[0].transpose(2, 0, 1))
            rows["g"].append(grads.numpy()[0].transpose(2, 0, 1))
            rows["pooled"].append(pooled_grads.numpy())

        def upsample(maps):  # the tutorial's display resize: bilinear, half-pixel (tf.image.resize, as cv2)
            resized = tf.image.resize(np.stack(maps)[..., None], tuple(size), method="bilinear")
            return resized.numpy()[..., 0].astype(np.float64)

        results[f"{name}/logits"] = np.stack(rows["logits"])
        results[f"{name}/gradcam/A"] = np.stack(rows["A"])
        results[f"{name}/gradcam/g"] = np.stack(rows["g"])
        results[f"{name}/gradcam/weights"] = np.stack(rows["pooled"])
        results[f"{name}/gradcam/raw"] = np.stack(rows["raw"])
        results[f"{name}/gradcam/minicam"] = upsample(rows["heatmap"])
        results[f"{name}/gradcam++/raw"] = np.stack(rows["plus_raw"])
        results[f"{name}/gradcam++/minicam"] = upsample(rows["plus_heatmap"])
    return results


TF_KERAS_VIS_METHODS = OrderedDict([("gradcam", "Gradcam"), ("gradcam++", "GradcamPlusPlus"),
                                    ("layercam", "Layercam"), ("scorecam", "Scorecam")])


def run_tf_keras_vis(folder) -> dict:
    """tf-keras-vis on every case's Keras net, at the case's layer (seek_penultimate_conv_layer=False: its
    default would silently explain another layer) -> "<case>/<method>/tf-keras-vis". Scorecam runs on a
    float32 net (its float32 weights cannot multiply float64 activations); a map with NaN (Grad-CAM++'s
    exp(S) overflowing float32) is left out."""
    import tf_keras_vis.gradcam
    import tf_keras_vis.gradcam_plus_plus
    import tf_keras_vis.layercam
    import tf_keras_vis.scorecam
    from tf_keras_vis.utils.scores import CategoricalScore

    modules = {"Gradcam": tf_keras_vis.gradcam, "GradcamPlusPlus": tf_keras_vis.gradcam_plus_plus,
               "Layercam": tf_keras_vis.layercam, "Scorecam": tf_keras_vis.scorecam}
    results = {}
    for name, case in cases_in(folder):
        for method, class_name in TF_KERAS_VIS_METHODS.items():
            if method not in case["methods"]:
                continue
            dtype = "float32" if method == "scorecam" else "float64"
            model = keras_net(case["layers"], case["weights"], case["x"].shape[1:], dtype)
            explainer = getattr(modules[class_name], class_name)(model, clone=False)
            options = {"batch_size": 32} if method == "scorecam" else {}
            maps = np.asarray(explainer(CategoricalScore([int(t) for t in case["target_array"]]),
                                        case["x"].astype(dtype).transpose(0, 2, 3, 1),
                                        penultimate_layer=case["layer"], seek_penultimate_conv_layer=False, **options))
            if np.all(np.isfinite(maps)):
                results[f"{name}/{method}/tf-keras-vis"] = maps
    return results


ADAPTERS = OrderedDict([("torch", run_torch), ("captum", run_captum), ("torchcam", run_torchcam),
                        ("keras-tutorial", run_keras_tutorial), ("tf-keras-vis", run_tf_keras_vis)])


def write_results(folder, names=None) -> "OrderedDict[str, Path]":
    """Run each adapter (default: all) on the exported folder; write DIR/results-<name>.npz."""
    folder = Path(folder)
    written = OrderedDict()
    for name in names or ADAPTERS:
        path = folder / f"results-{name}.npz"
        files.write_npz(path, ADAPTERS[name](folder))  # minicam wrote it: it carries minicam's mark
        written[name] = path
    return written


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    folder, names = Path(argv[0]), argv[1:] or None
    unknown = [n for n in names or () if n not in ADAPTERS]
    if unknown:
        print(f"unknown adapter(s) {unknown}; choose from {list(ADAPTERS)}", file=sys.stderr)
        return 2
    if not (folder / "index.json").is_file():
        print(f"{folder} holds no exported cases; run `python -m minicam export-cases {folder}` first", file=sys.stderr)
        return 2
    for name, path in write_results(folder, names).items():
        print(f"{name}: wrote {path}; check it with: python -m minicam verify {path} --cases {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
