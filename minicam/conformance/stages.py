"""The stages of a map, each exported and each checked: where two implementations first part.

A map is the end of a chain, and verify compares every link a results file gives:

    <case>/logits                      (N, classes)   the net's output, before any softmax
    <case>/score                       (N,)           the target's logit S_n = logits[n, targets[n]]
    <case>/<method>/A                  (N, K, h, w)   the layer's output (methods made from A)
    <case>/<method>/g                  (N, K, h, w)   dS/dA (methods made from A and g)
    <case>/<method>/weights            (N, K)         the channel weights, for WEIGHTED methods
    <case>/<method>/raw                (N, h, w)      the method's map with its own final ReLU
    <case>/<method>/<preset>/after-<step>             each step of the preset, in order
    <case>/<method>/<preset>           (N, H, W)      the finished map (= its last step)

The steps of a preset are minicam.cam.conventions.steps: "relu" (where it applies),
"resize" and "normalize" in the preset's order; a step that occurs twice is numbered
from its second time on ("after-normalize", "after-resize", "after-normalize-2" for
pytorch-grad-cam). The values are computed from the map before the method's final ReLU,
with the preset's method options, in float64 (as the preset key's map).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import numpy as np

from minicam.cam.capture import capture, predict
from minicam.cam.cam import final_linear
from minicam.cam.conventions import PRESETS, steps
from minicam.cam.gradcampp import alpha_closed_form
from minicam.cam.maps import positive
from minicam.cam.registry import REGISTRY

CASE_STAGES = ("logits", "score")
TENSOR_STAGES = ("A", "g", "weights")
WEIGHTED = ("cam", "gradcam", "gradcam+", "gradcam++", "xgradcam")  # maps sum_k w_k A_k with per-channel weights
STAGE_NOTES = {
    "logits": "the net's output (N, classes), before any softmax",
    "score": "the target's logit S_n = logits[n, targets[n]] (N,)",
    "A": "the output of the case's layer (N, K, h, w), channels first",
    "g": "dS/dA (N, K, h, w): the gradient of the sum of the images' target logits",
    "weights": "the channel weights w (N, K): the map before its ReLU is sum_k w_k A_k",
}


def uses(method: str, stage: str) -> bool:
    """Whether the method has this tensor stage (A, g, weights)."""
    needs = REGISTRY[method].needs
    if stage == "A":
        return "A" in needs
    if stage == "g":
        return "g" in needs
    if stage == "weights":
        return method in WEIGHTED
    return False


def step_labels(names) -> list:
    """["relu", "resize", "normalize", "normalize"] -> ["after-relu", ..., "after-normalize-2"]."""
    seen, labels = {}, []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        labels.append(f"after-{name}" + (f"-{seen[name]}" if seen[name] > 1 else ""))
    return labels


def preset_step_labels(method: str, preset: str, size=(2, 2)) -> list:
    return step_labels([name for name, _ in steps(PRESETS[preset], REGISTRY[method].final_relu, size)])


def method_stages(method: str) -> list:
    """The stages of one method, in the order of the computation (the order verify reads them)."""
    order = [stage for stage in TENSOR_STAGES if uses(method, stage)] + ["raw"]
    for preset in PRESETS:
        order += [f"{preset}/{label}" for label in preset_step_labels(method, preset)] + [preset]
    return order


def reference_key(method, stage) -> str:
    """The key of the stage's value in the expected values: "logits", "A", "<method>/<stage>"."""
    if method is None or stage in ("A", "g"):
        return stage
    return f"{method}/{stage}"


def channel_weights(case, method, A, g) -> np.ndarray:
    """The method's channel weights (N, K), at minicam's defaults (the weights of its raw map)."""
    if method == "cam":
        return final_linear(case.model)[1].weight.data[case.targets]
    if method == "gradcam":
        return g.mean(axis=(2, 3))
    if method == "gradcam+":
        return positive(g).mean(axis=(2, 3))
    if method == "gradcam++":
        return np.sum(alpha_closed_form(A, g) * positive(g), axis=(2, 3))
    if method == "xgradcam":
        total, products = A.sum(axis=(2, 3)), (g * A).sum(axis=(2, 3))
        usable = total > 0
        return np.where(usable, products / np.where(usable, total, 1), 0.0)
    raise ValueError(f"{method} has no channel weights; those that have: {', '.join(WEIGHTED)}")


def step_values(pre, case, method, preset) -> "OrderedDict[str, np.ndarray]":
    """label -> the map after each step of the preset (float64), from the map before the method's ReLU."""
    pipeline = replace(PRESETS[preset], dtype=None)
    order = steps(pipeline, REGISTRY[method].final_relu, case.size)
    values, maps = OrderedDict(), pre
    for label, (_, step) in zip(step_labels([name for name, _ in order]), order):
        maps = step(maps)
        values[label] = maps
    return values


def stage_values(case, premaps=None) -> "OrderedDict[str, np.ndarray]":
    """Every value but the maps of cases.expected_maps: "logits", "score", "A", "g", "<method>/weights",
    "<method>/<preset>/after-<step>". `premaps` (optional): (method, preset or "raw") -> the map before
    the method's ReLU, as expected_maps computed it (else recomputed)."""
    from minicam.conformance.cases import method_map

    values = OrderedDict()
    logits = predict(case.model, case.x)
    values["logits"] = logits
    values["score"] = logits[np.arange(len(case.x)), case.targets]
    captured = capture(case.model, case.x, case.layer, case.targets, "logit")
    A, g = captured.A, captured.gradients().data
    values["A"], values["g"] = A, g
    for method in case.methods:
        if uses(method, "weights"):
            values[f"{method}/weights"] = channel_weights(case, method, A, g)
        for preset in PRESETS:
            implied = {k: v for k, v in PRESETS[preset].options_for(method).items()
                       if k not in case.options.get(method, {})}
            pre = (premaps or {}).get((method, preset))
            if pre is None:
                pre = method_map(case, method, final_relu=False, **implied)
            for label, value in step_values(pre, case, method, preset).items():
                values[f"{method}/{preset}/{label}"] = value
    return values


def result_keys(name: str, methods) -> "OrderedDict[str, str]":
    """Every key a results file may hold for case `name` -> the key of its expected value (reference_key),
    in the order verify reads them."""
    keys = OrderedDict((f"{name}/{stage}", stage) for stage in CASE_STAGES)
    for method in methods:
        for stage in method_stages(method):
            keys[f"{name}/{method}/{stage}"] = reference_key(method, stage)
    return keys
