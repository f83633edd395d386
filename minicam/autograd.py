"""The autograd engine: Tensor, Function, grad(), no_grad().

A Tensor wraps a NumPy array. Every operation on Tensors is a `Function`:
`forward` works on plain arrays, `backward` works on Tensors with minicam
operations. Because a backward is itself built from recorded operations, asking
for `create_graph=True` records the backward pass too, and differentiating it
again gives exact second and third derivatives (torch does the same).

Semantics, as in torch:
- `Tensor.backward()` ADDS into `.grad` of every leaf that requires grad;
  call `zero_grad()` (or set `.grad = None`) between steps.
- A tensor used twice receives the sum of both contributions.
- Graphs are never freed by minicam, so `retain_graph` is not needed: calling
  backward twice on the same graph accumulates twice.
- The walk over the graph is iterative, so a chain of 10,000 ops works.
- Broadcasting in the forward pass is undone in one place, `_unbroadcast`,
  called by the engine for every input of every op.

NaN and Inf are not checked here: they propagate through the arithmetic
exactly as IEEE-754 (and torch) propagate them. Code that must not receive them
(for example `minicam.cam`) checks its inputs and raises a clear error.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# ----------------------------------------------------------------------------
# Grad mode
# ----------------------------------------------------------------------------

_grad_enabled = True


def is_grad_enabled() -> bool:
    return _grad_enabled


class set_grad_enabled:
    """Turn recording of the graph on or off, as torch.set_grad_enabled.

    Used in a `with` block, the mode holds inside the block and the previous mode
    comes back at its end. Called as a plain function, it switches the mode at
    once; an enclosing `with` block still restores its own previous mode when it
    ends (minicam.cam.capture uses this to start recording at a layer).
    """

    def __init__(self, mode: bool):
        global _grad_enabled
        self.previous = _grad_enabled
        _grad_enabled = bool(mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        global _grad_enabled
        _grad_enabled = self.previous
        return False


def no_grad():
    """`with minicam.no_grad():` computes values without recording a graph."""
    return set_grad_enabled(False)


def enable_grad():
    """`with minicam.enable_grad():` records a graph even inside no_grad()."""
    return set_grad_enabled(True)


# ----------------------------------------------------------------------------
# Turning user input into float arrays
# ----------------------------------------------------------------------------

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(dtype, what: str) -> np.dtype:
    """`dtype` as np.float32 or np.float64 (None means float64, the default of a reference),
    or a TypeError that names `what` asked for it and what to use instead.

    The one check of a requested dtype: Tensor data, ops.to_dtype, the nn layers and Module.to call it.
    """
    dtype = np.dtype(np.float64 if dtype is None else dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{what}: dtype {dtype} is not supported; use np.float32 or np.float64")
    return dtype


def to_float_array(data, dtype=None, what: str = "Tensor data") -> np.ndarray:
    """Return `data` as a float32 or float64 array, or explain why it can't be.

    Python numbers, lists, bools and integer arrays become float64 (a reference
    implementation computes in float64 unless asked otherwise). float32 and
    float64 arrays keep their dtype. float16, complex and object arrays are
    refused: minicam computes only in float32 and float64.
    """
    if isinstance(data, Tensor):
        data = data.data
    array = np.asarray(data)
    if array.dtype.kind not in "biuf":  # None in an object array would become NaN, a string an error later
        raise TypeError(
            f"{what}: arrays of dtype {array.dtype} are not supported (only numbers: a None or a string is not "
            "one); convert to np.float32 or np.float64 first (e.g. x.astype(np.float64))"
        )
    if dtype is not None:
        return array.astype(float_dtype(dtype, what), copy=False)
    if array.dtype in FLOAT_DTYPES:
        return array
    if array.dtype.kind in "biu":  # bool, signed and unsigned integers
        return array.astype(np.float64)
    raise TypeError(
        f"{what}: arrays of dtype {array.dtype} are not supported; "
        "convert to np.float32 or np.float64 first (e.g. x.astype(np.float64))"
    )


# ----------------------------------------------------------------------------
# Tensor
# ----------------------------------------------------------------------------


class Tensor:
    """An array that remembers how it was computed.

    Tensor(data, requires_grad=False, dtype=None)
      data           anything np.asarray accepts; integers become float64
      requires_grad  True to have gradients computed for this tensor
      .data          the NumPy array;  .numpy() returns the same array
      .grad          a Tensor after backward(), or None
    """

    # Make NumPy defer to Tensor's operators in `array * tensor`.
    __array_priority__ = 1000

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = to_float_array(data, dtype)
        self.requires_grad = bool(requires_grad)
        self.grad: Tensor | None = None
        self._ctx: Context | None = None  # the op that produced this tensor, None for a leaf

    # --- basic properties --------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self):
        """The primitive (a Function subclass, e.g. ops.elementwise.MulOp) that computed this
        tensor, or None for a leaf and for results computed without a graph. As torch's
        grad_fn, except that it is the class itself (torch gives a node object)."""
        return None if self._ctx is None else self._ctx.function

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return self.data.size

    def dim(self) -> int:
        return self.data.ndim

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> "Tensor":
        """The same values, cut from the graph (shares memory, like torch)."""
        return Tensor(self.data)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        if not self.is_leaf:
            raise RuntimeError("requires_grad_ can only be set on a leaf tensor; use .detach() first")
        self.requires_grad = flag
        return self

    def zero_grad(self) -> None:
        self.grad = None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        body = np.array2string(self.data, precision=4, separator=", ", threshold=20)
        extra = ""
        if self.dtype != np.float64:
            extra += f", dtype={self.dtype}"
        if self.grad_fn is not None:
            extra += f", grad_fn={self.grad_fn.__name__}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"Tensor({body}{extra})"

    def __bool__(self):
        raise TypeError("the truth value of a Tensor is ambiguous; compare .data or use .item()")

    # --- backward ----------------------------------------------------------
    def backward(self, grad=None, create_graph: bool = False) -> None:
        """Add d(self)/d(leaf) into `leaf.grad` for every leaf that requires grad.

        `grad` is the vector of the vector-Jacobian product; it may be omitted
        only for a one-element tensor (then it is 1). With create_graph=True the
        gradients are themselves recorded, so they can be differentiated again.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of its graph "
                "has requires_grad=True (or it was computed under no_grad())"
            )
        grad = _default_grad_output(self, grad)
        leaves = _run_backward([self], [grad], targets=None, create_graph=create_graph)
        for leaf, leaf_grad in leaves.items():
            if not create_graph:
                leaf_grad = leaf_grad.detach()
            leaf.grad = leaf_grad if leaf.grad is None else _accumulate(leaf.grad, leaf_grad, create_graph)

    # --- operators: each is a two-line wrapper around an op ----------------
    # (imported lazily so that autograd.py does not depend on ops at import time)
    def __add__(self, other):
        return _ops().add(self, other)

    def __radd__(self, other):
        return _ops().add(other, self)

    def __sub__(self, other):
        return _ops().sub(self, other)

    def __rsub__(self, other):
        return _ops().sub(other, self)

    def __mul__(self, other):
        return _ops().mul(self, other)

    def __rmul__(self, other):
        return _ops().mul(other, self)

    def __truediv__(self, other):
        return _ops().div(self, other)

    def __rtruediv__(self, other):
        return _ops().div(other, self)

    def __neg__(self):
        return _ops().neg(self)

    def __pow__(self, exponent):
        return _ops().pow(self, exponent)

    def __matmul__(self, other):
        return _ops().matmul(self, other)

    def __rmatmul__(self, other):
        return _ops().matmul(other, self)

    def __getitem__(self, index):
        return _ops().index(self, index)

    # Comparisons give plain boolean arrays: they have no gradient.
    def __gt__(self, other):
        return self.data > _data(other)

    def __ge__(self, other):
        return self.data >= _data(other)

    def __lt__(self, other):
        return self.data < _data(other)

    def __le__(self, other):
        return self.data <= _data(other)

    # --- methods named as in torch ------------------------------------------
    def exp(self):
        return _ops().exp(self)

    def log(self):
        return _ops().log(self)

    def relu(self):
        return _ops().relu(self)

    def sigmoid(self):
        return _ops().sigmoid(self)

    def tanh(self):
        return _ops().tanh(self)

    def sqrt(self):
        return _ops().sqrt(self)

    def abs(self):
        return _ops().abs(self)

    def sum(self, dim=None, keepdim: bool = False):
        return _ops().sum(self, dim, keepdim)

    def mean(self, dim=None, keepdim: bool = False):
        return _ops().mean(self, dim, keepdim)

    def max(self, dim=None, keepdim: bool = False):
        return _ops().max(self, dim, keepdim)

    def reshape(self, *shape):
        return _ops().reshape(self, *shape)

    def view(self, *shape):
        return _ops().reshape(self, *shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        return _ops().flatten(self, start_dim, end_dim)

    def permute(self, *dims):
        return _ops().permute(self, *dims)

    def transpose(self, dim0: int, dim1: int):
        return _ops().transpose(self, dim0, dim1)

    @property
    def T(self):
        return _ops().permute(self, *reversed(range(self.ndim)))

    def expand(self, *shape):
        return _ops().broadcast_to(self, *shape)

    def to(self, dtype):
        return _ops().to_dtype(self, dtype)

    def float(self):
        return _ops().to_dtype(self, np.float32)

    def double(self):
        return _ops().to_dtype(self, np.float64)


def _ops():
    from minicam import ops  # late import: ops is built on this module

    return ops


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """Wrap `x` as a Tensor. A Python number takes the dtype of `like` (as in
    torch, `float32_tensor * 2.0` stays float32)."""
    if isinstance(x, Tensor):
        return x
    if like is not None and isinstance(x, (int, float, bool, np.number)):
        return Tensor(np.asarray(x, dtype=like.dtype))
    return Tensor(x)


# ----------------------------------------------------------------------------
# Function
# ----------------------------------------------------------------------------


class Context:
    """What one application of a Function remembers for its backward."""

    def __init__(self, function, inputs: Sequence[Tensor]):
        self.function = function
        self.inputs = tuple(inputs)
        self.saved: tuple = ()

    def save_for_backward(self, *values) -> None:
        self.saved = values


class Function:
    """Base class of every op.

    Subclasses define two static methods:
      forward(ctx, *arrays, **params) -> np.ndarray      on NumPy arrays
      backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]
          one gradient per Tensor input, written with minicam ops so that it
          can be differentiated again; `ctx.inputs` holds the input Tensors.
    A gradient may have the broadcast (output-like) shape: the engine sums it
    back to the input's shape.
    """

    @staticmethod
    def forward(ctx, *arrays, **params):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad_out):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params) -> Tensor:
        tensors = [as_tensor(x) for x in inputs]
        ctx = Context(cls, tensors)
        out = Tensor(cls.forward(ctx, *[t.data for t in tensors], **params))
        if _grad_enabled and any(t.requires_grad for t in tensors):
            out.requires_grad = True
            out._ctx = ctx
        return out


# ----------------------------------------------------------------------------
# The backward walk
# ----------------------------------------------------------------------------


def _default_grad_output(output: Tensor, grad) -> Tensor:
    if grad is None:
        if output.numel() != 1:
            raise RuntimeError(
                f"grad can be implicitly created only for one-element outputs; this output has "
                f"shape {output.shape}: pass grad (or grad_outputs) of that shape"
            )
        return Tensor(np.ones_like(output.data))
    grad = as_tensor(grad, like=output)
    if grad.shape != output.shape:
        raise RuntimeError(f"grad has shape {grad.shape} but the output has shape {output.shape}")
    return grad


def _topological_order(outputs: Sequence[Tensor]) -> list[Tensor]:
    """Every tensor of the graph that requires grad, inputs before the ops that use them.

    Iterative depth-first search (no recursion, so deep graphs are fine). A
    tensor is expanded the first time it is popped, not when it is pushed: a
    tensor reached by a short path and a long one (x in x - log(sum(exp(x))))
    must still come after everything that uses it, in reverse order.
    """
    order: list[Tensor] = []
    expanded: set[int] = set()
    stack = [(root, False) for root in reversed(outputs)]
    while stack:
        tensor, parents_done = stack.pop()
        if parents_done:
            order.append(tensor)  # every input of its op is already in `order`
            continue
        if id(tensor) in expanded:  # reached before through another path
            continue
        expanded.add(id(tensor))
        stack.append((tensor, True))
        if tensor._ctx is not None:
            for parent in tensor._ctx.inputs:
                if parent.requires_grad and id(parent) not in expanded:
                    stack.append((parent, False))
    return order


def _unbroadcast(grad: Tensor, shape: tuple, op_name: str) -> Tensor:
    """Sum `grad` down to `shape`: the adjoint of NumPy's broadcasting.

    Broadcasting (1) prepends axes and (2) stretches axes of length 1; the
    gradient of both is a sum over the stretched axes.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra < 0:
        raise RuntimeError(f"{op_name}.backward returned a gradient of shape {grad.shape} for an input of shape {shape}")
    if extra:
        grad = grad.sum(dim=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(dim=stretched, keepdim=True)
    if grad.shape != shape:
        raise RuntimeError(f"{op_name}.backward returned a gradient of shape {grad.shape} for an input of shape {shape}")
    return grad


def _accumulate(total: Tensor, new: Tensor, create_graph: bool) -> Tensor:
    if create_graph:
        return total + new
    return Tensor(total.data + new.data)


def _run_backward(outputs, grad_outputs, targets, create_graph):
    """Propagate gradients from `outputs` back through the graph.

    targets=None: return {leaf: gradient} for every leaf that requires grad.
    targets=[tensors]: return {tensor: gradient} for those tensors only, and
    walk only the part of the graph that leads to them.
    """
    order = _topological_order(outputs)
    if targets is None:
        wanted = {id(t) for t in order if t.is_leaf}
    else:
        wanted = {id(t) for t in targets}

    # needed[t]: some wanted tensor lies at or below t, so t's gradient matters.
    needed: dict[int, bool] = {}
    for tensor in order:  # inputs come before the ops that use them
        below = tensor._ctx is not None and any(needed.get(id(p), False) for p in tensor._ctx.inputs)
        needed[id(tensor)] = id(tensor) in wanted or below

    grads: dict[int, Tensor] = {}
    for output, grad in zip(outputs, grad_outputs):
        if id(output) in grads:
            grads[id(output)] = _accumulate(grads[id(output)], grad, create_graph)
        else:
            grads[id(output)] = grad

    results: dict[Tensor, Tensor] = {}
    with set_grad_enabled(create_graph):
        for tensor in reversed(order):
            grad = grads.pop(id(tensor), None)
            if grad is None or not needed[id(tensor)]:
                continue
            if id(tensor) in wanted:
                results[tensor] = grad
            ctx = tensor._ctx
            if ctx is None:
                continue
            input_grads = ctx.function.backward(ctx, grad)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            name = ctx.function.__name__
            if len(input_grads) != len(ctx.inputs):
                raise RuntimeError(f"{name}.backward returned {len(input_grads)} gradients for {len(ctx.inputs)} inputs")
            for parent, parent_grad in zip(ctx.inputs, input_grads):
                if parent_grad is None or not parent.requires_grad or not needed.get(id(parent), False):
                    continue
                parent_grad = _unbroadcast(as_tensor(parent_grad), parent.shape, name)
                if parent_grad.dtype != parent.dtype:
                    parent_grad = parent_grad.to(parent.dtype)
                if id(parent) in grads:
                    grads[id(parent)] = _accumulate(grads[id(parent)], parent_grad, create_graph)
                else:
                    grads[id(parent)] = parent_grad
    return results


def grad(outputs, inputs, grad_outputs=None, create_graph: bool = False, allow_unused: bool = False):
    """The gradients of `outputs` with respect to `inputs`, as torch.autograd.grad.

    outputs       a Tensor or a sequence of Tensors
    inputs        a Tensor or a sequence of Tensors (leaves or intermediate results)
    grad_outputs  the vectors of the vector-Jacobian products, one per output;
                  None (or a None entry) means ones, allowed for one-element outputs
    create_graph  record the computation of the gradients, to differentiate them again
    allow_unused  return None for an input the outputs do not depend on, instead of raising

    Returns a tuple with one Tensor (or None) per input. Unlike backward(),
    nothing is written into `.grad`.
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, (Tensor, np.ndarray)):  # one vector, not a list of them
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    grad_outputs = list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad_outputs has {len(grad_outputs)} entries for {len(outputs)} outputs")
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"inputs[{i}] is a {type(tensor).__name__}, not a Tensor")
        if not tensor.requires_grad:
            raise RuntimeError(f"inputs[{i}] (shape {tensor.shape}) does not require grad; create it with requires_grad=True")
    for i, output in enumerate(outputs):
        if not output.requires_grad:
            raise RuntimeError(f"outputs[{i}] does not require grad: it does not depend on any input that requires grad")
    grad_outputs = [_default_grad_output(o, g) for o, g in zip(outputs, grad_outputs)]

    found = _run_backward(outputs, grad_outputs, targets=inputs, create_graph=create_graph)
    result = []
    for i, tensor in enumerate(inputs):
        g = found.get(tensor)
        if g is None and not allow_unused:
            raise RuntimeError(
                f"inputs[{i}] (shape {tensor.shape}) is not used to compute the outputs; "
                "pass allow_unused=True to get None for it"
            )
        if g is not None and not create_graph:
            g = g.detach()
        result.append(g)
    return tuple(result)
