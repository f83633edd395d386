"""batch_norm and dropout, as in torch.nn.functional.

batch_norm is a composite of ops, so its backward (in training mode including the
gradient through the batch statistics) and its double backward are exact: in training
mode of mean, sub, mul, sqrt and div; in eval mode, where the statistics are constants,
    y = (x - running_mean) * inv_std * weight + bias,   inv_std = 1 / sqrt(running_var + eps).
In eval mode one visible line, `if fast.enabled(): return fast.BatchNormEvalOp...`, runs
the same affine map as one primitive instead (minicam/ops/fast/norm.py: fewer, larger
passes over x), unless a `with minicam.ops.reading_room():` block asks for the ops.
dropout multiplies by a constant random mask.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Tensor, as_tensor, to_float_array
from minicam.ops import fast
from minicam.ops.elementwise import sqrt, to_dtype


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5):
    """torch.nn.functional.batch_norm (Ioffe & Szegedy 2015, Algorithm 1).

    input (N, C) or (N, C, H, W) (any (N, C, ...)); statistics per channel C,
    over the n = N*H*W values of that channel.
      training:  mu = mean(x),  s2 = mean((x - mu)^2)  (the BIASED variance),
                 y = (x - mu) / sqrt(s2 + eps) * weight + bias,
                 and IN PLACE (if running stats are given):
                 running_mean <- (1 - momentum) running_mean + momentum mu
                 running_var  <- (1 - momentum) running_var  + momentum s2 n/(n-1)  (UNBIASED)
      eval:      y = (x - running_mean) / sqrt(running_var + eps) * weight + bias
                 (the statistics are constants: no gradient flows into them)
    running_mean, running_var: (C,) NumPy arrays or Tensors (their .data is updated);
    they are buffers, never differentiated. weight, bias: (C,) or None.
    """
    input = as_tensor(input)
    if input.ndim < 2:
        raise ValueError(f"batch_norm: input must be (N, C) or (N, C, H, W), got shape {input.shape}")
    channels = input.shape[1]
    stats_shape = (1, channels) + (1,) * (input.ndim - 2)  # broadcasts along C
    batch_dims = (0,) + tuple(range(2, input.ndim))  # every axis except C
    count = input.numel() // max(channels, 1)  # n: the values per channel
    _check_vector(running_mean, "running_mean", channels)
    _check_vector(running_var, "running_var", channels)
    if training and count <= 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input of "
                         f"shape {input.shape}; use training=False, or a larger batch")
    if eps < 0 or (training and eps == 0):
        raise ValueError(f"batch_norm: eps must be positive (non-negative in eval), got {eps}")
    if weight is not None:
        weight = _parameter(weight, "weight", channels, input.dtype)
    if bias is not None:
        bias = _parameter(bias, "bias", channels, input.dtype)

    if not training:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are required when training=False")
        mean = _constant(running_mean, input.dtype, stats_shape)
        inv_std = 1 / np.sqrt(_constant(running_var, input.dtype, stats_shape) + eps)
        if fast.enabled():  # the same affine map, as one primitive (a missing weight is 1, a missing bias 0)
            weight = np.ones(channels, dtype=input.dtype) if weight is None else weight
            bias = np.zeros(channels, dtype=input.dtype) if bias is None else bias
            return fast.BatchNormEvalOp.apply(input, weight, bias, mean=mean, inv_std=inv_std)
        out = (input - Tensor(mean)) * Tensor(inv_std)
    else:
        mean = input.mean(dim=batch_dims, keepdim=True)
        centered = input - mean
        var = (centered * centered).mean(dim=batch_dims, keepdim=True)  # biased: divides by n
        _update_running(running_mean, mean.data.reshape(channels), momentum)
        _update_running(running_var, var.data.reshape(channels) * count / (count - 1), momentum)  # unbiased
        out = centered / sqrt(var + eps)
    if weight is not None:
        out = out * weight.reshape(stats_shape)
    if bias is not None:
        out = out + bias.reshape(stats_shape)
    return out


def _check_vector(values, name: str, channels: int) -> None:
    shape = None if values is None else np.shape(values.data if isinstance(values, Tensor) else values)
    if shape is not None and shape != (channels,):
        raise ValueError(f"batch_norm: {name} must have shape ({channels},), one value per channel, got {shape}")


def _constant(values, dtype, shape) -> np.ndarray:
    """A running statistic (a buffer: no gradient) in the input's dtype, shaped (1, C, 1, ...) to broadcast."""
    array = values.data if isinstance(values, Tensor) else to_float_array(values, what="batch_norm statistic")
    return array.astype(dtype).reshape(shape)  # a copy: a later training step updates the buffer in place


def _parameter(values, name: str, channels: int, dtype) -> Tensor:
    """weight or bias, (C,), checked and in the input's dtype; differentiable."""
    values = as_tensor(values)
    if values.dtype != dtype:
        values = to_dtype(values, dtype)
    if values.shape != (channels,):
        raise ValueError(f"batch_norm: {name} must have shape ({channels},), one value per channel, got {values.shape}")
    return values


def _update_running(buffer, batch_value: np.ndarray, momentum: float) -> None:
    """buffer <- (1 - momentum) buffer + momentum batch_value, written into the caller's array."""
    if buffer is None:  # torch allows training without running statistics
        return
    array = buffer.data if isinstance(buffer, Tensor) else buffer
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f" or not array.flags.writeable:
        raise TypeError("batch_norm: running_mean and running_var must be writeable float NumPy arrays "
                        f"(or Tensors) to be updated in place during training, got {type(buffer).__name__}")
    array[...] = (1 - momentum) * array + momentum * batch_value


def dropout_mask(shape, p: float, generator: np.random.Generator) -> np.ndarray:
    """The boolean mask of the units that dropout KEEPS: each True with probability 1 - p."""
    return generator.random(shape) >= p


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False, *, generator=None):
    """torch.nn.functional.dropout, "inverted" (Srivastava et al. 2014, with the
    scaling moved to training time): y = x * m / (1 - p),  dx = g * m / (1 - p),
    with m a constant 0/1 mask, each unit kept with probability 1 - p, so E[y] = x.

    training=False or p=0 returns `input` itself; p=1 returns zeros (x * 0).
    generator (keyword-only; torch's 4th argument is `inplace`): an
    np.random.Generator (None: a fresh, unseeded one). minicam's
    masks come from NumPy's generator and can never equal torch's random masks;
    the tests therefore compare the math on the SAME mask (see dropout_mask).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: probability p must lie in [0, 1], got {p}")
    if not isinstance(inplace, (bool, np.bool_)):
        raise TypeError(f"dropout: inplace must be a bool (torch's 4th argument), got {type(inplace).__name__}; "
                        "pass the generator by keyword: dropout(x, p, generator=rng)")
    if inplace:
        raise NotImplementedError("dropout: inplace=True is not supported (minicam ops never modify their input)")
    if generator is not None and not isinstance(generator, np.random.Generator):
        raise TypeError(f"dropout: generator must be an np.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(generator).__name__}")
    input = as_tensor(input)
    if not training or p == 0:
        return input
    if p == 1:
        return input * 0.0
    generator = np.random.default_rng() if generator is None else generator
    keep = dropout_mask(input.shape, p, generator)
    return input * Tensor(keep.astype(input.dtype) / input.dtype.type(1 - p))
