"""The two building blocks of every class activation map, one spelling each.

    positive(x)              ReLU, max(x, 0): inside formulas (ReLU(g), ReLU(g * A), ...)
    final_relu(maps, relu)   a method's final ReLU of the whole map, skipped when relu is False;
                             every formula ends here, so here the raw map must be finite
    weighted_sum(w, A)       sum_k w_k A_k per image: (N, K) weights, (N, K, h, w) maps -> (N, h, w)
    require_choice(...)      the one check of a named option's value

Notation shared by every file of minicam.cam: A is the explained layer's output
(N, K, h, w), y the score explained (one per image), g = dy/dA.
"""
from __future__ import annotations

import numpy as np

from minicam.errors import require_finite


def positive(x: np.ndarray) -> np.ndarray:
    """ReLU(x) = max(x, 0), the positive part, element by element."""
    return np.maximum(x, 0)


def final_relu(maps: np.ndarray, relu: bool) -> np.ndarray:
    """The final ReLU of a method's map when `relu` is True; the map unchanged otherwise.
    A raw map that holds a NaN or an infinity is an error (NonFiniteError), never a map."""
    require_finite(maps, "the raw map", "the method's formula overflowed although the activations and gradients "
                   "were finite; compute in float64 (model.double() and x.astype(np.float64))")
    return positive(maps) if relu else maps


def weighted_sum(weights: np.ndarray, A: np.ndarray) -> np.ndarray:
    """sum_k w_k A_k for each image: weights (N, K), A (N, K, h, w) -> (N, h, w)."""
    return np.einsum("nk,nkhw->nhw", weights, A)


def require_choice(what: str, value, choices) -> None:
    """A ValueError naming the option and its choices, unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {tuple(choices)}")
