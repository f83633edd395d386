"""The catalogue of known variants and mistakes, in one place.

    CATALOGUE   name -> Variant (catalogue.py): the method variants of
                variants_methods.py and the pipeline variants of variants_pipeline.py
    recompute(name, case, method, stage)   the map a variant gives for one key
    candidates(lab, method, stage)         every applicable single variant and pair, lazily

Import this module (not the two variant files) to get the full catalogue.
"""
from __future__ import annotations

from minicam.cam.registry import REGISTRY
from minicam.errors import NonFiniteError
from minicam.conformance import variants_methods, variants_pipeline, variants_port  # noqa: F401  (they fill CATALOGUE)
from minicam.conformance.cases import finish
from minicam.conformance.catalogue import CATALOGUE, Lab, Variant, as_map

__all__ = ["CATALOGUE", "Variant", "Lab", "recompute", "candidates", "context_pairs", "method_variants",
           "pipeline_variants", "context_variants"]


def method_variants(method):
    return [v for v in CATALOGUE.values() if v.kind == "method" and (v.methods is None or method in v.methods)]


def pipeline_variants():
    return [v for v in CATALOGUE.values() if v.kind == "pipeline"]


def context_variants(method):
    return [v for v in method_variants(method) if v.context is not None]


def computed(variant, *arguments):
    """The variant's map, or None where it does not apply, or where its map would not be finite
    (e.g. exp(S) of a large logit): a results file holds finite maps (anything else is INVALID)."""
    try:
        return variant.compute(*arguments)
    except NonFiniteError:
        return None
    except ValueError:  # options that cannot be combined (a variant under a preset's method options)
        return None


def candidates(lab: Lab, method: str, stage: str):
    """Yield (names, map) for every variant that applies to this key: first each single
    variant (method variants, then pipeline variants), then each pair (method variant,
    pipeline variant): the maps those variants would have produced. Method variants run
    with the key's preset's method options (Lab.for_stage), as the expected map."""
    has_relu = REGISTRY[method].final_relu
    lab = lab.for_stage(stage)
    pre = lab.pre(method)
    varied = []
    for variant in method_variants(method):
        result = as_map(computed(variant, lab, method), has_relu)
        if result is not None:
            varied.append((variant.name, result))
            yield (variant.name,), finish(result[0], lab.case, stage, result[1])
    pipelines = [] if "/" in stage else pipeline_variants()  # a step stage: diagnose.diagnose_step
    for pipeline in pipelines:
        finished = pipeline.compute(pre, lab, stage, has_relu)
        if finished is not None:
            yield (pipeline.name,), finished
    for name, (varied_pre, varied_relu) in varied:
        for pipeline in pipelines:
            finished = pipeline.compute(varied_pre, lab, stage, varied_relu)
            if finished is not None:
                yield (name, pipeline.name), finished


def context_pairs(lab: Lab, method: str, stage: str):
    """Yield (names, map) for each pair (context variant, another method variant): the second run in the
    first's context (e.g. the predicted class AND pytorch-grad-cam's Grad-CAM++ eps). Bounded: contexts x
    method variants of the method, each a run of the method on the case's small net."""
    has_relu = REGISTRY[method].final_relu
    lab = lab.for_stage(stage)
    for context in context_variants(method):
        changes = context.context(lab)
        if changes is None:
            continue
        derived = lab.derived(**changes)
        for variant in method_variants(method):
            if variant.context is not None or variant.name.startswith("method-"):
                continue
            result = as_map(computed(variant, derived, method), has_relu)
            if result is not None:
                yield (context.name, variant.name), finish(result[0], lab.case, stage, result[1])


def recompute(names, lab: Lab, method: str, stage: str):
    """The map of one variant (a name) or one pair (method variant, pipeline variant); None if
    it does not apply."""
    names = (names,) if isinstance(names, str) else tuple(names)
    variants = [CATALOGUE[name] for name in names]
    kinds = [v.kind for v in variants]
    if kinds not in (["method"], ["pipeline"], ["method", "pipeline"], ["method", "method"]) or \
            kinds == ["method", "method"] and variants[0].context is None:
        raise ValueError(f"a recomputation takes one variant, a method variant then a pipeline variant, or a context "
                         f"variant then a method variant; got {names}")
    has_relu = REGISTRY[method].final_relu
    lab = lab.for_stage(stage)
    pre = lab.pre(method)
    if len(variants) == 2 and variants[0].context is not None and variants[1].kind == "method":
        derived = lab.derived(**(variants[0].context(lab) or {}))
        result = as_map(computed(variants[1], derived, method), has_relu)
        return None if result is None else finish(result[0], lab.case, stage, result[1])
    if variants[0].kind == "method":
        if variants[0].methods is not None and method not in variants[0].methods:
            return None
        result = as_map(computed(variants[0], lab, method), has_relu)
        if result is None:
            return None
        pre, has_relu = result
        if len(variants) == 1:
            return finish(pre, lab.case, stage, has_relu)
        variants = variants[1:]
    return variants[0].compute(pre, lab, stage, has_relu)
