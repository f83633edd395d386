"""The layers: Linear, Conv2d, BatchNorm2d, activations, pools, Flatten, Dropout.

Each is a thin wrapper that checks its input and calls the torch-named
function in minicam.ops; `extra_repr` prints the constructor arguments as torch does.
"""
from __future__ import annotations

import math

import numpy as np

from minicam import ops
from minicam.autograd import Tensor, as_tensor, float_dtype
from minicam.nn.module import Module, Parameter, random_generator

# ----------------------------------------------------------------------------
# Helpers shared by the layers
# ----------------------------------------------------------------------------


def _uniform_init(rng, fan_in: int, shape: tuple, dtype) -> np.ndarray:
    """torch's default for Linear and Conv2d weights and biases.

    torch calls kaiming_uniform_(weight, a=sqrt(5)): gain = sqrt(2 / (1 + a^2))
    = sqrt(1/3), bound = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in); the bias
    uses the same bound. So both are U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _checked_input(layer: Module, input, ndims, axis: int, size: int, layout: str, like) -> Tensor:
    """The input as a Tensor, after checking its rank (in `ndims`, or any rank
    >= 1 for None), its size along `axis` and its dtype (equal to the layer's
    `like` array), with an error that names the layer and says what to do."""
    input = as_tensor(input)
    rank_ok = input.ndim >= 1 if ndims is None else input.ndim in ndims
    if not rank_ok or input.shape[axis] != size:
        raise ValueError(f"{layer!r} expects input of shape {layout}, got shape {input.shape}")
    if like is not None and input.dtype != like.dtype:
        raise TypeError(f"{layer!r}: the input is {input.dtype} but the layer is {like.dtype}; convert the input "
                        f"(x.astype(np.{like.dtype})) or the model (model.float() / model.double())")
    return input


# ----------------------------------------------------------------------------
# Layers with parameters
# ----------------------------------------------------------------------------


class Linear(Module):
    """y = x @ weight^T + bias, as torch.nn.Linear.

    weight: (out_features, in_features)   bias: (out_features,)
    input: (..., in_features)  ->  output: (..., out_features)
    Both drawn from U(-1/sqrt(in_features), 1/sqrt(in_features)) (torch's default).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=None, rng=None):
        super().__init__()
        dtype, rng = float_dtype(dtype, "Linear"), random_generator(rng, "Linear")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(_uniform_init(rng, in_features, (out_features, in_features), dtype))
        if bias:
            self.bias = Parameter(_uniform_init(rng, in_features, (out_features,), dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, input):
        input = _checked_input(self, input, None, -1, self.in_features,
                               f"(..., {self.in_features})", self.weight)
        return ops.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution (a cross-correlation, like every framework), as torch.nn.Conv2d.

    weight: (K, C // groups, kh, kw) with K = out_channels, C = in_channels
    bias: (K,)   input: (N, C, H, W) or (C, H, W)  ->  output: (N, K, OH, OW)
    Both drawn from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C // groups * kh * kw
    (torch's default). Only padding_mode="zeros" is implemented; groups > 1 is
    accepted here (the weights and state_dict have torch's shapes) but
    ops.conv2d computes groups=1 only, and says so when called.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", dtype=None, rng=None):
        super().__init__()
        dtype, rng = float_dtype(dtype, "Conv2d"), random_generator(rng, "Conv2d")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) "
                             f"must both be divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise NotImplementedError(f"Conv2d: padding_mode={padding_mode!r} is not implemented; only 'zeros'")
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = ops.as_pair(kernel_size, "kernel_size", "Conv2d", 1)
        self.stride = ops.as_pair(stride, "stride", "Conv2d", 1)
        self.padding = padding if isinstance(padding, str) else ops.as_pair(padding, "padding", "Conv2d", 0)
        self.dilation = ops.as_pair(dilation, "dilation", "Conv2d", 1)
        self.padding_mode = padding_mode
        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        self.weight = Parameter(_uniform_init(rng, fan_in, (out_channels, in_channels // groups, kh, kw), dtype))
        if bias:
            self.bias = Parameter(_uniform_init(rng, fan_in, (out_channels,), dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, input):
        input = _checked_input(self, input, (3, 4), -3, self.in_channels,
                               f"(N, {self.in_channels}, H, W) or ({self.in_channels}, H, W)", self.weight)
        return ops.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        # torch's format: only the settings that differ from the defaults, after stride
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class BatchNorm2d(Module):
    """Batch normalisation over (N, H, W) per channel (Ioffe & Szegedy 2015), as torch.nn.BatchNorm2d.

    y = (x - mean) / sqrt(var + eps) * weight + bias, per channel C.
    Training: mean and var of the batch (var biased, divided by n = N*H*W), and
    running_mean <- (1 - m) running_mean + m * mean,
    running_var  <- (1 - m) running_var  + m * var * n / (n - 1)   (unbiased),
    with m = momentum, or m = 1 / num_batches_tracked when momentum is None
    (a cumulative average). Evaluation: the running statistics.
    weight, bias, running_mean, running_var: (C,);  num_batches_tracked: int64 scalar.
    `bias=False` (keyword-only, torch 2.13) keeps the weight and drops the bias.
    """

    _optional_buffers = ("num_batches_tracked",)  # torch also loads state_dicts without it

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype=None, *, bias: bool = True):
        super().__init__()
        dtype = float_dtype(dtype, "BatchNorm2d")
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        weight = Parameter(np.ones(num_features, dtype=dtype)) if affine else None
        self.register_parameter("weight", weight)
        self.register_parameter("bias", Parameter(np.zeros(num_features, dtype=dtype)) if affine and bias else None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def forward(self, input):
        like = self.weight if self.weight is not None else self.running_mean
        input = _checked_input(self, input, (4,), 1, self.num_features, f"(N, {self.num_features}, H, W)", like)
        # torch's rule for the running-average factor
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked += 1  # in place: the int64 array is the buffer
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        # Batch statistics when training, and in evaluation when there are no running statistics.
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        # The running statistics are updated (by batch_norm, in place) only when tracked.
        update = not self.training or self.track_running_stats
        return ops.batch_norm(input, self.running_mean if update else None, self.running_var if update else None,
                              self.weight, self.bias, training=use_batch_stats, momentum=factor, eps=self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


# ----------------------------------------------------------------------------
# Layers without parameters: thin wrappers around minicam.ops
# ----------------------------------------------------------------------------


class ReLU(Module):
    """y = max(x, 0). `inplace` is accepted for torch compatibility and ignored:
    minicam never overwrites its input (an in-place ReLU would also overwrite
    activations captured by a hook, a known trap in torch CAM libraries)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return ops.relu(input)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Sigmoid(Module):
    """y = 1 / (1 + e^-x)."""

    def forward(self, input):
        return ops.sigmoid(input)


class Tanh(Module):
    """y = tanh x."""

    def forward(self, input):
        return ops.tanh(input)


class Softmax(Module):
    """y = softmax of x along `dim` (which must be given; torch's implicit dim is deprecated)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        if self.dim is None:
            raise ValueError("Softmax: dim is None; construct it with the dimension to normalise, e.g. Softmax(dim=1)")
        return ops.softmax(input, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Flatten(Module):
    """Merge dimensions start_dim..end_dim into one: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        return ops.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class MaxPool2d(Module):
    """The maximum of each kh x kw window; stride defaults to kernel_size.
    Gradient to the first maximum of a window in row-major order, as torch."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        self.kernel_size, self.padding, self.dilation = kernel_size, padding, dilation
        self.stride = kernel_size if stride is None else stride
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input):
        return ops.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                              ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """The mean of each kh x kw window; stride defaults to kernel_size."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override=None):
        super().__init__()
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = kernel_size if stride is None else stride
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def forward(self, input):
        return ops.avg_pool2d(input, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode,
                              count_include_pad=self.count_include_pad, divisor_override=self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size; AdaptiveAvgPool2d(1) is global
    average pooling, the layer that makes CAM possible (Zhou et al. 2016)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        return ops.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Dropout(Module):
    """In training, zero each element with probability p and scale the rest by
    1 / (1 - p); in evaluation, y = x. The mask is drawn from `rng` (see
    manual_seed); `inplace` is accepted for torch compatibility and ignored."""

    def __init__(self, p: float = 0.5, inplace: bool = False, rng=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: probability p must be between 0 and 1, got {p}")
        self.p, self.inplace = p, inplace
        self.rng = rng if rng is None else random_generator(rng, "Dropout")

    def forward(self, input):
        rng = random_generator(self.rng, "Dropout")  # looked up now: manual_seed may have replaced the default
        return ops.dropout(input, self.p, self.training, generator=rng)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
