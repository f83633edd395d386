"""Bring weights into minicam: from torch modules and state_dicts, and from Keras (channels-last).

An engineer checks another implementation against minicam by running both on
identical weights. This file moves the weights in, unchanged:

  from_torch(module)               a torch.nn tree of standard layers -> the same minicam tree
                                   (names, weights, train/eval flags), float64 by default
  state_dict_from_torch(sd)        a torch state_dict -> {name: NumPy array}, for
                                   minicam_model.load_state_dict(...) (e.g. a torchvision ResNet
                                   into minicam.models.resnet50())
  From Keras/TensorFlow (channels-last) to minicam/torch, and back:
  conv_kernel_from_hwio(k)         Keras Conv2D kernel (kh, kw, C, K) -> minicam/torch (K, C, kh, kw)
  conv_kernel_to_hwio(w)           minicam/torch (K, C, kh, kw) -> Keras Conv2D kernel (kh, kw, C, K)
  dense_kernel_from_keras(k)       Keras Dense kernel (in, out) -> minicam/torch (out, in)
  dense_kernel_to_keras(w)         minicam/torch (out, in) -> Keras Dense kernel (in, out)
  flatten_dense_from_keras(k, ...) a Dense after Flatten of a channels-last map: reorder its rows
  flatten_dense_to_keras(w, ...)   a Linear after Flatten of an NCHW map, as the Dense kernel Keras needs
  batch_norm_from_keras(...)       BatchNormalization's gamma, beta, moving statistics, epsilon, momentum
  batch_norm_to_keras(...)         -> BatchNorm2d's state and arguments, and back
  images_from_nhwc(x)              images (N, H, W, C) -> (N, C, H, W)
  images_to_nhwc(x)                images (N, C, H, W) -> (N, H, W, C)
  same_padding_from_keras(...)     Keras/TensorFlow padding="same" as explicit (left, right, top, bottom)
  padding_to_keras(...)            a torch/minicam padding as Keras's: "same", "valid", or a ZeroPadding2D

torch is imported inside the torch functions only: `import minicam` never needs torch.

Keras pitfalls these helpers do not hide (check them when a port disagrees):
  - BatchNormalization: epsilon defaults to 1e-3 (torch: 1e-5), and momentum 0.99
    means torch's momentum 0.01. gamma, beta, moving_mean, moving_variance are
    weight, bias, running_mean, running_var.
  - padding="same" with stride 2 pads asymmetrically (the extra row and column go
    at the bottom and right), where a torch padding=1 pads both sides:
    see same_padding_from_keras.
  - Keras kernels are cross-correlations, like torch's: no flipping, only transposing.
"""
from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from minicam import nn
from minicam.autograd import Tensor

__all__ = [
    "from_torch", "state_dict_from_torch", "SUPPORTED_TORCH_LAYERS",
    "conv_kernel_from_hwio", "dense_kernel_from_keras", "flatten_dense_from_keras", "images_from_nhwc",
    "same_padding_from_keras", "conv_kernel_to_hwio", "dense_kernel_to_keras", "flatten_dense_to_keras",
    "images_to_nhwc", "batch_norm_from_keras", "batch_norm_to_keras", "padding_to_keras",
    "TORCH_BATCH_NORM_EPS", "KERAS_BATCH_NORM_EPS",
]

# ----------------------------------------------------------------------------
# From torch: a module tree
# ----------------------------------------------------------------------------

# torch.nn class name -> the minicam layer built from it (its settings, not yet its weights).
# Only these exact classes: a subclass may have its own forward, which cannot be read.
SUPPORTED_TORCH_LAYERS = (
    "Sequential", "Conv2d", "Linear", "BatchNorm2d", "ReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "Flatten", "Dropout", "Identity", "Sigmoid", "Tanh", "Softmax",
)


def from_torch(module, dtype=np.float64):
    """The minicam twin of a torch module built from standard layers.

    Supported: torch.nn.Sequential (numbered or named with an OrderedDict) holding,
    at any depth, Conv2d (groups=1, padding_mode="zeros"), Linear, BatchNorm2d,
    ReLU, MaxPool2d, AvgPool2d (ceil_mode=False), AdaptiveAvgPool2d, Flatten,
    Dropout, Identity, Sigmoid, Tanh and Softmax (with its dim given).

    The twin has the same named_modules() (names and order), the same
    state_dict() keys, the weights and buffers converted to `dtype` (np.float64 by
    default: float32 weights widen exactly; num_batches_tracked stays int64), and
    every module's train/eval flag. A module used twice in torch is one module
    used twice in the twin. Nothing is shared with torch: later changes to either
    side do not reach the other.

    What does not carry over: Dropout draws its masks from minicam's generator,
    not torch's, so train-mode outputs with p > 0 differ (eval mode is exact);
    `inplace=True` is kept as a flag but minicam never overwrites its input.

    A torch.nn.Module subclass of your own (a ResNet block, a model class) has a
    forward that is arbitrary Python, so it cannot be converted: the error names
    it. Then build the same architecture with minicam.nn (same attribute names)
    and load the weights:

        twin = MyMinicamNet()
        twin.load_state_dict(state_dict_from_torch(torch_net.state_dict()))

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval()
        >>> twin = from_torch(net)       # minicam Sequential(Conv2d, ReLU), float64, eval mode
        >>> twin(x.numpy().astype(np.float64))   # equals net(x) to rounding
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}; "
                        "for a state_dict use state_dict_from_torch")
    dtype = _checked_float_dtype(dtype, "from_torch")
    converted = {}  # id(torch module) -> its minicam twin (a shared module stays shared)
    twin = _convert(module, "", dtype, converted, torch)
    # The weights: one state_dict, keyed as torch's (the twin has the same keys by construction).
    twin.load_state_dict(state_dict_from_torch(module.state_dict()), strict=True)
    twin_modules = dict(twin.named_modules())
    for name, torch_module in module.named_modules():
        twin_modules[name].training = torch_module.training  # each module's own flag: modes may be mixed
    return twin


def _convert(module, path, dtype, converted, torch):
    """The minicam module (without weights) for the torch module at `path`."""
    if id(module) in converted:
        return converted[id(module)]
    where = f"the module {path!r}" if path else "the root module"
    kind = f"{type(module).__module__}.{type(module).__qualname__}"
    _refuse_hooks(module, where, kind)
    name = type(module).__name__
    standard = getattr(torch.nn, name, None) is type(module)  # the exact torch.nn class, not a subclass
    if not standard or name not in SUPPORTED_TORCH_LAYERS:
        raise _unsupported(module, where, kind, torch)
    if name == "Sequential":
        children = OrderedDict()
        for child_name, child in module._modules.items():
            child_path = f"{path}.{child_name}" if path else child_name
            children[child_name] = None if child is None else _convert(child, child_path, dtype, converted, torch)
        twin = nn.Sequential()
        for child_name, child in children.items():
            twin.add_module(child_name, child)
    else:
        twin = _LAYER_BUILDERS[name](module, where, dtype)
    converted[id(module)] = twin
    return twin


def _refuse_hooks(module, where, kind):
    """Hooks can change what a module computes; minicam cannot copy them."""
    hooks = {
        "forward hook": len(module._forward_hooks),
        "forward pre-hook": len(module._forward_pre_hooks),
        "backward hook": len(module._backward_hooks) + len(getattr(module, "_backward_pre_hooks", {})),
    }
    present = [f"{count} {what}(s)" for what, count in hooks.items() if count]
    if present:
        raise ValueError(f"from_torch: {where} ({kind}) has {', '.join(present)}, which cannot be converted "
                         "(a hook may change the output or the gradients). Remove them (handle.remove()) "
                         "before converting, and register minicam hooks on the twin if you need them")


def _unsupported(module, where, kind, torch):
    supported = ", ".join(SUPPORTED_TORCH_LAYERS)
    fix = ("build the same architecture with minicam.nn (a minicam.nn.Module subclass with the same attribute "
           "names) and copy the weights with twin.load_state_dict(minicam.interop.state_dict_from_torch("
           "torch_module.state_dict()))")
    if isinstance(module, torch.nn.Module) and type(module).__module__.startswith("torch.nn"):
        return TypeError(f"from_torch: cannot convert {where}: minicam has no equivalent of {kind}. "
                         f"Supported layers: {supported}. To compare anyway, {fix}")
    return TypeError(f"from_torch: cannot convert {where} ({kind}): it is a custom torch.nn.Module subclass, "
                     f"and its forward is arbitrary Python code that cannot be converted automatically. "
                     f"Only these exact torch.nn classes are converted: {supported}. Instead, {fix}")


def _conv2d(m, where, dtype):
    if m.groups != 1:
        raise ValueError(f"from_torch: {where} is a Conv2d with groups={m.groups}; minicam computes groups=1 only "
                         "(grouped and depthwise convolutions are not implemented)")
    if m.padding_mode != "zeros":
        raise ValueError(f"from_torch: {where} is a Conv2d with padding_mode={m.padding_mode!r}; minicam implements "
                         "'zeros' only")
    return nn.Conv2d(m.in_channels, m.out_channels, tuple(m.kernel_size), stride=tuple(m.stride),
                     padding=m.padding if isinstance(m.padding, str) else tuple(m.padding),
                     dilation=tuple(m.dilation), bias=m.bias is not None, dtype=dtype)


def _linear(m, where, dtype):
    return nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, dtype=dtype)


def _batch_norm2d(m, where, dtype):
    # torch 2.x accepts bias=False with affine=True: a weight without a bias
    has_bias = m.bias is not None if m.affine else True  # without affine, `bias` means nothing
    return nn.BatchNorm2d(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                          track_running_stats=m.track_running_stats, dtype=dtype, bias=has_bias)


def _max_pool2d(m, where, dtype):
    if m.ceil_mode or m.return_indices:
        raise ValueError(f"from_torch: {where} is a MaxPool2d with ceil_mode={m.ceil_mode}, "
                         f"return_indices={m.return_indices}; minicam implements ceil_mode=False and "
                         "return_indices=False only")
    return nn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation)


def _avg_pool2d(m, where, dtype):
    if m.ceil_mode:
        raise ValueError(f"from_torch: {where} is an AvgPool2d with ceil_mode=True; minicam implements "
                         "ceil_mode=False only")
    return nn.AvgPool2d(m.kernel_size, m.stride, m.padding, count_include_pad=m.count_include_pad,
                        divisor_override=m.divisor_override)


def _softmax(m, where, dtype):
    if m.dim is None:
        raise ValueError(f"from_torch: {where} is a Softmax with dim=None (torch then guesses the dimension, "
                         "a deprecated behaviour); construct it with torch.nn.Softmax(dim=...)")
    return nn.Softmax(dim=m.dim)


_LAYER_BUILDERS = {
    "Conv2d": _conv2d,
    "Linear": _linear,
    "BatchNorm2d": _batch_norm2d,
    "ReLU": lambda m, where, dtype: nn.ReLU(inplace=m.inplace),
    "MaxPool2d": _max_pool2d,
    "AvgPool2d": _avg_pool2d,
    "AdaptiveAvgPool2d": lambda m, where, dtype: nn.AdaptiveAvgPool2d(m.output_size),
    "Flatten": lambda m, where, dtype: nn.Flatten(m.start_dim, m.end_dim),
    "Dropout": lambda m, where, dtype: nn.Dropout(m.p, inplace=m.inplace),
    "Identity": lambda m, where, dtype: nn.Identity(),
    "Sigmoid": lambda m, where, dtype: nn.Sigmoid(),
    "Tanh": lambda m, where, dtype: nn.Tanh(),
    "Softmax": _softmax,
}


def _checked_float_dtype(dtype, owner):
    if dtype is None:
        return None
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{owner}: dtype must be np.float64 or np.float32, got {dtype!r}") from None
    if dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise TypeError(f"{owner}: dtype must be np.float64 or np.float32, got {dtype}")
    return dtype


# ----------------------------------------------------------------------------
# From torch: a state_dict
# ----------------------------------------------------------------------------


def state_dict_from_torch(state_dict, dtype=None) -> OrderedDict:
    """A torch state_dict as {key: NumPy array}, same keys, same order, for
    minicam's Module.load_state_dict.

    Values may be torch tensors (on any device, with or without requires_grad),
    NumPy arrays or minicam Tensors; every value is copied, so nothing is shared
    with the source. Floating point values keep float64 and float32 (float16 and
    bfloat16 widen exactly to float32; minicam computes in float32 or float64),
    or all become `dtype` when it is given (np.float64 or np.float32). Integer
    values keep their type, except that BatchNorm's num_batches_tracked is
    always int64 (torch's type).

    Example (torchvision weights into minicam's ResNet-18, no torchvision needed):
        >>> sd = torch.load("resnet18-f37072fd.pth", weights_only=True)
        >>> model = minicam.models.resnet18().eval()
        >>> model.load_state_dict(state_dict_from_torch(sd))
    """
    if not isinstance(state_dict, Mapping):
        hint = " (a module: pass module.state_dict())" if hasattr(state_dict, "state_dict") else ""
        raise TypeError(f"state_dict_from_torch: expected a mapping name -> tensor, got "
                        f"{type(state_dict).__name__}{hint}")
    dtype = _checked_float_dtype(dtype, "state_dict_from_torch")
    arrays = OrderedDict()
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"state_dict_from_torch: keys must be strings like 'conv1.weight', got {key!r}")
        array = _as_numpy(key, value)
        if array.dtype.kind == "f":
            if dtype is not None:
                array = array.astype(dtype)
            elif array.dtype not in (np.float32, np.float64):
                array = array.astype(np.float32)  # float16: exact widening
        elif key.endswith("num_batches_tracked"):
            array = array.astype(np.int64)
        elif array.dtype.kind not in "biu":
            raise TypeError(f"state_dict_from_torch: {key!r} has dtype {array.dtype}; "
                            "expected floating point or integer values")
        arrays[key] = array
    return arrays


def _as_numpy(key, value) -> np.ndarray:
    """A copy of `value` as a NumPy array; torch tensors without importing torch
    (if the value is a torch tensor, torch is already loaded)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16; float32 holds it exactly
            tensor = tensor.to(torch.float32)
        try:
            return np.array(tensor.numpy(), copy=True)
        except (RuntimeError, TypeError) as error:
            raise TypeError(f"state_dict_from_torch: {key!r} ({tensor.dtype}) cannot become a NumPy array: "
                            f"{error}") from None
    if isinstance(value, Tensor):
        return np.array(value.data, copy=True)
    array = np.array(value, copy=True)
    if array.dtype.kind in "OSUV":  # objects, strings, bytes: not numbers
        raise TypeError(f"state_dict_from_torch: {key!r} holds a {type(value).__name__}, "
                        "not a tensor or an array")
    return array


# ----------------------------------------------------------------------------
# From Keras / TensorFlow: channels-last
# ----------------------------------------------------------------------------
#
# Keras stores images (N, H, W, C), Conv2D kernels (kh, kw, C, K) ("HWIO") and
# Dense kernels (in, out), and computes y = x @ kernel + bias. minicam and torch
# store images (N, C, H, W), conv weights (K, C, kh, kw) and Linear weights
# (out, in), and compute y = x @ weight^T + bias. Both convolutions are
# cross-correlations, so moving a kernel is a transpose, never a flip.
# (Keras documentation: keras.layers.Conv2D, "kernel" of shape
# kernel_size + (input_channels, filters); keras.layers.Dense, kernel (input_dim, units).)


def _checked_array(value, rank, name, layout, hint=""):
    array = np.asarray(value.data if isinstance(value, Tensor) else value)
    if array.ndim != rank:
        raise ValueError(f"{name}: expected a {rank}-D array {layout}, got shape {array.shape}{hint}")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected numbers, got dtype {array.dtype}")
    return array


def conv_kernel_from_hwio(kernel) -> np.ndarray:
    """A Keras/TensorFlow Conv2D kernel (kh, kw, C, K) as a minicam/torch weight (K, C, kh, kw).

    weight[k, c, i, j] = kernel[i, j, c, k]  (a transpose; both are cross-correlations).

    Example: a 3x3 kernel from 2 to 5 channels
        >>> kernel = keras_layer.get_weights()[0]        # shape (3, 3, 2, 5)
        >>> conv_kernel_from_hwio(kernel).shape
        (5, 2, 3, 3)
    then `conv.weight.data[...] = conv_kernel_from_hwio(kernel)` and the bias as is.
    """
    kernel = _checked_array(kernel, 4, "conv_kernel_from_hwio", "(kh, kw, in_channels, out_channels)",
                            "; a Dense kernel (in, out) goes through dense_kernel_from_keras")
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def dense_kernel_from_keras(kernel) -> np.ndarray:
    """A Keras Dense kernel (in, out) as a minicam/torch Linear weight (out, in): its transpose.

    Keras computes y = x @ kernel + b, torch y = x @ weight^T + b, so weight = kernel^T.
    Example: Dense(10) on 64 features has kernel (64, 10) -> weight (10, 64).
    After Flatten of a feature map, use flatten_dense_from_keras instead: the rows
    are in another order.
    """
    kernel = _checked_array(kernel, 2, "dense_kernel_from_keras", "(in_features, out_features)")
    return np.ascontiguousarray(kernel.T)


def images_from_nhwc(x) -> np.ndarray:
    """Images (N, H, W, C) as (N, C, H, W): x.transpose(0, 3, 1, 2), a contiguous copy.

    Example: a batch of two 32x32 RGB images (2, 32, 32, 3) -> (2, 3, 32, 32).
    For one image (H, W, C) pass x[None].
    """
    x = _checked_array(x, 4, "images_from_nhwc", "(N, H, W, C)", "; for one image (H, W, C) pass x[None]")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _check_flattened(owner, count, counted, channels, height, width, shape, layer):
    """The map's sizes must be positive ints whose product is the number of flattened inputs."""
    for name, size in (("channels", channels), ("height", height), ("width", width)):
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise ValueError(f"{owner}: {name} must be a positive int, got {size!r}")
    if count != channels * height * width:
        raise ValueError(f"{owner}: {counted.format(count)} but the flattened map {shape} has "
                         f"{channels * height * width}; give the shape of the map that enters {layer}")


def flatten_dense_from_keras(kernel, channels: int, height: int, width: int) -> np.ndarray:
    """The Linear weight (out, C*H*W) equal to a Keras Dense kernel (H*W*C, out) that
    follows Flatten of a channels-last (H, W, C) map.

    Keras flattens a map in (h, w, c) order: row r = (h*W + w)*C + c of its kernel
    multiplies element [h, w, c]. minicam and torch flatten (C, H, W) in (c, h, w)
    order: column q = (c*H + h)*W + w. So

        weight[o, (c*H + h)*W + w] = kernel[(h*W + w)*C + c, o]
        i.e. kernel.reshape(H, W, C, out).transpose(3, 2, 0, 1).reshape(out, C*H*W).

    A plain transpose (dense_kernel_from_keras) would give the same shape and wrong
    numbers: the classic bug of a channels-last port.

    Worked example, C=2, H=1, W=2, one output: the Keras input order is
    [x(0,0,c0), x(0,0,c1), x(0,1,c0), x(0,1,c1)] with kernel rows [a, b, c, d];
    the torch order is [x(c0,0,0), x(c0,0,1), x(c1,0,0), x(c1,0,1)], so the
    weight row is [a, c, b, d].
    """
    kernel = _checked_array(kernel, 2, "flatten_dense_from_keras", "(height * width * channels, out_features)")
    rows, out = kernel.shape
    _check_flattened("flatten_dense_from_keras", rows, "the kernel has {} input rows", channels, height, width,
                     f"(H, W, C) = ({height}, {width}, {channels})", "Keras's Flatten")
    weight = kernel.reshape(height, width, channels, out).transpose(3, 2, 0, 1)  # (out, C, H, W)
    return np.ascontiguousarray(weight.reshape(out, channels * height * width))


def same_padding_from_keras(height: int, width: int, kernel_size, stride=1, dilation=1) -> tuple:
    """Keras/TensorFlow padding="same" as explicit zero padding (left, right, top, bottom),
    the order of minicam.ops.pad, for a convolution (or pooling) then run with padding=0.

    TensorFlow's rule per dimension (TensorFlow API docs, "tf.nn.convolution", padding):
        out   = ceil(size / stride)
        total = max((out - 1) * stride + d * (k - 1) + 1 - size, 0)
        before = total // 2,  after = total - before   (the extra pixel at the end)

    Example: a 3x3 stride-2 conv on 32x32: total = 15*2 + 3 - 32 = 1, so (0, 1, 0, 1):
    nothing at the top and left, one row and column at the bottom and right. torch's
    padding=1 pads one on every side and gives different numbers for the same weights.
        >>> same_padding_from_keras(32, 32, 3, stride=2)
        (0, 1, 0, 1)
    """
    def pair(value, name):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
            return int(value), int(value)
        if isinstance(value, (tuple, list)) and len(value) == 2 and all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in value):
            return int(value[0]), int(value[1])
        raise ValueError(f"same_padding_from_keras: {name} must be a positive int or a pair of them, got {value!r}")

    (kh, kw), (sh, sw), (dh, dw) = pair(kernel_size, "kernel_size"), pair(stride, "stride"), pair(dilation, "dilation")
    (height, width) = pair((height, width), "(height, width)")

    def before_after(size, k, s, d):
        out = -(-size // s)  # ceil(size / s)
        total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
        return total // 2, total - total // 2

    top, bottom = before_after(height, kh, sh, dh)
    left, right = before_after(width, kw, sw, dw)
    return left, right, top, bottom


def conv_kernel_to_hwio(weight) -> np.ndarray:
    """A minicam/torch conv weight (K, C, kh, kw) as a Keras/TensorFlow Conv2D kernel (kh, kw, C, K).

    kernel[i, j, c, k] = weight[k, c, i, j]: the inverse of conv_kernel_from_hwio (a transpose,
    never a reshape: weight.reshape(kh, kw, C, K) has the right shape and the wrong numbers).

    Example: a 3x3 conv from 2 to 5 channels
        >>> weight = model.conv1.weight.data                 # shape (5, 2, 3, 3)
        >>> kernel = conv_kernel_to_hwio(weight)             # shape (3, 3, 2, 5)
        >>> keras_conv.set_weights([kernel, model.conv1.bias.data])
    """
    weight = _checked_array(weight, 4, "conv_kernel_to_hwio", "(out_channels, in_channels, kh, kw)",
                            "; a Linear weight (out, in) goes through dense_kernel_to_keras")
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def dense_kernel_to_keras(weight) -> np.ndarray:
    """A minicam/torch Linear weight (out, in) as a Keras Dense kernel (in, out): its transpose.

    Example: Linear(64, 10) has weight (10, 64) -> Dense(10) kernel (64, 10):
        >>> dense.set_weights([dense_kernel_to_keras(fc.weight.data), fc.bias.data])
    After Flatten of a feature map use flatten_dense_to_keras: Keras flattens in another order.
    """
    weight = _checked_array(weight, 2, "dense_kernel_to_keras", "(out_features, in_features)")
    return np.ascontiguousarray(weight.T)


def flatten_dense_to_keras(weight, channels: int, height: int, width: int) -> np.ndarray:
    """The Keras Dense kernel (H*W*C, out) equal to a minicam/torch Linear weight (out, C*H*W) that
    follows Flatten of an NCHW map (C, H, W): the inverse of flatten_dense_from_keras.

        kernel[(h*W + w)*C + c, o] = weight[o, (c*H + h)*W + w]
        i.e. weight.reshape(out, C, H, W).transpose(2, 3, 1, 0).reshape(H*W*C, out)

    Worked example, C=2, H=1, W=2, one output, weight row [a, c, b, d] (torch order
    x(c0,0,0), x(c0,0,1), x(c1,0,0), x(c1,0,1)): the Keras rows, in the order
    x(0,0,c0), x(0,0,c1), x(0,1,c0), x(0,1,c1), are [a, b, c, d].
        >>> flatten_dense_to_keras(np.array([[1., 3., 2., 4.]]), 2, 1, 2)[:, 0]
        array([1., 2., 3., 4.])
    A plain transpose (dense_kernel_to_keras) runs without error and gives wrong logits:
    minicam verify names that mistake 'flatten-dense-transposed'.
    """
    weight = _checked_array(weight, 2, "flatten_dense_to_keras", "(out_features, channels * height * width)")
    out, columns = weight.shape
    _check_flattened("flatten_dense_to_keras", columns, "the weight has {} input columns", channels, height, width,
                     f"(C, H, W) = ({channels}, {height}, {width})", "Flatten")
    kernel = weight.reshape(out, channels, height, width).transpose(2, 3, 1, 0)  # (H, W, C, out)
    return np.ascontiguousarray(kernel.reshape(height * width * channels, out))


def images_to_nhwc(x) -> np.ndarray:
    """Images (N, C, H, W) as (N, H, W, C): x.transpose(0, 2, 3, 1), a contiguous copy; the inverse of
    images_from_nhwc. Maps (N, h, w) need no conversion: they have no channel axis.

    Example: (2, 3, 32, 32) -> (2, 32, 32, 3); a Keras layer's output (N, h, w, K) goes back to
    minicam's A (N, K, h, w) with images_from_nhwc.
    """
    x = _checked_array(x, 4, "images_to_nhwc", "(N, C, H, W)", "; for one image (C, H, W) pass x[None]")
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


TORCH_BATCH_NORM_EPS = 1e-5   # torch.nn.BatchNorm2d and minicam.nn.BatchNorm2d
KERAS_BATCH_NORM_EPS = 1e-3   # keras.layers.BatchNormalization


def batch_norm_to_keras(state: Mapping, prefix: str = "", eps: float = TORCH_BATCH_NORM_EPS,
                        momentum: float | None = 0.1) -> dict:
    """A minicam/torch BatchNorm2d as Keras's BatchNormalization: {"weights": [gamma, beta,
    moving_mean, moving_variance] (set_weights' order), "epsilon": eps, "momentum": 1 - momentum}.

    Both compute gamma (x - mean) / sqrt(var + eps) + beta in inference. The differences:
      - names: weight, bias, running_mean, running_var = gamma, beta, moving_mean, moving_variance;
      - eps: torch's default 1e-5, Keras's 1e-3: pass epsilon=eps explicitly (with Keras's default
        the maps differ; minicam verify names it 'batchnorm-eps-keras');
      - momentum: torch updates running = (1 - m) running + m batch with m = 0.1; Keras
        moving = m' moving + (1 - m') batch with m' = 0.99: m' = 1 - m (it matters only when
        the statistics are updated, i.e. training mode);
      - channels: Keras normalises the last axis (channels-last), torch axis 1.

    Example, with `prefix` the layer's name in the state_dict:
        >>> converted = batch_norm_to_keras(model.state_dict(), "bn1.", eps=model.bn1.eps)
        >>> layer = keras.layers.BatchNormalization(epsilon=converted["epsilon"],
        ...                                         momentum=converted["momentum"])
        >>> layer.build((None, H, W, C)); layer.set_weights(converted["weights"])
    """
    weights = [np.array(_checked_array(state[f"{prefix}{key}"], 1, "batch_norm_to_keras", "(C,)"))
               for key in ("weight", "bias", "running_mean", "running_var")]
    return {"weights": weights, "epsilon": float(eps), "momentum": None if momentum is None else 1.0 - momentum}


def batch_norm_from_keras(weights, epsilon: float = KERAS_BATCH_NORM_EPS, momentum: float = 0.99,
                          prefix: str = "") -> dict:
    """Keras BatchNormalization's get_weights() [gamma, beta, moving_mean, moving_variance] (with
    center=True and scale=True) as {"state": a BatchNorm2d state_dict, "eps": epsilon, "momentum":
    1 - momentum}: the inverse of batch_norm_to_keras. Keras's epsilon (1e-3 by default) must be
    given to BatchNorm2d(eps=...): torch's default 1e-5 would change every output.

    Example:
        >>> converted = batch_norm_from_keras(layer.get_weights(), layer.epsilon, layer.momentum, "bn1.")
        >>> bn = minicam.nn.BatchNorm2d(C, eps=converted["eps"], momentum=converted["momentum"])
        >>> state.update(converted["state"])          # bn1.weight, bn1.bias, bn1.running_mean, ...
    """
    if len(weights) != 4:
        raise ValueError(f"batch_norm_from_keras: expected [gamma, beta, moving_mean, moving_variance], got "
                         f"{len(weights)} arrays (a layer with center=False or scale=False lacks beta or gamma: "
                         "give ones / zeros in their place)")
    arrays = [np.array(_checked_array(w, 1, "batch_norm_from_keras", "(C,)")) for w in weights]
    keys = ("weight", "bias", "running_mean", "running_var")
    return {"state": {f"{prefix}{key}": array for key, array in zip(keys, arrays)}, "eps": float(epsilon),
            "momentum": 1.0 - float(momentum)}


def padding_to_keras(padding, kernel_size, stride=1, dilation=1, height=None, width=None):
    """A torch/minicam conv or pooling padding (an int or (ph, pw), both sides alike) as Keras says it:
    "valid" for 0; "same" when Keras's "same" pads exactly those rows and columns on both sides
    (stride 1 and an odd effective kernel 2p + 1, or the sizes given and same_padding_from_keras agrees);
    otherwise ((ph, ph), (pw, pw)) for a keras.layers.ZeroPadding2D before a "valid" layer.

    Example: a 3x3 stride-1 conv with padding=1 is "same"; with stride 2 on 32x32 it is not (Keras
    pads (0, 1)): ZeroPadding2D(((1, 1), (1, 1))) then Conv2D(..., strides=2, padding="valid").
        >>> padding_to_keras(1, 3)
        'same'
        >>> padding_to_keras(1, 3, stride=2, height=32, width=32)
        ((1, 1), (1, 1))
    """
    def pair(value, name):
        values = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
        if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0
                                   for v in values):
            raise ValueError(f"padding_to_keras: {name} must be a non-negative int or a pair of them, got {value!r}")
        return tuple(int(v) for v in values)

    (ph, pw), (kh, kw), (sh, sw), (dh, dw) = (pair(padding, "padding"), pair(kernel_size, "kernel_size"),
                                              pair(stride, "stride"), pair(dilation, "dilation"))
    if (ph, pw) == (0, 0):
        return "valid"
    if height is not None and width is not None:
        left, right, top, bottom = same_padding_from_keras(height, width, (kh, kw), (sh, sw), (dh, dw))
        if (top, bottom, left, right) == (ph, ph, pw, pw):
            return "same"
    elif (sh, sw) == (1, 1) and (dh * (kh - 1), dw * (kw - 1)) == (2 * ph, 2 * pw):
        return "same"
    return ((ph, ph), (pw, pw))
