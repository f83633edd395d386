# %% [markdown]
# # Lesson 01: Automatic differentiation from scratch
#
# **Objectives**
# - Write a scalar reverse-mode autograd in about 30 lines, and check it against
#   finite differences.
# - Know the rules that every autograd follows and that CAM methods rely on: the
#   gradient of a broadcast is a sum, a value used twice gets the sum of both
#   gradients, and `backward()` *adds* into `.grad`.
# - Compute exact second and third derivatives (needed by Grad-CAM++) with
#   `create_graph=True`, and check a whole network's derivatives with random projections.
#
# **Prerequisites**: lesson 00 (optional); the chain rule; NumPy broadcasting.
#
# **Code you will read**
# - `minicam/autograd.py`: `Tensor`, `Function`, `grad`, `_topological_order`,
#   `_unbroadcast`, `_run_backward`
# - `minicam/ops/elementwise.py`: `MulOp`, `ExpOp`, `TanhOp` (each op's forward next to its backward)
# - `minicam/gradcheck.py`: `check_vjp`, `check_second_order`, `directional_derivative`
#
# **Time**: 45 minutes.

# %%
import math
import os

import numpy as np
from matplotlib.figure import Figure

import minicam
import minicam.viz
from minicam import Tensor, ops
from minicam.autograd import Function
from minicam.gradcheck import GradcheckError, check_second_order, check_vjp

SEED = 1
FAST = os.environ.get("MINICAM_FAST") == "1"  # CI: fewer points on the curves
rng = np.random.default_rng(SEED)

# %% [markdown]
# ## 1. A scalar autograd in 30 lines
#
# Reverse mode in one sentence: run the function forward, remembering for every
# intermediate value $v$ which values it was computed from; then walk back from the
# output, and give every value its **adjoint** $\bar v = \partial f / \partial v$ by the
# chain rule,
#
# $$\bar u \mathrel{+}= \bar v \, \frac{\partial v}{\partial u} \quad \text{for every } v \text{ computed from } u.$$
#
# The `+=` matters: a value used by several others collects one term from each. The
# walk must finish $\bar v$ before it passes it on, so it visits the values in reverse
# **topological order** (every value after all the values it was computed from).
#
# Each operation below records, next to its result, its inputs and its **local
# derivatives** $\partial v/\partial u$, one per input: $\frac{\partial (a+b)}{\partial a} = 1$,
# $\frac{\partial (ab)}{\partial a} = b$, $\tanh' = 1 - \tanh^2$, $\exp' = \exp$. `backward`
# then applies the formula above, in reverse topological order. This is the idea of
# Karpathy's *micrograd* (which stores a closure per op instead of the numbers).

# %%
class Value:
    """A scalar that remembers how it was computed."""

    def __init__(self, data, parents=(), local_grads=(), op="", name=""):
        self.data, self.grad = float(data), 0.0
        self.parents, self.local_grads = parents, local_grads  # local_grads[i] = d(self)/d(parents[i])
        self.op, self.name = op, name

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0), "+")

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data), "*")

    __radd__, __rmul__ = __add__, __mul__

    def tanh(self):
        t = math.tanh(self.data)
        return Value(t, (self,), (1 - t * t,), "tanh")

    def exp(self):
        e = math.exp(self.data)
        return Value(e, (self,), (e,), "exp")

    def backward(self):
        order, visited = [], set()

        def visit(value):  # depth first: a value is appended after all its parents
            if value not in visited:
                visited.add(value)
                for parent in value.parents:
                    visit(parent)
                order.append(value)
        visit(self)
        self.grad = 1.0  # d(self)/d(self)
        for value in reversed(order):  # value.grad is complete: everything computed from it came later
            for parent, local_grad in zip(value.parents, value.local_grads):
                parent.grad += local_grad * value.grad  # the chain rule; += sums over the uses of parent

    def __repr__(self):
        return f"Value({self.name or self.op}: data={self.data:.6g}, grad={self.grad:.6g})"


# %% [markdown]
# Our test function uses $a$ three times, so $\bar a$ collects three terms:
#
# $$f(a, b, c) = \tanh(ab + c)\, e^{a} + ac,$$
# $$\frac{\partial f}{\partial a} = (1 - t^2)\, b\, e^a + t\, e^a + c, \qquad
#   \frac{\partial f}{\partial b} = (1 - t^2)\, a\, e^a, \qquad
#   \frac{\partial f}{\partial c} = (1 - t^2)\, e^a + a, \qquad t = \tanh(ab + c).$$

# %%
def f(a, b, c):
    """Works on Values and on minicam Tensors alike: both define +, *, tanh and exp."""
    return (a * b + c).tanh() * a.exp() + a * c


point = {"a": 0.7, "b": -1.3, "c": 0.4}
a, b, c = (Value(v, name=k) for k, v in point.items())
out = f(a, b, c)
out.backward()
scalar_grads = {"a": a.grad, "b": b.grad, "c": c.grad}
print(out)
print(a, b, c, sep="\n")

# The hand-derived formulas above
t = math.tanh(point["a"] * point["b"] + point["c"])
ea = math.exp(point["a"])
by_hand = {
    "a": (1 - t * t) * point["b"] * ea + t * ea + point["c"],
    "b": (1 - t * t) * point["a"] * ea,
    "c": (1 - t * t) * ea + point["a"],
}
for k in point:
    assert abs(scalar_grads[k] - by_hand[k]) <= 1e-14 * abs(by_hand[k]), k

# %% [markdown]
# ### Checking against finite differences
#
# The central difference $\frac{f(x + h) - f(x - h)}{2h}$ differs from $f'(x)$ by about
# $\frac{h^2}{6} f'''(x)$ (the truncation error), plus the rounding error of $f$ divided
# by $2h$, about $10^{-16}/h$. With $h = 10^{-5}$ both are near $10^{-10}$; a relative
# disagreement above $10^{-8}$ would mean a wrong gradient.

# %%
def f_of_numbers(a, b, c):
    return math.tanh(a * b + c) * math.exp(a) + a * c


H = 1e-5
for k in point:
    plus, minus = dict(point), dict(point)
    plus[k] += H
    minus[k] -= H
    numeric = (f_of_numbers(**plus) - f_of_numbers(**minus)) / (2 * H)
    relative = abs(scalar_grads[k] - numeric) / abs(numeric)
    print(f"df/d{k}: backward {scalar_grads[k]: .12f}   finite difference {numeric: .12f}   relative error {relative:.1e}")
    assert relative < 1e-8, f"df/d{k} disagrees with finite differences ({relative:.1e})"

# %% [markdown]
# ### The graph, drawn
#
# Every box is a `Value`: what computed it, its `data` (forward pass) and its `grad`
# (backward pass). Arrows point from inputs to outputs; gradients flow against them.
# The three arrows leaving `a` are the three terms that `a.grad` sums.

# %%
def graph_layout(output):
    """(x, y) of every Value of f's graph, placed by hand so that no arrow crosses a box."""
    product, a_times_c = output.parents           # tanh(ab + c) * exp(a),  a * c
    tanh_node, exp_node = product.parents
    (inner_sum,) = tanh_node.parents              # ab + c
    a_times_b, c_leaf = inner_sum.parents
    a_leaf, b_leaf = a_times_b.parents
    return {a_leaf: (0, 1), b_leaf: (0, 0), c_leaf: (0, -1),
            a_times_b: (1, 0.5), a_times_c: (1, -1), inner_sum: (2, 0), exp_node: (3, 1),
            tanh_node: (3, 0), product: (4, 0.5), output: (5, 0)}


def draw_graph(output, position, title):
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax = fig.add_subplot()
    boxes = {}
    for value, (x, y) in position.items():
        leaf = not value.parents
        label = f"{value.name if leaf else value.op}\ndata {value.data:.3f}\ngrad {value.grad:.3f}"
        text = ax.text(x, y, label, ha="center", va="center", fontsize=9, family="monospace",
                       bbox=dict(boxstyle="round,pad=0.4", facecolor="#cfe3f7" if leaf else "#f7e3cf", edgecolor="0.3"))
        boxes[value] = text.get_bbox_patch()
    for value in position:
        for parent in value.parents:  # an arrow from centre to centre, clipped at the two boxes
            ax.annotate("", xy=position[value], xytext=position[parent],
                        arrowprops=dict(arrowstyle="-|>", color="0.35", patchA=boxes[parent], patchB=boxes[value],
                                        shrinkA=2, shrinkB=2))
    ax.set_xlim(-0.5, 5.5)
    ax.set_ylim(-1.5, 1.5)
    ax.axis("off")
    ax.set_title(title)
    return fig


fig = draw_graph(out, graph_layout(out), "f(a, b, c) = tanh(a*b + c) * exp(a) + a*c   (blue: inputs; arrows: forward; grads flow back)")
print("saved", minicam.viz.save_figure(fig, "01_computation_graph"))

# %% [markdown]
# ## 2. The same function with `minicam.Tensor`
#
# `minicam.Tensor` is the same idea for arrays. Each operation is a `Function` (a primitive,
# named with the suffix `Op`: `MulOp`, `ExpOp`, ...) with a
# `forward` on NumPy arrays and a `backward` that returns one gradient per input
# (open `minicam/ops/elementwise.py`: `MulOp.backward` returns `g * b, g * a`, our local
# derivatives $(b, a)$ times the upstream gradient). Two differences matter later:
#
# - the backward is written *with minicam operations*, so it can itself be recorded and
#   differentiated again (section 5);
# - the walk over the graph (`_topological_order`) is iterative, not recursive, so a
#   chain of 10,000 operations does not hit Python's recursion limit.
#
# `f` above only uses `*`, `+`, `.tanh()` and `.exp()`, so it runs on Tensors unchanged.

# %%
a_t, b_t, c_t = (Tensor(v, requires_grad=True) for v in point.values())
out_t = f(a_t, b_t, c_t)
out_t.backward()
print(out_t)
for k, tensor in zip(point, (a_t, b_t, c_t)):
    print(f"d/d{k}: minicam {tensor.grad.item(): .15f}   Value {scalar_grads[k]: .15f}")
    assert abs(tensor.grad.item() - scalar_grads[k]) <= 1e-14 * abs(scalar_grads[k])
assert abs(out_t.item() - out.data) <= 1e-15 * abs(out.data)

# %% [markdown]
# ## 3. Tensors and broadcasting: the gradient of a copy is a sum
#
# Adding a bias row $b$ (shape (3,)) to a matrix $X$ (shape (4, 3)) *copies* $b$ into
# every row: $Y_{ij} = X_{ij} + b_j$. Each copy passes the upstream gradient $G$ back to
# the same $b_j$, so the copies' gradients add up:
#
# $$\frac{\partial L}{\partial b_j} = \sum_i G_{ij}.$$
#
# Broadcasting (1) prepends axes and (2) stretches axes of length 1; its adjoint sums
# over exactly those axes. minicam does this in one place, `_unbroadcast`, for every
# input of every op. Take $L = \sum_{ij} V_{ij} Y_{ij}$ with a fixed random $V$, so
# $G = V$.

# %%
X = Tensor(rng.standard_normal((4, 3)), requires_grad=True)
row_bias = Tensor(rng.standard_normal(3), requires_grad=True)         # (3,): copied to each of 4 rows
column_bias = Tensor(rng.standard_normal((4, 1)), requires_grad=True)  # (4, 1): copied to each of 3 columns
scale = Tensor(rng.standard_normal(()), requires_grad=True)           # (): copied everywhere
V = rng.standard_normal((4, 3))

Y = scale * X + row_bias + column_bias
loss = (Tensor(V) * Y).sum()
loss.backward()

print("X.grad          ", X.grad.shape, "= scale * V")
print("row_bias.grad   ", row_bias.grad.shape, "= V summed over the rows:   ", np.round(row_bias.grad.numpy(), 4))
print("column_bias.grad", column_bias.grad.shape, "= V summed over the columns:", np.round(column_bias.grad.numpy().ravel(), 4))
print("scale.grad      ", scale.grad.shape, " = sum of V * X:             ", np.round(scale.grad.item(), 4))
assert np.allclose(X.grad.numpy(), scale.item() * V, rtol=1e-14, atol=0)
assert np.allclose(row_bias.grad.numpy(), V.sum(axis=0), rtol=1e-14, atol=1e-15)
assert np.allclose(column_bias.grad.numpy(), V.sum(axis=1, keepdims=True), rtol=1e-14, atol=1e-15)
assert np.allclose(scale.grad.item(), np.sum(V * X.numpy()), rtol=1e-14, atol=1e-15)
assert row_bias.grad.shape == row_bias.shape and column_bias.grad.shape == column_bias.shape

# %% [markdown]
# ## 4. Used twice, gets the sum; and `.grad` accumulates
#
# `b = a + a; c = b + b` gives $c = 4a$: the walk must add the two contributions at
# `b` before passing $\bar b = 2$ on to `a`, which then collects $2 + 2 = 4$. (With `=`
# instead of `+=` in `Value.backward`, $\bar a$ would come out as 1: exercise 3.)
#
# `backward()` **adds** into `.grad`, exactly as in PyTorch. Calling it twice doubles
# the gradient: that is why a training loop calls `zero_grad()` before each step.
# `minicam.grad(outputs, inputs)` returns the gradients instead and writes nothing.

# %%
a = Tensor(3.0, requires_grad=True)
b = a + a
c = b + b
c.backward()
print(f"c = 4a: dc/da = {a.grad.item()}")
assert a.grad.item() == 4.0

x = Tensor(3.0, requires_grad=True)
square = x * x
square.backward()
first = x.grad.item()
square.backward()  # the graph is kept: a second backward accumulates
second = x.grad.item()
x.zero_grad()
square.backward()
third = x.grad.item()
(returned,) = minicam.grad(square, x)
print(f"d(x*x)/dx at x = 3: after one backward {first}, after two {second}, after zero_grad and one more {third}; "
      f"minicam.grad returns {returned.item()} and leaves x.grad at {x.grad.item()}")
assert (first, second, third, returned.item(), x.grad.item()) == (6.0, 12.0, 6.0, 6.0, 6.0)

# %% [markdown]
# ## 5. Derivatives of derivatives: `create_graph=True`
#
# With `create_graph=True` the backward pass is recorded like any other computation, so
# its result can be differentiated again. For $f(x) = \tanh x$, with $t = \tanh x$:
#
# $$f' = 1 - t^2,\qquad f'' = -2t\,(1 - t^2),\qquad f''' = (6t^2 - 2)(1 - t^2).$$
#
# Look at `TanhOp.backward` in `minicam/ops/elementwise.py`: it returns `g * (1 - y * y)`
# with `y = TanhOp.apply(x)`, a recorded op, so differentiating the derivative goes
# through `TanhOp.backward` once more.
#
# We evaluate at many points at once: $x$ is a vector and $y_i = f(x_i)$. Since $y_i$
# depends on $x_i$ only, the gradient of $\sum_i y_i$ is the vector of the $f'(x_i)$ (the
# Jacobian is diagonal). Grad-CAM++ uses this same "sum, then differentiate" trick for
# its second and third derivatives; it is valid only because of that diagonal structure.

# %%
POINTS = 41 if FAST else 241
xs = Tensor(np.linspace(-3.0, 3.0, POINTS), requires_grad=True)
ys = xs.tanh()
(d1,) = minicam.grad(ys.sum(), xs, create_graph=True)
(d2,) = minicam.grad(d1.sum(), xs, create_graph=True)
(d3,) = minicam.grad(d2.sum(), xs)

grid_x = xs.numpy()
t = np.tanh(grid_x)
exact = {"f": t, "f'": 1 - t**2, "f''": -2 * t * (1 - t**2), "f'''": (6 * t**2 - 2) * (1 - t**2)}
computed = {"f": ys.numpy(), "f'": d1.numpy(), "f''": d2.numpy(), "f'''": d3.numpy()}
for name in exact:
    error = np.abs(computed[name] - exact[name]).max() / np.abs(exact[name]).max()
    print(f"{name:5s} max relative error against the formula: {error:.1e}")
    assert error < 1e-13, f"{name} disagrees with the formula ({error:.1e})"

# %%
fig = Figure(figsize=(7.5, 4.5), layout="constrained")
ax = fig.add_subplot()
colours = {"f": "black", "f'": "tab:blue", "f''": "tab:orange", "f'''": "tab:green"}
MARK = max(1, POINTS // 30)  # a formula marker on every MARK-th point
for name, colour in colours.items():
    ax.plot(grid_x, computed[name], color=colour, linewidth=2.2, label=f"{name} (minicam)")
    ax.plot(grid_x[::MARK], exact[name][::MARK], "o", color=colour, markersize=4, markerfacecolor="white",
            label=f"{name} (formula)")
ax.axhline(0, color="0.6", linewidth=0.8)
ax.set_xlabel("x")
ax.set_title("f(x) = tanh(x) and three derivatives from minicam.grad(create_graph=True)")
ax.legend(ncol=2, fontsize=8, loc="lower right")
print("saved", minicam.viz.save_figure(fig, "01_derivatives"))

# %% [markdown]
# ## 6. Checking a whole network: random projections
#
# Checking every partial derivative of a network by finite differences costs two
# forward passes per parameter. `minicam.gradcheck.check_vjp` costs two in total: for a
# random direction $u$ (shaped like the inputs) and a random covector $v$ (shaped like
# the output),
#
# $$\Big\langle v,\ \frac{f(x + hu) - f(x - hu)}{2h} \Big\rangle \approx \langle J^\top v,\ u \rangle ,$$
#
# the left side from two forward passes, the right side from one backward pass.
# `check_second_order` does the same for $g(x) = \langle J(x)^\top v, w\rangle$, whose
# gradient needs `create_graph=True`. Both raise `GradcheckError` if the two sides
# disagree, and return the relative error otherwise.
#
# The network: a convolution, tanh, global average pooling and a Linear layer, the
# shape of the lesson network. We use tanh rather than ReLU here: finite differences
# across a kink of ReLU are wrong, not the gradient.

# %%
def small_network(x, conv_weight, fc_weight, fc_bias):
    features = ops.tanh(ops.conv2d(x, conv_weight, padding=1))       # (N, 4, 6, 6)
    pooled = ops.adaptive_avg_pool2d(features, 1).flatten(1)          # (N, 4)
    return ops.linear(pooled, fc_weight, fc_bias)                     # (N, 3)


network_inputs = [
    rng.standard_normal((2, 3, 6, 6)),   # x
    rng.standard_normal((4, 3, 3, 3)),   # conv weight
    rng.standard_normal((3, 4)),         # fc weight
    rng.standard_normal(3),              # fc bias
]
first_order = check_vjp(small_network, network_inputs, rng)
second_order = check_second_order(small_network, network_inputs, rng)
print(f"check_vjp: relative error {first_order:.1e};  check_second_order: relative error {second_order:.1e}")

# %% [markdown]
# A check is only worth something if it fails on a wrong gradient. Here is an op with a
# planted bug: the derivative of $x^2$ written as $x$ instead of $2x$.

# %%
class BuggySquareOp(Function):
    """y = x^2, with a WRONG backward: dx = g * x (the correct one is g * 2x)."""

    @staticmethod
    def forward(ctx, x):
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.inputs
        return (g * x,)


try:
    check_vjp(lambda x: BuggySquareOp.apply(x).sum(), [rng.standard_normal(5)], rng)
except GradcheckError as error:
    print(f"caught, as it should be: {error}")
else:
    raise AssertionError("check_vjp should have caught the planted bug")

# %% [markdown]
# ## Exercises
#
# 1. Add `__sub__`, `__neg__` and `__pow__` (for a constant exponent) to `Value`, and
#    check $g(a, b) = (a - b)^3$ against finite differences.
# 2. Replace the recursive `visit` in `Value.backward` by an explicit stack. Build a
#    chain of 5,000 additions and show that the recursive version fails
#    (`RecursionError`) while yours and `minicam.Tensor` succeed.
# 3. Break `Value.backward` in two ways and predict the damage before running: (a) loop
#    over `order` *forwards* instead of reversed; (b) write `parent.grad = ...` instead
#    of `+=`. Which gradients of `f` change, and what do `b = a + a; c = b + b` give?
# 4. For $X$ of shape (2, 1, 3) and $b$ of shape (4, 1), what is the shape of $X + b$?
#    Predict `b.grad` for $L = \sum (X + b)^2$ by hand and check it.
# 5. Compute $f''(x)$ of $f(x) = \tanh(x)$ by finite differences of `minicam.grad` with
#    `create_graph=False`, and with `create_graph=True` exactly. How large is the
#    finite-difference error for $h = 10^{-3}, 10^{-5}, 10^{-7}$? Why does it grow again?
#
# ## Instructor notes
#
# - **Expected output**: the three scalar gradients agree with finite differences to
#   $10^{-11}$ or better and with `minicam.Tensor` to the last digit (here exactly);
#   all four curves agree with their formulas to about $10^{-16}$; `check_vjp` reports
#   about $10^{-10}$ and `check_second_order` about $10^{-8}$ (its step is $h = 10^{-5}$
#   and it differentiates a gradient, so more truncation error: still far below an
#   error of a real bug, which is of order 1); the planted bug is caught with a message
#   showing the backward's value at half the finite difference's.
# - **Misconception**: "the gradient of a bias is the upstream gradient". Only when
#   nothing is broadcast. With a batch, the bias is copied to every example and its
#   gradient is the sum over the batch (section 3). Students who write a layer by hand
#   meet this as a shape error, or worse, as a silently wrong sum.
# - **Misconception**: "`backward()` sets `.grad`". It adds. Ask what happens in a
#   training loop without `zero_grad()`: the gradients of all past steps add up, which
#   acts like an ever-growing momentum; training usually diverges.
# - **Misconception**: "`create_graph=True` is an approximation" or "second derivatives
#   need finite differences". They are exact: the backward pass is an ordinary program
#   made of differentiable ops. It matters for Grad-CAM++, whose weights use second and
#   third derivatives of the class score.
# - **Discussion prompt**: why does `check_vjp` use a random direction instead of
#   checking each coordinate? (Cost: 2 forward passes instead of 2 per parameter; a
#   random $u$ and $v$ make an accidental cancellation of errors improbable.) Why is
#   float64 needed? (In float32 central differences carry errors near $10^{-2}$.)
# - **Timing**: section 1 (with live coding of `Value`) 15 minutes; the graph figure
#   5; sections 2-4, 10; section 5, 10; section 6, 5. The script runs in about 3 seconds.
