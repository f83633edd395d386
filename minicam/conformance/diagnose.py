"""Diagnoses that look at the submitted values themselves, and those of the stages before the map.

The catalogue (variants.py) recomputes whole maps; some mistakes are better found by
comparing the result with minicam's value directly:

  scale          a constant factor c (result = c * expected): 1/K (the mean over channels
                 instead of the sum), h w or 1/(h w) (sum or mean over positions), N or 1/N
                 (the batch), -1 (the sign); or one factor per image (exp(S_n), |S_n|, ...)
  orientation    the map (or A, g) transposed, flipped upside down or left to right, rotated
  layer          the values of another layer of the case's net (the same method there)
  eigen-sign     Eigen-CAM's principal direction with a sign chosen per image

and, for the stages before the map (logits, score, A, g, weights), the contexts of the
catalogue (port mistakes, training-mode BatchNorm, another score or target) and other
layers. Every finding is a report.Match; a name that is not a catalogue entry is
described by its summary.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from minicam.cam.capture import capture, predict
from minicam.cam.registry import REGISTRY
from minicam.conformance.cases import finish, method_map
from minicam.conformance.report import Match
from minicam.conformance.stages import WEIGHTED, channel_weights, step_values
from minicam.conformance.variants import CATALOGUE, context_variants


def error(result, expected) -> float:
    """max over images of max|result - expected| / max|expected| (absolute for all-zero images)."""
    with np.errstate(over="ignore", invalid="ignore"):
        difference = np.abs(np.asarray(result, np.float64) - expected).reshape(len(expected), -1).max(axis=1)
        scale = np.abs(expected).reshape(len(expected), -1).max(axis=1)
        return float(np.max(difference / np.where(scale > 0, scale, 1.0)))


def largest_difference(result, expected, stage) -> str:
    """Where the error is largest: "image 1, row 3, column 0: expected 0.25, got 0.5"."""
    result, expected = np.asarray(result, np.float64), np.asarray(expected, np.float64)
    scale = np.abs(expected).reshape(len(expected), -1).max(axis=1)
    relative = np.abs(result - expected) / np.where(scale > 0, scale, 1.0).reshape((-1,) + (1,) * (expected.ndim - 1))
    where = np.unravel_index(int(np.argmax(relative)), expected.shape)
    axes = {1: ("image",), 2: ("image", "class" if stage == "logits" else "channel"), 3: ("image", "row", "column"),
            4: ("image", "channel", "row", "column")}[expected.ndim]
    said = ", ".join(f"{axis} {int(i)}" for axis, i in zip(axes, where))
    return f"{said}: expected {expected[where]:.6g}, got {result[where]:.6g}"


# ----------------------------------------------------------------------------
# Fitted: a factor, an orientation, a sign per image
# ----------------------------------------------------------------------------


def _factor_name(c, lab, method, shape):
    """What a constant factor c means, if it is a known one."""
    n = len(lab.case.x)
    K = lab.activations_and_gradients()[0].shape[1] if method else None
    hw = shape[-1] * shape[-2] if len(shape) >= 3 else None
    known = [(-1.0, "the sign: the map of -y, or A or g negated")]
    if K:
        known += [(1 / K, f"1/K (K = {K} channels): the mean over channels instead of the sum"),
                  (K, f"K = {K}: the sum over channels where the method takes the mean")]
    if method in ("cam",) or (method and REGISTRY[method].from_gradients):
        A = lab.activations_and_gradients()[0]
        hw_layer = A.shape[2] * A.shape[3]
        known += [(hw_layer, f"h w = {hw_layer}: the sum over positions instead of the mean"),
                  (1 / hw_layer, f"1/(h w) = 1/{hw_layer}: the mean over positions instead of the sum")]
    if n > 1:
        known += [(1 / n, f"1/N (N = {n} images): the gradient of the batch's MEAN score instead of its sum"),
                  (n, f"N = {n}: a sum over the batch")]
    del hw
    for value, meaning in known:
        if abs(c - value) <= 1e-9 * max(1.0, abs(value)):
            return meaning
    return None


def fitted(lab, method, stage, result, expected, tolerance):
    """Matches for a constant factor, a factor per image, a transposed or flipped map; each named
    ("scale", ...) etc. Only what reproduces the result to the tolerance."""
    found = []
    result = np.asarray(result, np.float64)
    flat_e, flat_r = expected.reshape(len(expected), -1), result.reshape(len(result), -1)
    energy = float(np.sum(flat_e * flat_e))
    if energy > 0:
        c = float(np.sum(flat_r * flat_e)) / energy
        if abs(c - 1) > tolerance and error(result, c * expected) <= tolerance:
            meaning = _factor_name(c, lab, method, expected.shape)
            found.append(Match(("scale",), error(result, c * expected),
                               f"a constant factor {c:.6g}" + (f" = {meaning}" if meaning else "")))
            return found
    per_image = np.sum(flat_r * flat_e, axis=1) / np.where(np.sum(flat_e * flat_e, axis=1) > 0,
                                                           np.sum(flat_e * flat_e, axis=1), 1)
    if len(expected) > 1 and np.ptp(per_image) > tolerance:
        scaled = per_image.reshape((-1,) + (1,) * (expected.ndim - 1)) * expected
        if error(result, scaled) <= tolerance:
            meaning = _per_image_meaning(per_image, lab)
            found.append(Match(("scale-per-image",), error(result, scaled),
                               f"a factor per image ({', '.join(f'{c:.4g}' for c in per_image)})"
                               + (f" = {meaning}" if meaning else "")))
    if expected.ndim >= 3:
        h, w = expected.shape[-2:]
        moves = [("flipped-rows", "flipped upside down (rows reversed)", lambda m: m[..., ::-1, :]),
                 ("flipped-columns", "flipped left to right (columns reversed)", lambda m: m[..., :, ::-1]),
                 ("rotated-180", "rotated by 180 degrees", lambda m: m[..., ::-1, ::-1])]
        if h == w:
            moves.insert(0, ("transposed", "rows and columns swapped (transposed)", lambda m: np.swapaxes(m, -1, -2)))
        for name, summary, move in moves:
            moved = move(expected)
            if error(moved, expected) > tolerance and error(result, moved) <= tolerance:
                found.append(Match((name,), error(result, moved), summary + " (an H x W vs W x H or NHWC mix-up)"))
    return found


def _per_image_meaning(factors, lab):
    S = lab.logits()
    for values, meaning in ((np.exp(S), "exp(S_n) of each image's logit (the score exp(S))"),
                            (np.abs(S), "|S_n| (the weights not divided by the score)"),
                            (1 / np.abs(S), "1/|S_n|"), (1 / S, "1/S_n"), (S, "S_n")):
        if np.allclose(factors, values, rtol=1e-9, atol=0):
            return meaning
    return None


def eigen_signs(lab, method, stage, result, expected, tolerance):
    """Eigen-CAM / EigenGrad-CAM with a sign per image (each image's SVD returns either sign of v1),
    centred or not: a Match if one choice of signs per image reproduces the result."""
    if method not in ("eigencam", "eigengradcam"):
        return []
    found = []
    for centred in (False, True):
        pre = lab.for_stage(stage).pre(method, center=centred) if centred else lab.pre(method)
        plus = finish(pre, lab.case, stage, False)
        minus = finish(-pre, lab.case, stage, False)
        signs, chosen = [], []
        for n in range(len(result)):
            e_plus, e_minus = error(result[n:n + 1], plus[n:n + 1]), error(result[n:n + 1], minus[n:n + 1])
            signs.append("+" if e_plus <= e_minus else "-")
            chosen.append(plus[n] if e_plus <= e_minus else minus[n])
        chosen = np.stack(chosen)
        if "-" in signs and "+" in signs and error(result, chosen) <= tolerance:
            found.append(Match(("eigen-sign-per-image",), error(result, chosen),
                               f"v1's sign chosen per image ({', '.join(signs)})" + (", centred" if centred else "")
                               + ": an SVD fixes each image's direction only up to its sign"))
    return found


def other_layers(lab):
    """(name, 4-D output) of every child of the case's net other than the case's layer."""
    def run():
        from minicam.autograd import Tensor, no_grad

        outputs, x = [], Tensor(lab.case.x)
        with no_grad():
            for name, module in lab.case.model.named_children():
                x = module(x)
                if x.ndim == 4 and name != lab.case.layer:
                    outputs.append((name, x.data))
        return outputs
    return lab.cached("other-layers", run)


def wrong_layer(lab, method, stage, result, expected, tolerance, finish_stage):
    """The method's map at every other layer with a 4-D output, finished as the key's stage."""
    found = []
    for name, _ in other_layers(lab):
        try:
            case = replace(lab.case, layer=name)
            pre = method_map(case, method, final_relu=False, **lab.for_stage(stage.split("/")[0]).options.get(method, {}))
            varied = finish_stage(pre, case)
        except (ValueError, NotImplementedError):
            continue
        if varied is None or varied.shape != expected.shape or not np.all(np.isfinite(varied)):
            continue
        if error(varied, expected) > tolerance and error(result, varied) <= tolerance:
            found.append(Match(("wrong-layer",), error(result, varied),
                               f"the map of layer '{name}' instead of '{lab.case.layer}'"))
    return found


# ----------------------------------------------------------------------------
# The stages before the map
# ----------------------------------------------------------------------------


def _context_labs(lab, method):
    """(variant name, derived lab) for every context variant that applies (port mistakes, training mode,
    another target or score)."""
    out = []
    for variant in context_variants(method):
        changes = variant.context(lab)
        if changes is not None:
            out.append((variant.name, lab.derived(**changes)))
    return out


def _stage_of(lab, stage, method):
    """The value of a stage before the map in this lab's context."""
    case = lab.case
    if stage == "logits":
        return predict(case.model, case.x)
    if stage == "score":
        if lab.score == "logit":
            return predict(case.model, case.x)[np.arange(len(case.x)), case.targets]
        return lab.activations_and_gradients()[2]
    A, g, _ = lab.activations_and_gradients()
    if stage == "A":
        return A
    if stage == "g":
        return g
    return channel_weights(case, method, A, g)


def diagnose_stage(lab, method, stage, result, expected, tolerance):
    """Matches for a logits, score, A, g or weights value: contexts, other layers, fitted forms."""
    candidates = []
    for name, derived in _context_labs(lab, method or "gradcam"):
        try:
            candidates.append(((name,), CATALOGUE[name].summary, _stage_of(derived, stage, method)))
        except ValueError:
            continue
    if stage == "score":
        S = _stage_of(lab, "score", None)
        candidates.append((("exp-score",), CATALOGUE["exp-score"].summary, np.exp(S)))
    if stage == "g":
        A, g, S = lab.activations_and_gradients()
        candidates.append((("exp-score",), CATALOGUE["exp-score"].summary, g * np.exp(S)[:, None, None, None]))
    if stage == "weights":
        A, g, _ = lab.activations_and_gradients()
        for other in WEIGHTED:
            if other != method and other in lab.case.methods:
                candidates.append(((f"method-{other}",), f"the channel weights of {other}",
                                   channel_weights(lab.case, other, A, g)))
        if method == "gradcam" and len(A) > 1:
            candidates.append((("batch-mean-gradients",), CATALOGUE["batch-mean-gradients"].summary,
                               np.broadcast_to(g.mean(axis=(0, 2, 3)), expected.shape)))
    if stage in ("A", "g"):
        for name, values in _layer_values(lab, stage):
            candidates.append((("wrong-layer",), f"the {'output' if stage == 'A' else 'gradient'} of layer "
                                                 f"'{name}' instead of '{lab.case.layer}'", values))
    matches = []
    for names, summary, values in candidates:
        values = np.asarray(values)
        if values.shape != expected.shape or not np.all(np.isfinite(values)) or error(values, expected) <= tolerance:
            continue
        if error(result, values) <= tolerance:
            matches.append(Match(names, error(result, values), summary))
    matches += fitted(lab, method, stage, result, expected, tolerance)
    return matches


def _layer_values(lab, stage):
    out = []
    for name, output in other_layers(lab):
        if stage == "A":
            out.append((name, output))
        else:
            try:
                cap = capture(lab.case.model, lab.case.x, name, lab.case.targets, "logit")
                out.append((name, cap.gradients().data))
            except ValueError:
                continue
    return out


def diagnose_step(lab, method, stage, result, expected, previous, tolerance):
    """A map after one step of a preset ("minicam/after-resize"): the step done another way, applied to
    minicam's value before it (`previous`). The alternatives are the pipeline variants that change
    that one step, recomputed on `previous` alone."""
    from minicam.cam.conventions import normalize_maps, resize_maps
    from minicam.cam.maps import positive
    from minicam.conformance.tfresize import tf_resize_maps

    preset, label = stage.split("/")
    step = label[len("after-"):].split("-")[0]
    size = lab.case.size
    options = []
    if step == "relu":
        options = [("missing-relu", previous)]
    elif step == "resize":
        options = [("corner-aligned-upsampling", resize_maps(previous, size, "bilinear-corners")),
                   ("half-pixel-upsampling", resize_maps(previous, size, "bilinear")),
                   ("nearest-upsampling", resize_maps(previous, size, "nearest")),
                   ("bicubic-upsampling", resize_maps(previous, size, "bicubic")),
                   ("tf-bicubic-upsampling", tf_resize_maps(previous, size, "bicubic")),
                   ("relu-after-resize", positive(resize_maps(previous, size, "bilinear")))]
    elif step == "normalize":
        options = [("max-normalisation", normalize_maps(previous, "max")),
                   ("no-normalisation", previous),
                   ("eps-1e-7", normalize_maps(previous, "minmax", 1e-7)),
                   ("eps-1e-8", normalize_maps(previous, "minmax", 1e-8)),
                   ("eps-none", normalize_maps(previous, "minmax"))]
    matches = []
    for name, values in options:
        if values is None or values.shape != expected.shape or error(values, expected) <= tolerance:
            continue
        if error(result, values) <= tolerance:
            matches.append(Match((name,), error(result, values), CATALOGUE[name].summary))
    return matches + fitted(lab, method, stage, result, expected, tolerance)


def previous_step(lab, stage, values, method):
    """minicam's value before the step of `stage` ("<preset>/after-<step>"): the step before it, or the
    map before the method's ReLU (with the preset's method options) for the first step."""
    preset, label = stage.split("/")
    labels = [key.split("/")[-1] for key in values if key.startswith(f"{method}/{preset}/after-")]
    index = labels.index(label)
    if index > 0:
        return values[f"{method}/{preset}/{labels[index - 1]}"]
    return lab.for_stage(preset).pre(method)


__all__ = ["error", "largest_difference", "fitted", "eigen_signs", "wrong_layer", "diagnose_stage", "diagnose_step",
           "step_values"]
