"""Eval-mode batch normalisation as one primitive: the fast twin of the reading room's composite.

The reading room (minicam/ops/norm.py) writes eval-mode batch_norm as the ops
(x - mean) * inv_std * weight + bias, with the statistics as constants. That is six small
ops per layer (with the reshapes), which cost more than the layer's arithmetic for one image;
BatchNormEvalOp does it in two passes over x, with its backward written in ops, so
derivatives of every order stay exact.
"""
from __future__ import annotations

from minicam.autograd import Function, Tensor


class BatchNormEvalOp(Function):
    """y = x * scale + shift,   scale = weight * inv_std,   shift = bias - mean * scale  (per channel);
    dx = g * scale,   dweight = sum(g * x_hat),   dbias = sum(g),   x_hat = (x - mean) * inv_std,
    the sums over every axis except C. inv_std = 1 / sqrt(var + eps), computed by the caller.

    x: (N, C, ...)   weight, bias: (C,) Tensors   mean, inv_std: (1, C, 1, ...) arrays (constants)
    """

    @staticmethod
    def forward(ctx, x, weight, bias, *, mean, inv_std):
        ctx.save_for_backward(mean, inv_std)
        scale = weight.reshape(inv_std.shape) * inv_std
        y = x * scale
        y += bias.reshape(inv_std.shape) - mean * scale
        return y

    @staticmethod
    def backward(ctx, g):
        mean, inv_std = ctx.saved
        x, weight, _ = ctx.inputs
        inv_std = Tensor(inv_std)
        other_axes = (0,) + tuple(range(2, g.ndim))  # every axis except C
        x_hat = (x - Tensor(mean)) * inv_std
        return g * (weight.reshape(inv_std.shape) * inv_std), (g * x_hat).sum(dim=other_axes), g.sum(dim=other_axes)
