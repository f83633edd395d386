"""A network as plain data: a list of named layers (JSON) plus a state_dict (npz).

The conformance cases are torch-style Sequentials of named layers, so that
another framework can rebuild them exactly. The description is a list, in
order, with torch's class names and constructor argument names:

    [{"name": "conv1", "type": "Conv2d",
      "args": {"in_channels": 3, "out_channels": 4, "kernel_size": [3, 3], "stride": [1, 1],
               "padding": [1, 1], "dilation": [1, 1], "groups": 1, "bias": true}},
     {"name": "relu1", "type": "ReLU", "args": {}},
     ...]

In torch: torch.nn.Sequential(OrderedDict((l["name"], getattr(torch.nn, l["type"])(**l["args"]))
for l in layers)), then load_state_dict with the weights; `build` below does the
same with minicam.nn. The weights travel separately, with torch's state_dict keys
("conv1.weight", "bn1.running_var", "fc.bias", ...).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from minicam import nn

# type -> the constructor arguments that describe it (all of them JSON numbers, booleans or lists)
LAYER_ARGUMENTS = {
    "Conv2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias"),
    "Linear": ("in_features", "out_features", "bias"),
    "BatchNorm2d": ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    "ReLU": (),
    "Sigmoid": (),
    "Tanh": (),
    "Identity": (),
    "MaxPool2d": ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
    "AvgPool2d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
    "AdaptiveAvgPool2d": ("output_size",),
    "Flatten": ("start_dim", "end_dim"),
    "Dropout": ("p",),
}


def describe(model) -> list[dict]:
    """The layer list of a minicam nn.Sequential whose children are all plain layers."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"describe() needs an nn.Sequential of named layers, got {type(model).__name__}")
    layers = []
    for name, module in model.named_children():
        kind = type(module).__name__
        if kind not in LAYER_ARGUMENTS:
            raise ValueError(f"layer {name!r} is a {kind}; describable layers: {', '.join(LAYER_ARGUMENTS)}")
        args = {}
        for argument in LAYER_ARGUMENTS[kind]:
            value = getattr(module, argument)
            if argument == "bias" and kind in ("Conv2d", "Linear"):
                value = value is not None  # the constructor takes a flag; the module holds the Parameter
            args[argument] = _plain(value)
        layers.append({"name": name, "type": kind, "args": args})
    return layers


def build(layers: list[dict], state: dict | None = None, dtype=np.float64) -> nn.Sequential:
    """A minicam nn.Sequential (eval mode) from a layer list, with `state` loaded if given."""
    modules = OrderedDict()
    for index, layer in enumerate(layers):
        name, kind, args = layer.get("name"), layer.get("type"), dict(layer.get("args", {}))
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"layer {index}: a name without dots is required, got {name!r}")
        if kind not in LAYER_ARGUMENTS:
            raise ValueError(f"layer {name!r}: unknown type {kind!r}; known types: {', '.join(LAYER_ARGUMENTS)}")
        unknown = set(args) - set(LAYER_ARGUMENTS[kind])
        if unknown:
            raise ValueError(f"layer {name!r} ({kind}): unknown arguments {sorted(unknown)}")
        args = {key: tuple(value) if isinstance(value, list) else value for key, value in args.items()}
        if kind in ("Conv2d", "Linear", "BatchNorm2d"):
            args["dtype"] = dtype
        if kind in ("Conv2d", "Linear"):
            args["rng"] = np.random.default_rng(0)  # replaced by `state`; only makes the build deterministic
        modules[name] = getattr(nn, kind)(**args)
    model = nn.Sequential(modules)
    if state is not None:
        model.load_state_dict({key: _state_value(value, dtype) for key, value in state.items()})
    return model.eval()


def _state_value(value, dtype):
    value = np.asarray(value)
    return value.astype(dtype) if value.dtype.kind == "f" else value


def _plain(value):
    """A JSON-friendly copy: tuples become lists, NumPy scalars Python numbers."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
