"""softmax, log_softmax and cross_entropy.

softmax and log_softmax are two small Functions whose backward is the
textbook vector-Jacobian product, written with minicam ops on Tensors (so it
can be differentiated again: every order is exact). cross_entropy is a
composite of log_softmax, index, where and sum.

Stability. softmax(x) = softmax(x - m) for any m constant along `dim`. With
m = max(x), every exponent is <= 0, so exp never overflows, and the largest
term is exp(0) = 1, so the sum never underflows to 0. The shift happens inside
`forward`, on plain arrays: it is not part of the graph, and nothing about the
derivatives changes.

Why Functions and not composites of exp / sum / div: both give exact
derivatives, but the composite's double backward in float32 takes a longer
chain of roundings (a median error 2x torch's, measured); the factored form
y * (g - <g, y>) below is torch's, and its rounding matches torch's.
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Function, Tensor, as_tensor
from minicam.ops.elementwise import exp, to_dtype, where
from minicam.ops.reduce import normalize_dims, sum


class SoftmaxOp(Function):
    """y_i = exp(x_i) / sum_j exp(x_j) along `axis`;  dx = y * (g - sum_j g_j y_j).

    (The Jacobian is diag(y) - y y^T, symmetric, so the VJP is this one line.)
    """

    @staticmethod
    def forward(ctx, x, axis):
        ctx.save_for_backward(axis)
        # initial=-inf: an empty axis gives an empty result instead of an error
        e = np.exp(x - np.max(x, axis=axis, keepdims=True, initial=-np.inf))
        return e / np.sum(e, axis=axis, keepdims=True)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        (axis,) = ctx.saved
        y = SoftmaxOp.apply(x, axis=axis)  # recomputed as a Tensor, so this backward is differentiable
        return (y * (g - sum(g * y, dim=axis, keepdim=True)),)


class LogSoftmaxOp(Function):
    """y_i = x_i - log sum_j exp(x_j) along `axis`;  dx = g - softmax(x) * sum_j g_j.

    Computed as z_i - log sum_j exp(z_j) with z = x - max(x): never log(0) for
    finite x, unlike log(softmax(x)), which gives -inf once a probability underflows.
    """

    @staticmethod
    def forward(ctx, x, axis):
        ctx.save_for_backward(axis)
        z = x - np.max(x, axis=axis, keepdims=True, initial=-np.inf)
        return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        (axis,) = ctx.saved
        probabilities = exp(LogSoftmaxOp.apply(x, axis=axis))  # torch's exp(output), differentiable
        return (g - probabilities * sum(g, dim=axis, keepdim=True),)


def _axis(input: Tensor, dim, op: str) -> int:
    if dim is None:
        raise TypeError(f"{op}: dim is required (torch's implicit dim is deprecated); "
                        f"for logits of shape (N, C) use dim=1")
    if not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be one int (the axis the probabilities are taken over), got {dim!r}")
    (axis,) = normalize_dims(dim, input.ndim, op)
    return axis


def softmax(input, dim: int):
    """torch.nn.functional.softmax along `dim` (required)."""
    input = as_tensor(input)
    if input.ndim == 0:  # torch: the softmax of a single number is 1
        return softmax(input.reshape(1), dim).reshape(())
    return SoftmaxOp.apply(input, axis=_axis(input, dim, "softmax"))


def log_softmax(input, dim: int):
    """torch.nn.functional.log_softmax along `dim` (required)."""
    input = as_tensor(input)
    if input.ndim == 0:
        return log_softmax(input.reshape(1), dim).reshape(())
    return LogSoftmaxOp.apply(input, axis=_axis(input, dim, "log_softmax"))


REDUCTIONS = ("none", "mean", "sum")


def cross_entropy(input, target, weight=None, *, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0):
    """torch.nn.functional.cross_entropy on logits (softmax is applied inside).

    input   logits (N, C), (N, C, d1, ...) or unbatched (C,); classes on dim 1 (dim 0 if unbatched)
    target  class indices: integer NumPy array or list, shape (N,) / (N, d1, ...) / ();
            or class probabilities: floats (array or Tensor) with the input's shape
    weight  (C,) per-class weights (a rescaling of each class's loss), or None
    ignore_index   targets equal to it contribute nothing (indices only)
    (ignore_index, reduction and label_smoothing are keyword-only: torch's deprecated
    size_average and reduce sit before them in its positional order)
    reduction      "mean" | "sum" | "none"
    label_smoothing  eps in [0, 1]: the target becomes (1 - eps) onehot + eps / C
                     (Szegedy et al. 2016, "Rethinking the Inception architecture", sec. 7)

    Class indices, with log p = log_softmax(input) and w_y the weight of class y:
        loss_i = (1 - eps) * (-w_{y_i} log p_{i,y_i}) + eps / C * (-sum_c w_c log p_{i,c})
        "mean" divides the sum by sum_i w_{y_i} (over non-ignored i), as torch does.
    Probabilities t:  loss_i = -sum_c w_c t_{i,c} log p_{i,c};  "mean" divides by N.
    """
    input = as_tensor(input)
    if input.ndim == 0:
        raise ValueError("cross_entropy: input must hold logits of shape (N, C) or (C,), got a 0-d tensor")
    if reduction not in REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction {reduction!r} is not one of {REDUCTIONS}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must lie in [0, 1], got {label_smoothing}")
    class_dim = 1 if input.ndim >= 2 else 0
    n_classes = input.shape[class_dim]
    # a (C,) vector shaped to broadcast along the class dimension: (C, 1, 1, ...)
    class_shape = (n_classes,) + (1,) * (input.ndim - class_dim - 1)
    if weight is not None:
        weight = to_dtype(as_tensor(weight), input.dtype)
        if weight.shape != (n_classes,):
            raise ValueError(f"cross_entropy: weight must have shape ({n_classes},), one per class, got {weight.shape}")
    log_p = log_softmax(input, class_dim)
    weighted_log_p = log_p if weight is None else log_p * weight.reshape(class_shape)  # w_c log p_{i,c}
    if _is_probabilities(input, target):
        target = to_dtype(as_tensor(target), input.dtype)
        if label_smoothing > 0:
            target = target * (1 - label_smoothing) + label_smoothing / n_classes
        loss = -sum(weighted_log_p * target, dim=class_dim)
        return _reduce(loss, reduction, divisor=loss.numel())  # torch: the mean is over samples, not weights

    target = _class_indices(input, target, class_dim, ignore_index)
    keep = target != ignore_index  # constant mask of the targets that count
    safe = np.where(keep, target, 0)  # a valid index everywhere; ignored entries are masked below
    grid = list(np.indices(target.shape))  # the other coordinates of every target entry
    picked = log_p[tuple(grid[:class_dim] + [safe] + grid[class_dim:])]  # log p_{i, y_i}
    keep_weight = Tensor(keep.astype(input.dtype))
    target_weight = keep_weight if weight is None else weight[safe] * keep_weight  # w_{y_i}, 0 if ignored
    loss = -where(keep, picked, 0.0) * target_weight  # where, not *: an ignored -inf would give nan
    if label_smoothing > 0:
        smooth = -where(keep, sum(weighted_log_p, dim=class_dim), 0.0)
        loss = (1 - label_smoothing) * loss + (label_smoothing / n_classes) * smooth
    return _reduce(loss, reduction, divisor=sum(target_weight))  # all ignored: 0/0 = nan, as in torch


def _reduce(loss: Tensor, reduction: str, divisor):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return sum(loss)
    return sum(loss) / divisor


def _is_probabilities(input: Tensor, target) -> bool:
    """Float targets with the input's shape are probabilities; everything else must be indices."""
    if isinstance(target, Tensor):
        if target.shape != input.shape:
            raise TypeError(
                f"cross_entropy: a Tensor target holds floats, so it must be class probabilities with the "
                f"input's shape {input.shape}, got {target.shape}; pass class indices as an integer NumPy array")
        return True
    array = np.asarray(target)
    return array.dtype.kind == "f" and array.shape == input.shape


def _class_indices(input: Tensor, target, class_dim: int, ignore_index: int) -> np.ndarray:
    """Check integer class indices: dtype, shape, range. Return them as an int64 array."""
    target = np.asarray(target)
    expected = input.shape[:class_dim] + input.shape[class_dim + 1:]
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy: class-index targets must be integers, got dtype {target.dtype} with shape "
            f"{target.shape}; use target.astype(np.int64), or pass probabilities of shape {input.shape}")
    if target.shape != expected:
        raise ValueError(
            f"cross_entropy: for input of shape {input.shape}, target must hold one class index per sample, "
            f"shape {expected} (or probabilities of shape {input.shape}), got shape {target.shape}")
    n_classes = input.shape[class_dim]
    bad = (target != ignore_index) & ((target < 0) | (target >= n_classes))
    if bad.any():
        raise IndexError(
            f"cross_entropy: target class {target[bad].flat[0]} is out of range: with {n_classes} classes, "
            f"class indices must lie in [0, {n_classes - 1}] (or equal ignore_index={ignore_index})")
    return target.astype(np.int64)
