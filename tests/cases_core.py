"""Op cases for the core ops: element-wise, reductions, shape ops, matmul, linear."""
import numpy as np
from hypothesis import strategies as st

from minicam import ops
from op_cases import F, OpCase, T
from strategies import broadcastable_shapes, kink_free, positive, rng_from, seeds, shapes, tie_free, values


def unary(value_fn, max_dims=3):
    def draw(data):
        shape = data.draw(shapes(0, max_dims), label="shape")
        rng = rng_from(data.draw(seeds(), label="seed"))
        return [value_fn(rng, shape)], {}

    return draw


def binary(left=values, right=values):
    def draw(data):
        a_shape, b_shape = data.draw(broadcastable_shapes(2), label="shapes")
        rng = rng_from(data.draw(seeds(), label="seed"))
        return [left(rng, a_shape), right(rng, b_shape)], {}

    return draw


def reduction(value_fn):
    """A tensor and a `dim` (None, an int, or a tuple) with keepdim."""

    def draw(data):
        shape = data.draw(shapes(1, 3), label="shape")
        rng = rng_from(data.draw(seeds(), label="seed"))
        axes = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1),
                                   st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True).map(tuple)),
                         label="dim")
        return [value_fn(rng, shape)], {"dim": axes, "keepdim": data.draw(st.booleans(), label="keepdim")}

    return draw


def _torch_sum(x, dim, keepdim):
    return x.sum() if dim is None and not keepdim else x.sum(dim=dim if dim is not None else tuple(range(x.ndim)), keepdim=keepdim)


def _torch_mean(x, dim, keepdim):
    return x.mean() if dim is None and not keepdim else x.mean(dim=dim if dim is not None else tuple(range(x.ndim)), keepdim=keepdim)


def _torch_max(x, dim, keepdim):
    # minicam.max over one int dim follows torch.max(x, dim); over several dims, amax.
    if dim is None:
        return x.amax(dim=tuple(range(x.ndim)), keepdim=keepdim) if keepdim else x.max()
    if isinstance(dim, int):
        return x.max(dim=dim, keepdim=keepdim).values
    return x.amax(dim=dim, keepdim=keepdim)


def draw_max(data):
    shape = data.draw(shapes(1, 3), label="shape")
    rng = rng_from(data.draw(seeds(), label="seed"))
    dim = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1),
                              st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True).map(tuple)), label="dim")
    return [tie_free(rng, shape)], {"dim": dim, "keepdim": data.draw(st.booleans(), label="keepdim")}


def draw_reshape(data):
    shape = data.draw(shapes(1, 3), label="shape")
    rng = rng_from(data.draw(seeds(), label="seed"))
    n = int(np.prod(shape))
    new = (n,) if n % 2 else (2, n // 2)
    return [values(rng, shape)], {"shape": new}


def draw_permute(data):
    shape = data.draw(shapes(1, 4), label="shape")
    rng = rng_from(data.draw(seeds(), label="seed"))
    dims = tuple(data.draw(st.permutations(range(len(shape))), label="dims"))
    return [values(rng, shape)], {"dims": dims}


def draw_flatten(data):
    shape = data.draw(shapes(1, 4), label="shape")
    rng = rng_from(data.draw(seeds(), label="seed"))
    start = data.draw(st.integers(0, len(shape) - 1), label="start")
    end = data.draw(st.integers(start, len(shape) - 1), label="end")
    return [values(rng, shape)], {"start_dim": start, "end_dim": end}


def draw_pad(data):
    shape = data.draw(shapes(1, 4), label="shape")
    rng = rng_from(data.draw(seeds(), label="seed"))
    pairs = data.draw(st.integers(1, len(shape)), label="padded dims")
    widths = tuple(data.draw(st.lists(st.integers(0, 2), min_size=2 * pairs, max_size=2 * pairs), label="pad"))
    return [values(rng, shape)], {"pad": widths, "value": data.draw(st.sampled_from([0.0, -1.5]), label="value")}


def draw_index(data):
    shape = data.draw(shapes(2, 3, min_side=2), label="shape")
    rng = rng_from(data.draw(seeds(), label="seed"))
    kind = data.draw(st.sampled_from(["slice", "int-array-with-repeats", "mask"]), label="kind")
    if kind == "slice":
        index = (slice(1, None), slice(None, None, 2))
    elif kind == "int-array-with-repeats":
        index = (np.array([0, 1, 0, 0]),)
    else:
        index = (rng.random(shape[:1]) > 0.3,)
    return [values(rng, shape)], {"index": index}


def draw_cat(data):
    shape = data.draw(shapes(1, 3), label="shape")
    dim = data.draw(st.integers(0, len(shape) - 1), label="dim")
    rng = rng_from(data.draw(seeds(), label="seed"))
    other = list(shape)
    other[dim] = data.draw(st.integers(1, 3), label="other size")
    return [values(rng, shape), values(rng, tuple(other))], {"dim": dim}


def draw_stack(data):
    shape = data.draw(shapes(0, 3), label="shape")
    rng = rng_from(data.draw(seeds(), label="seed"))
    return [values(rng, shape), values(rng, shape), values(rng, shape)], {"dim": data.draw(st.integers(0, len(shape)), label="dim")}


def draw_matmul(data):
    batch_a, batch_b = data.draw(broadcastable_shapes(2, max_dims=2, max_side=3), label="batch shapes")
    n, k, m = (data.draw(st.integers(1, 4), label=s) for s in "nkm")
    rng = rng_from(data.draw(seeds(), label="seed"))
    return [values(rng, batch_a + (n, k)), values(rng, batch_b + (k, m))], {}


def draw_matmul_vector(data):
    k, m = data.draw(st.integers(1, 4), label="k"), data.draw(st.integers(1, 4), label="m")
    rng = rng_from(data.draw(seeds(), label="seed"))
    left = data.draw(st.booleans(), label="vector on the left")
    return ([values(rng, (k,)), values(rng, (k, m))] if left else [values(rng, (m, k)), values(rng, (k,))]), {}


def draw_linear(data):
    lead = data.draw(shapes(0, 2), label="leading shape")
    fan_in, fan_out = data.draw(st.integers(1, 5), label="in"), data.draw(st.integers(1, 5), label="out")
    rng = rng_from(data.draw(seeds(), label="seed"))
    return [values(rng, lead + (fan_in,)), values(rng, (fan_out, fan_in)), values(rng, (fan_out,))], {}


def draw_softplus(data):
    shape = data.draw(shapes(0, 3), label="shape")
    rng = rng_from(data.draw(seeds(), label="seed"))
    beta = data.draw(st.sampled_from([1.0, 2.0, 0.5]), label="beta")
    # the threshold (where softplus switches to the identity) sits inside the value range,
    # but values stay 0.05 away from it, like kink-free values
    threshold = data.draw(st.sampled_from([20.0, 1.0]), label="threshold")
    x = values(rng, shape, -3, 3)
    x = np.where(np.abs(beta * x - threshold) < 0.05, x + 0.1 / beta, x)
    return [x], {"beta": beta, "threshold": threshold}


def draw_where(data):
    shape = data.draw(shapes(0, 3), label="shape")
    rng = rng_from(data.draw(seeds(), label="seed"))
    return [values(rng, shape), values(rng, shape)], {"condition": rng.random(shape) > 0.5}


def draw_broadcast_to(data):
    shape = data.draw(shapes(1, 3), label="shape")
    rng = rng_from(data.draw(seeds(), label="seed"))
    small = tuple(1 if data.draw(st.booleans(), label=f"squeeze {i}") else n for i, n in enumerate(shape))
    return [values(rng, small)], {"shape": (2,) + shape}


CASES = [
    OpCase("add", lambda a, b: a + b, lambda a, b: a + b, binary()),
    OpCase("sub", lambda a, b: a - b, lambda a, b: a - b, binary()),
    OpCase("mul", lambda a, b: a * b, lambda a, b: a * b, binary()),
    OpCase("div", lambda a, b: a / b, lambda a, b: a / b, binary(values, positive)),
    OpCase("neg", lambda x: -x, lambda x: -x, unary(values)),
    OpCase("pow", lambda x: ops.pow(x, 3), lambda x: x**3, unary(values)),
    OpCase("pow_fractional", lambda x: ops.pow(x, -1.5), lambda x: x**-1.5, unary(positive)),
    OpCase("sqrt", ops.sqrt, lambda x: x.sqrt(), unary(positive)),
    OpCase("exp", ops.exp, lambda x: x.exp(), unary(values)),
    OpCase("log", ops.log, lambda x: x.log(), unary(positive)),
    OpCase("abs", ops.abs, lambda x: x.abs(), unary(kink_free)),
    OpCase("relu", ops.relu, lambda x: F().relu(x), unary(kink_free)),
    OpCase("sigmoid", ops.sigmoid, lambda x: x.sigmoid(), unary(lambda r, s: values(r, s, -6, 6))),
    OpCase("tanh", ops.tanh, lambda x: x.tanh(), unary(values)),
    OpCase("softplus", ops.softplus, lambda x, beta, threshold: F().softplus(x, beta, threshold), draw_softplus),
    OpCase("where", lambda a, b, condition: ops.where(condition, a, b),
           lambda a, b, condition: T().where(T().as_tensor(condition), a, b), draw_where),
    OpCase("sum", ops.sum, _torch_sum, reduction(values)),
    OpCase("mean", ops.mean, _torch_mean, reduction(values)),
    OpCase("max", ops.max, _torch_max, draw_max),
    OpCase("broadcast_to", lambda x, shape: ops.broadcast_to(x, shape), lambda x, shape: x.expand(shape), draw_broadcast_to),
    OpCase("reshape", lambda x, shape: ops.reshape(x, shape), lambda x, shape: x.reshape(shape), draw_reshape),
    OpCase("flatten", ops.flatten, lambda x, start_dim, end_dim: x.flatten(start_dim, end_dim), draw_flatten),
    OpCase("permute", lambda x, dims: ops.permute(x, dims), lambda x, dims: x.permute(dims), draw_permute),
    OpCase("pad", ops.pad, lambda x, pad, value: F().pad(x, pad, value=value), draw_pad),
    OpCase("index", lambda x, index: x[index], lambda x, index: x[tuple(T().from_numpy(i) if isinstance(i, np.ndarray) else i for i in index)], draw_index),
    OpCase("cat", lambda a, b, dim: ops.cat([a, b], dim), lambda a, b, dim: T().cat([a, b], dim), draw_cat),
    OpCase("stack", lambda a, b, c, dim: ops.stack([a, b, c], dim), lambda a, b, c, dim: T().stack([a, b, c], dim), draw_stack),
    OpCase("matmul", ops.matmul, lambda a, b: a @ b, draw_matmul),
    OpCase("matmul_vector", ops.matmul, lambda a, b: a @ b, draw_matmul_vector),
    OpCase("linear", ops.linear, lambda x, w, b: F().linear(x, w, b), draw_linear),
]
