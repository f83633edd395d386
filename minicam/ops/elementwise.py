"""Element-wise ops: the chain rule in one line each.

Shapes: inputs broadcast as in NumPy; the engine sums each gradient back to
its input's shape (autograd._unbroadcast), so a backward here returns
gradients in the output's shape. Every backward is written with minicam
ops, so it can be differentiated again (create_graph=True).
"""
from __future__ import annotations

import numpy as np

from minicam.autograd import Function, Tensor, as_tensor, float_dtype


def _operands(a, b, op: str):
    """Wrap two operands (a Python number takes the other operand's dtype) and
    check that their shapes broadcast."""
    if isinstance(a, Tensor):
        a, b = a, as_tensor(b, like=a)
    else:
        b = as_tensor(b)
        a = as_tensor(a, like=b)
    if a.shape != b.shape:  # (np.broadcast_shapes costs more than many an op on equal shapes)
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not broadcast together") from None
    return a, b


class AddOp(Function):
    """y = a + b;  da = g,  db = g."""

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, g


class SubOp(Function):
    """y = a - b;  da = g,  db = -g."""

    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, g):
        return g, -g


class NegOp(Function):
    """y = -x;  dx = -g."""

    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, g):
        return (NegOp.apply(g),)


class MulOp(Function):
    """y = a * b;  da = g * b,  db = g * a."""

    @staticmethod
    def forward(ctx, a, b):
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.inputs
        return g * b, g * a


class DivOp(Function):
    """y = a / b;  da = g / b,  db = -g * a / b^2."""

    @staticmethod
    def forward(ctx, a, b):
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.inputs
        return g / b, -g * a / (b * b)


class PowOp(Function):
    """y = x^p for a constant number p;  dx = g * p * x^(p-1)."""

    @staticmethod
    def forward(ctx, x, exponent):
        ctx.save_for_backward(exponent)
        return np.power(x, exponent)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        (p,) = ctx.saved
        if p == 0:
            return (g * 0.0,)
        return (g * p * PowOp.apply(x, exponent=p - 1),)


class ExpOp(Function):
    """y = e^x;  dx = g * e^x."""

    @staticmethod
    def forward(ctx, x):
        return np.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        return (g * ExpOp.apply(x),)


class LogOp(Function):
    """y = ln x;  dx = g / x."""

    @staticmethod
    def forward(ctx, x):
        return np.log(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        return (g / x,)


class AbsOp(Function):
    """y = |x|;  dx = g * sign(x)  (0 at x = 0, as torch)."""

    @staticmethod
    def forward(ctx, x):
        return np.abs(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        return (g * Tensor(np.sign(x.data)),)  # sign is a constant: exact higher order


class ReLUOp(Function):
    """y = max(x, 0);  dx = g * [x > 0].

    The subgradient at x = 0 is 0, as in torch. The mask is a constant, so the
    backward is linear in g and its own derivative (zero in x) is exact.
    """

    @staticmethod
    def forward(ctx, x):
        return np.maximum(x, 0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        return (MaskOp.apply(g, mask=x.data > 0),)


class MaskOp(Function):
    """y = g * m for a constant boolean mask m (zeros where m is False);  dg = MaskOp(h, m).

    ReLUOp's backward, in one pass over g (a float copy of the mask would be a second).
    Linear in g, so it is its own backward.
    """

    @staticmethod
    def forward(ctx, g, mask):
        ctx.save_for_backward(mask)
        return g * mask

    @staticmethod
    def backward(ctx, h):
        (mask,) = ctx.saved
        return (MaskOp.apply(h, mask=mask),)


class SigmoidOp(Function):
    """y = 1 / (1 + e^-x);  dx = g * y * (1 - y)."""

    @staticmethod
    def forward(ctx, x):
        # Two branches so that e^(-x) never overflows for very negative x.
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        y = SigmoidOp.apply(x)
        return (g * y * (1 - y),)


class TanhOp(Function):
    """y = tanh x;  dx = g * (1 - y^2)."""

    @staticmethod
    def forward(ctx, x):
        return np.tanh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        y = TanhOp.apply(x)
        return (g * (1 - y * y),)


class SoftplusOp(Function):
    """y = log(1 + e^(beta x)) / beta, and y = x where beta x > threshold (torch's rule);
    dx = g * sigmoid(beta x), and g where beta x > threshold."""

    @staticmethod
    def forward(ctx, x, beta, threshold):
        ctx.save_for_backward(beta, threshold)
        bx = beta * x
        # log1p(e^bx) computed without overflow: max(bx, 0) + log1p(e^-|bx|)
        smooth = (np.maximum(bx, 0) + np.log1p(np.exp(-np.abs(bx)))) / beta
        return np.where(bx > threshold, x, smooth)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        beta, threshold = ctx.saved
        linear = Tensor((beta * x.data > threshold).astype(x.dtype))  # constant mask
        slope = linear + (1 - linear) * SigmoidOp.apply(x * beta)
        return (g * slope,)


class WhereOp(Function):
    """y = a where condition else b (condition is a constant boolean array);
    da = g * [condition],  db = g * [not condition]."""

    @staticmethod
    def forward(ctx, a, b, condition):
        ctx.save_for_backward(condition)
        return np.where(condition, a, b)

    @staticmethod
    def backward(ctx, g):
        (condition,) = ctx.saved
        keep = Tensor(condition.astype(g.dtype))
        return g * keep, g * (1 - keep)


class ToDtypeOp(Function):
    """y = x converted to another float dtype;  dx = g converted back."""

    @staticmethod
    def forward(ctx, x, dtype):
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        return (ToDtypeOp.apply(g, dtype=x.dtype),)


# ----------------------------------------------------------------------------
# The functional interface (torch names)
# ----------------------------------------------------------------------------


def add(a, b):
    return AddOp.apply(*_operands(a, b, "add"))


def sub(a, b):
    return SubOp.apply(*_operands(a, b, "sub"))


def mul(a, b):
    return MulOp.apply(*_operands(a, b, "mul"))


def div(a, b):
    return DivOp.apply(*_operands(a, b, "div"))


def neg(x):
    return NegOp.apply(x)


def pow(x, exponent):
    if isinstance(exponent, Tensor) or not np.isscalar(exponent):
        raise TypeError("pow: the exponent must be a Python number; for a tensor exponent use exp(b * log(a))")
    return PowOp.apply(x, exponent=float(exponent))


def sqrt(x):
    return PowOp.apply(x, exponent=0.5)


def exp(x):
    return ExpOp.apply(x)


def log(x):
    return LogOp.apply(x)


def abs(x):
    return AbsOp.apply(x)


def relu(input):
    return ReLUOp.apply(input)


def sigmoid(input):
    return SigmoidOp.apply(input)


def tanh(input):
    return TanhOp.apply(input)


def softplus(input, beta: float = 1.0, threshold: float = 20.0):
    return SoftplusOp.apply(input, beta=float(beta), threshold=float(threshold))


def where(condition, input, other):
    """input where condition is True, else other; condition is a constant boolean array."""
    condition = np.asarray(condition.data if isinstance(condition, Tensor) else condition, dtype=bool)
    a, b = _operands(input, other, "where")
    return WhereOp.apply(a, b, condition=condition)


def to_dtype(x, dtype):
    dtype = float_dtype(dtype, "to")
    x = as_tensor(x)
    if x.dtype == dtype:
        return x
    return ToDtypeOp.apply(x, dtype=dtype)
