"""Reductions: sum, mean, max over dimensions, and their adjoint, broadcast_to.

`SumOp` and `BroadcastToOp` are each other's backward (summing is the adjoint of
copying), so gradients of any order stay exact.
"""
from __future__ import annotations

import builtins

import numpy as np

from minicam.autograd import Function, Tensor, as_tensor


def normalize_dims(dim, ndim: int, op: str) -> tuple:
    """torch's `dim` argument (None, an int or a tuple; negatives count from the end)
    as a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    rank = builtins.max(ndim, 1)  # torch lets a 0-d tensor use dim 0 or -1
    out = []
    for d in dims:
        if not -rank <= d < rank:
            raise IndexError(f"{op}: dim {d} is out of range for a tensor with {ndim} dimensions")
        out.append(int(d) % rank)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: dim {dim} names the same dimension twice")
    return tuple(sorted(out))


class SumOp(Function):
    """y = sum of x over `dims`;  dx = g broadcast back to x's shape.

    x: any shape;  y: x's shape without `dims` (or with them as 1 if keepdim).
    """

    @staticmethod
    def forward(ctx, x, dims, keepdim):
        ctx.save_for_backward(dims, keepdim)
        return np.sum(x, axis=dims, keepdims=keepdim)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        dims, keepdim = ctx.saved
        if not keepdim:
            g = g.reshape(_kept_shape(x.shape, dims))
        return (BroadcastToOp.apply(g, shape=x.shape),)


class BroadcastToOp(Function):
    """y = x copied along axes of length 1 (and new leading axes) to `shape`;
    dx = g summed over those axes (the engine's unbroadcast does the sum)."""

    @staticmethod
    def forward(ctx, x, shape):
        return np.broadcast_to(x, shape).copy()

    @staticmethod
    def backward(ctx, g):
        return (g,)  # the engine sums g back to x's shape


class MaxOp(Function):
    """y = max of x over `dims`;  dx = g placed at the maximum.

    Ties, as in torch: over one `dim`, the gradient goes to the FIRST maximal
    element (the index torch.max(x, dim) returns); over all elements
    (dim=None), it is shared equally among the tied maxima. NaN counts as the
    maximum. The placement mask is a constant, so the backward is exact.
    """

    @staticmethod
    def forward(ctx, x, dims, keepdim):
        y = np.max(x, axis=dims, keepdims=True)
        if len(dims) == 1:
            first = np.argmax(x, axis=dims[0])  # argmax picks the first maximum (and NaN)
            mask = np.zeros(x.shape, dtype=x.dtype)
            np.put_along_axis(mask, np.expand_dims(first, dims[0]), 1, axis=dims[0])
        else:
            is_max = (x == y) | np.isnan(x)
            mask = is_max / np.sum(is_max, axis=dims, keepdims=True)
        ctx.save_for_backward(dims, keepdim, mask.astype(x.dtype))
        return y if keepdim else np.squeeze(y, axis=dims)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        dims, keepdim, mask = ctx.saved
        if not keepdim:
            g = g.reshape(_kept_shape(x.shape, dims))
        return (g * Tensor(mask),)


def _kept_shape(shape, dims):
    return tuple(1 if i in dims else n for i, n in enumerate(shape))


# ----------------------------------------------------------------------------
# Functional interface (torch names)
# ----------------------------------------------------------------------------


def sum(input, dim=None, keepdim: bool = False):
    input = as_tensor(input)
    return SumOp.apply(input, dims=normalize_dims(dim, input.ndim, "sum"), keepdim=keepdim)


def mean(input, dim=None, keepdim: bool = False):
    input = as_tensor(input)
    dims = normalize_dims(dim, input.ndim, "mean")
    count = int(np.prod([input.shape[d] for d in dims]))
    if count == 0:
        raise ValueError(f"mean: cannot average over an empty dimension (shape {input.shape}, dim {dim})")
    return SumOp.apply(input, dims=dims, keepdim=keepdim) / count


def max(input, dim=None, keepdim: bool = False):
    """The largest values over `dim` (all elements if None).

    Unlike torch.max(x, dim), which also returns indices, this returns the
    values only; use numpy's argmax on `.data` for the indices.
    """
    input = as_tensor(input)
    if input.numel() == 0:
        raise ValueError(f"max: the input (shape {input.shape}) is empty")
    return MaxOp.apply(input, dims=normalize_dims(dim, input.ndim, "max"), keepdim=keepdim)


def broadcast_to(input, *shape):
    """`input` repeated along axes of length 1 to `shape` (torch's expand; -1 keeps a size)."""
    input = as_tensor(input)
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    lead = len(shape) - input.ndim
    shape = tuple(input.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
    try:
        np.broadcast_shapes(input.shape, shape)
    except ValueError:
        raise ValueError(f"broadcast_to: shape {input.shape} cannot be expanded to {shape}") from None
    if input.shape == shape:
        return input
    return BroadcastToOp.apply(input, shape=shape)
