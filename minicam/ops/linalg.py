"""Matrix products: matmul and linear."""
from __future__ import annotations

import numpy as np

from minicam.autograd import Function, as_tensor
from minicam.ops.shape import transpose


class MatMulOp(Function):
    """y = a @ b over the last two axes, leading (batch) axes broadcast;
    da = g @ b^T,  db = a^T @ g  (the engine sums broadcast batch axes).

    a: (..., n, k)   b: (..., k, m)   y: (..., n, m)
    """

    @staticmethod
    def forward(ctx, a, b):
        return np.matmul(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.inputs
        return MatMulOp.apply(g, transpose(b, -1, -2)), MatMulOp.apply(transpose(a, -1, -2), g)


def matmul(input, other):
    """torch.matmul for operands with at least one dimension; a 1-D operand is
    treated as a row (left) or column (right) vector and that axis is dropped."""
    a, b = as_tensor(input), as_tensor(other)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least one dimension, got shapes {a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not fit (inner sizes {a.shape[-1]} and {b.shape[-2 if b.ndim > 1 else 0]})")
    vector_a, vector_b = a.ndim == 1, b.ndim == 1
    if vector_a:
        a = a.reshape(1, a.shape[0])
    if vector_b:
        b = b.reshape(b.shape[0], 1)
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch shapes {a.shape[:-2]} and {b.shape[:-2]} do not broadcast") from None
    y = MatMulOp.apply(a, b)
    if vector_a:
        y = y.reshape(y.shape[:-2] + y.shape[-1:])
    if vector_b:
        y = y.reshape(y.shape[:-1])
    return y


def linear(input, weight, bias=None):
    """torch.nn.functional.linear: y = input @ weight^T + bias.

    input: (..., in_features)   weight: (out_features, in_features)   bias: (out_features,)
    """
    input, weight = as_tensor(input), as_tensor(weight)
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {input.shape} does not fit weight of shape {weight.shape} "
            f"(the input's last size must be in_features = {weight.shape[1]})"
        )
    y = matmul(input, transpose(weight, 0, 1))
    if bias is not None:
        bias = as_tensor(bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"linear: bias has shape {bias.shape}, expected ({weight.shape[0]},)")
        y = y + bias
    return y
