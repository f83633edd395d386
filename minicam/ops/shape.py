"""Ops that move numbers without changing them: reshape, permute, pad, index, concatenate.

Each has a simple adjoint, which is its backward: reshape back, permute back,
crop the padding, scatter into zeros, split.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Function, Tensor, as_tensor


class ReshapeOp(Function):
    """y = x with a new shape (same elements, row-major);  dx = g reshaped back."""

    @staticmethod
    def forward(ctx, x, shape):
        return np.reshape(x, shape)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        return (ReshapeOp.apply(g, shape=x.shape),)


class PermuteOp(Function):
    """y = x with its axes reordered by `dims`;  dx = g with the inverse order."""

    @staticmethod
    def forward(ctx, x, dims):
        ctx.save_for_backward(dims)
        return np.transpose(x, dims)

    @staticmethod
    def backward(ctx, g):
        (dims,) = ctx.saved
        return (PermuteOp.apply(g, dims=tuple(np.argsort(dims))),)


class PadOp(Function):
    """y = x with `widths` (one (before, after) pair per axis) filled with `value`;
    dx = g with the padding cropped off."""

    @staticmethod
    def forward(ctx, x, widths, value):
        ctx.save_for_backward(widths)
        return np.pad(x, widths, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx, g):
        (widths,) = ctx.saved
        crop = tuple(slice(before, g.shape[i] - after) for i, (before, after) in enumerate(widths))
        return (IndexOp.apply(g, index=crop),)


class IndexOp(Function):
    """y = x[index] (any NumPy index: slices, integers, integer arrays, masks);
    dx = zeros like x with g added at `index` (repeated positions add up)."""

    @staticmethod
    def forward(ctx, x, index):
        ctx.save_for_backward(index)
        return np.array(x[index])  # a copy: later in-place writes to x cannot leak in

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        (index,) = ctx.saved
        return (IndexAddOp.apply(g, index=index, shape=x.shape),)


class IndexAddOp(Function):
    """y = zeros(shape) with x added at `index`: the adjoint of IndexOp;  dx = g[index]."""

    @staticmethod
    def forward(ctx, x, index, shape):
        ctx.save_for_backward(index)
        out = np.zeros(shape, dtype=x.dtype)
        np.add.at(out, index, x)
        return out

    @staticmethod
    def backward(ctx, g):
        (index,) = ctx.saved
        return (IndexOp.apply(g, index=index),)


class ConcatenateOp(Function):
    """y = the inputs joined along `dim`;  each dx = its slice of g."""

    @staticmethod
    def forward(ctx, *xs, dim):
        ctx.save_for_backward(dim)
        return np.concatenate(xs, axis=dim)

    @staticmethod
    def backward(ctx, g):
        (dim,) = ctx.saved
        grads, start = [], 0
        for x in ctx.inputs:
            index = [slice(None)] * g.ndim
            index[dim] = slice(start, start + x.shape[dim])
            grads.append(IndexOp.apply(g, index=tuple(index)))
            start += x.shape[dim]
        return tuple(grads)


# ----------------------------------------------------------------------------
# Functional interface (torch names)
# ----------------------------------------------------------------------------


def _axis(dim: int, ndim: int, op: str) -> int:
    if not -ndim <= dim < ndim:
        raise IndexError(f"{op}: dim {dim} is out of range for a tensor with {ndim} dimensions")
    return dim % ndim


def reshape(input, *shape):
    input = as_tensor(input)
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    try:
        np.reshape(input.data, shape)  # a view for contiguous data: only the shape is checked
    except ValueError:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {input.shape} ({input.numel()} elements) into {shape}") from None
    return ReshapeOp.apply(input, shape=shape)


def flatten(input, start_dim: int = 0, end_dim: int = -1):
    input = as_tensor(input)
    if input.ndim == 0:
        return reshape(input, 1)
    start, end = _axis(start_dim, input.ndim, "flatten"), _axis(end_dim, input.ndim, "flatten")
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = input.shape[:start] + (-1,) + input.shape[end + 1 :]
    if input.numel() == 0:
        shape = input.shape[:start] + (int(np.prod(input.shape[start : end + 1])),) + input.shape[end + 1 :]
    return ReshapeOp.apply(input, shape=shape)


def permute(input, *dims):
    input = as_tensor(input)
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    dims = tuple(_axis(d, input.ndim, "permute") for d in dims)
    if sorted(dims) != list(range(input.ndim)):
        raise ValueError(f"permute: dims {dims} is not a reordering of the {input.ndim} axes of shape {input.shape}")
    return PermuteOp.apply(input, dims=dims)


def transpose(input, dim0: int, dim1: int):
    input = as_tensor(input)
    dims = list(range(input.ndim))
    a, b = _axis(dim0, input.ndim, "transpose"), _axis(dim1, input.ndim, "transpose")
    dims[a], dims[b] = dims[b], dims[a]
    return PermuteOp.apply(input, dims=tuple(dims))


def pad(input, pad, mode: str = "constant", value: float = 0.0):
    """torch.nn.functional.pad: `pad` lists (left, right) widths starting from
    the LAST dimension, e.g. (1, 1, 2, 2) pads W by 1 and H by 2."""
    input = as_tensor(input)
    if mode != "constant":
        raise NotImplementedError(f"pad: mode {mode!r} is not supported; only 'constant'")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: {pad} must hold (before, after) pairs for at most {input.ndim} dimensions")
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: negative widths {pad} are not supported; crop with indexing instead")
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        widths[input.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return PadOp.apply(input, widths=tuple(widths), value=value)


def index(input, index):
    """input[index]; Tensor indices are used through their values."""
    input = as_tensor(input)
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, np.ndarray) and index.dtype.kind == "f":
        raise IndexError("index: indices must be integers or booleans, not floats")
    try:
        input.data[index]
    except IndexError as error:
        raise IndexError(f"index: {error} (tensor shape {input.shape})") from None
    return IndexOp.apply(input, index=index)


def cat(tensors, dim: int = 0):
    """Join tensors along `dim` (torch.cat); all other sizes must agree."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("cat: needs at least one tensor")
    dim = _axis(dim, tensors[0].ndim, "cat")
    for t in tensors[1:]:
        if t.ndim != tensors[0].ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, tensors[0].shape)) if i != dim):
            raise ValueError(f"cat: shapes {[t.shape for t in tensors]} differ outside dim {dim}")
    return ConcatenateOp.apply(*tensors, dim=dim)


concatenate = cat


def stack(tensors, dim: int = 0):
    """Join tensors along a new dimension `dim` (torch.stack)."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ValueError(f"stack: all shapes must be equal, got {[t.shape for t in tensors]}")
    dim = _axis(dim, tensors[0].ndim + 1, "stack")
    expanded = [reshape(t, t.shape[:dim] + (1,) + t.shape[dim:]) for t in tensors]
    return ConcatenateOp.apply(*expanded, dim=dim)
