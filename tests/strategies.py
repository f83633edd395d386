"""Hypothesis strategies for op inputs, built so that checks are meaningful.

Shapes and geometry are drawn by hypothesis (so failures shrink to small
cases); values come from a NumPy generator seeded by a drawn integer (fast for
arrays of any size, and reproducible from the seed hypothesis prints).

Value families, each built by construction instead of filtered:
  values(...)     smooth ops: uniform in [-2, 2]
  kink_free(...)  piecewise-linear ops (relu, abs, max): |x| >= margin, so a
                  finite-difference step never crosses a kink at 0
  positive(...)   log, division, sqrt: in [0.5, 2]
  tie_free(...)   max and max-pool: a scaled permutation, every value distinct
                  by at least `gap`, so every window has a unique maximum
"""
import numpy as np
from hypothesis import strategies as st


def shapes(min_dims=1, max_dims=3, min_side=1, max_side=4):
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def seeds():
    return st.integers(0, 2**32 - 1)


def rng_from(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def values(rng, shape, low=-2.0, high=2.0):
    return rng.uniform(low, high, size=shape)


def kink_free(rng, shape, margin=1e-2, high=2.0):
    magnitude = rng.uniform(margin, high, size=shape)
    sign = rng.choice([-1.0, 1.0], size=shape)
    return magnitude * sign


def positive(rng, shape, low=0.5, high=2.0):
    return rng.uniform(low, high, size=shape)


def tie_free(rng, shape, gap=1e-2):
    """Distinct values: a random permutation of 0..n-1, times gap, centred."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) * gap


@st.composite
def broadcastable_shapes(draw, count=2, max_dims=3, max_side=4):
    """`count` shapes that broadcast together (some with size-1 or missing axes)."""
    from hypothesis.extra.numpy import mutually_broadcastable_shapes

    result = draw(mutually_broadcastable_shapes(num_shapes=count, min_dims=0, max_dims=max_dims, max_side=max_side))
    return result.input_shapes
