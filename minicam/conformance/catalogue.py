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

A "method" variant may also be a CONTEXT: it changes what the method is run on (the
net, the targets, the score) and not the formula, e.g. the predicted class instead of
the target, or a net ported with the wrong Flatten -> Dense order. Its `context(lab)`
returns those changes, and any other method variant can then be run in that context
(Lab.derived): two method-level causes at once, e.g. pytorch-grad-cam's default
targets=None together with its Grad-CAM++ eps.

verify tries every method variant with the key's own pipeline, every pipeline
variant on minicam's method map, every pair (method variant, pipeline variant) and
every pair (context, other method variant).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable

import numpy as np

from minicam.cam.capture import capture
from minicam.cam.conventions import PRESETS
from minicam.cam.registry import METHODS
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
    context: Callable | None = None  # context variants: lab -> {"model"/"targets"/"score": ...} or None

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


def register_context(name: str, summary: str, source: str, methods=None):
    """Decorator for a context variant: the function takes the lab and returns the changes
    ({"model": ..., "targets": ..., "score": ...}) or None where the variant changes nothing.
    Its map is the method run in that context (Lab.derived)."""
    def add(context):
        def compute(lab, method):
            changes = context(lab)
            return None if changes is None else lab.derived(**changes).pre(method)
        compute.__doc__ = context.__doc__
        register(name, "method", summary, source, methods)(compute)
        CATALOGUE[name] = CATALOGUE[name].__class__(**{**CATALOGUE[name].__dict__, "context": context})
        return context

    return add


class Lab:
    """One case, and what the variants need from it, each computed once.

    `score` is the score the lab's methods differentiate by default, and `options` the
    options every method gets under a variant's own (a preset's method options: see
    for_stage). derived() gives the lab of the same case in another context."""

    def __init__(self, case: Case, score: str = "logit", options: dict | None = None):
        self.case = case
        self.score = score
        self.options = {method: dict(o) for method, o in (options or {}).items()}
        self._cache = {}

    def derived(self, model=None, targets=None, score=None, options=None) -> "Lab":
        """The lab of the case with another net, other targets, another score or base options
        (each None keeps this lab's); built once per set of changes."""
        key = ("derived", id(model), None if targets is None else tuple(np.asarray(targets).tolist()), score,
               repr(sorted((options or {}).items())))

        def build():
            case = self.case
            if model is not None or targets is not None:
                case = replace(case, model=case.model if model is None else model,
                               targets=case.targets if targets is None else np.asarray(targets))
            merged = {m: dict(o) for m, o in self.options.items()}
            for method, extra in (options or {}).items():
                merged[method] = {**merged.get(method, {}), **extra}
            return Lab(case, self.score if score is None else score, merged)
        return self.cached(key, build)

    def for_stage(self, stage: str) -> "Lab":
        """The lab whose methods get the options the key's preset implies (PRESETS[stage].method_options,
        under the case's own options, as cases.expected_maps computes them); the lab itself for raw."""
        stage = stage.split("/")[0]  # "<preset>/after-<step>": the preset's options
        if stage not in PRESETS:
            return self
        implied = {}
        for method in self.case.methods:
            options = {k: v for k, v in PRESETS[stage].options_for(method).items()
                       if k not in self.case.options.get(method, {})}
            if options:
                implied[method] = options
        return self.derived(options=implied) if implied else self

    def cached(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def activations_and_gradients(self, score=None, model=None):
        """A and g = dy/dA at the case's layer for the case's targets: (A, g, y); the lab's score
        by default."""
        score = self.score if score is None else score

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
        if self.score != "logit" and "score" in _parameters(method):
            overrides.setdefault("score", self.score)
        overrides = {**self.options.get(method, {}), **overrides}
        key = ("pre", method, id(model), repr(targets), repr(sorted(overrides.items())))
        return self.cached(key, lambda: method_map(self.case, method, final_relu=False, model=model, targets=targets,
                                                   **overrides))

    @property
    def has_batch_norm(self):
        return any(type(m).__name__ == "BatchNorm2d" for m in self.case.model.modules())


@lru_cache(maxsize=None)
def _parameters(method):
    return tuple(inspect.signature(METHODS[method]).parameters)


def as_map(result, has_relu):
    """A method variant's result as (map, has_final_relu)."""
    if result is None:
        return None
    if isinstance(result, tuple):
        return np.asarray(result[0]), bool(result[1])
    return np.asarray(result), has_relu
