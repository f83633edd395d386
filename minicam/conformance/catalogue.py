"""The catalogue of known variants and mistakes: how it is organised.

A map that disagrees with minicam usually does so for a reason someone has
met before: a library's convention, a version's bug, a tutorial's shortcut
(docs/peers.md gathers them). Each such reason is a Variant: a
named, documented function that recomputes the map the way that variant
would, from the case's net, with minicam's capture and conventions.

Two kinds, because a map is made in two parts (cases.finish):

  "method"    how the method's map is computed at the layer, before its final
              ReLU: another score (softmax, exp), another Grad-CAM++ alpha,
              another Score-CAM weighting, ... (variants_methods.py).
              compute(lab, method) -> map (N, h, w), or (map, has_final_relu),
              or None where the variant does not apply.
  "pipeline"  what happens to that map afterwards: the ReLU, resizing,
              normalisation (variants_pipeline.py).
              compute(pre_relu, lab, stage, has_relu) -> the finished map, or None.

verify tries every method variant with the key's own pipeline, every pipeline
variant on minicam's method map, and every pair of one of each.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from minicam.cam.capture import capture
from minicam.conformance.cases import Case, method_map

KINDS = ("method", "pipeline")


@dataclass(frozen=True)
class Variant:
    name: str           # a short identifier, e.g. "torchcam-0.5.0-gradcampp"
    kind: str           # "method" or "pipeline"
    summary: str        # one line: what it computes
    source: str         # who does it, and where that is documented
    compute: Callable
    methods: tuple | None = None  # "method" variants: the methods it applies to (None: every method)

    def describe(self) -> str:
        return f"'{self.name}' ({self.summary})"


CATALOGUE: "dict[str, Variant]" = {}


def register(name: str, kind: str, summary: str, source: str, methods=None):
    """Decorator: add the function to CATALOGUE under `name`."""
    if kind not in KINDS:
        raise ValueError(f"unknown variant kind {kind!r}")

    def add(function):
        if name in CATALOGUE:
            raise ValueError(f"two variants are called {name!r}")
        CATALOGUE[name] = Variant(name, kind, summary, source, function, tuple(methods) if methods else None)
        return function

    return add


class Lab:
    """One case, and what the variants need from it, each computed once."""

    def __init__(self, case: Case):
        self.case = case
        self._cache = {}

    def cached(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def activations_and_gradients(self, score="logit", model=None):
        """A and g = dy/dA at the case's layer for the case's targets: (A, g, y)."""
        def run():
            cap = capture(self.case.model if model is None else model, self.case.x, self.case.layer,
                          self.case.targets, score)
            return cap.A, cap.gradients().data, cap.scores.data
        return self.cached(("capture", score, id(model)), run)

    def logits(self):
        """The target class's logit S of each image (N,)."""
        return self.activations_and_gradients("logit")[2]

    def pre(self, method, model=None, targets=None, **overrides):
        """minicam's map of `method` before its final ReLU, with another net, other targets
        or other options (e.g. score="softmax")."""
        key = ("pre", method, id(model), repr(targets), repr(sorted(overrides.items())))
        return self.cached(key, lambda: method_map(self.case, method, final_relu=False, model=model, targets=targets,
                                                   **overrides))

    @property
    def has_batch_norm(self):
        return any(type(m).__name__ == "BatchNorm2d" for m in self.case.model.modules())


def as_map(result, has_relu):
    """A method variant's result as (map, has_final_relu)."""
    if result is None:
        return None
    if isinstance(result, tuple):
        return np.asarray(result[0]), bool(result[1])
    return np.asarray(result), has_relu
