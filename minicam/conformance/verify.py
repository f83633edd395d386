"""verify: compare another implementation's values with minicam's, and say why they differ.

    report = verify("results.npz")                      # against the built-in suite
    report = verify("results.npz", cases="cases/")     # against an exported folder
    print(report.to_text()); report.ok; report.to_json()

For every key of the results (format.KEYS: logits, score, A, g, weights, maps and each
step of a preset, stages.py):

1. The error: for each image n, max |result_n - expected_n| / max |expected_n|
   (absolute where the expected value is all zeros); the entry's error is the
   largest over the images. Everything is compared in float64.
2. PASS if the error is at most the tolerance: 1e-6 for float64 results; for float32
   results a tolerance per key from minicam's own float32 error of that value
   (format.FLOAT32_RULE), unless a fixed one is given. Otherwise FAIL.
3. The first difference: for each case, and each method of it, the FIRST stage in the
   order of the computation (logits, score, A, g, weights, raw, each preset's steps)
   that fails is reported first, with a sentence that points at its cause (a wrong
   port, layer, score, weight formula or step), before any diagnosis of a map.
4. For a FAIL, the diagnosis (diagnose.py, variants.py): every known variant and mistake
   that applies to the key is recomputed from the case's net, and so is every pair
   (method variant, pipeline variant) and (context, method variant); the result is also
   compared with minicam's value times a factor, transposed or flipped, with each
   image's sign (Eigen-CAM), and with the maps of the net's other layers. Those within
   the tolerance are listed, single causes first, then by error (errors at rounding
   level, 100 machine epsilons of the result's dtype, count as equal and keep the
   catalogue's order). Variants that give minicam's own value on this key are left out.
   Without a match, verify says so, with where the largest difference is; a variant is
   then named only if it explains most of the difference (leaves at most half of it).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from functools import lru_cache

import numpy as np

from minicam.cam.registry import METHODS
from minicam.conformance.architecture import build, describe
from minicam.conformance.cases import expected_values, suite
from minicam.conformance.diagnose import (diagnose_stage, diagnose_step, eigen_signs, error, fitted,
                                          largest_difference, previous_step, wrong_layer)
from minicam.conformance.export import load_cases
from minicam.conformance.format import (DEFAULT_FLOAT32_TOLERANCE, DEFAULT_TOLERANCE, FLOAT32_CAP, FLOAT32_FACTOR,
                                        FLOAT32_FLOOR, STAGES)
from minicam.conformance.report import Entry, Match, Report
from minicam.conformance.results import ResultsFileError, as_array, check_array, parse_key, read_results
from minicam.conformance.stages import CASE_STAGES, TENSOR_STAGES, method_stages, reference_key
from minicam.conformance.variants import CATALOGUE, Lab, candidates, context_pairs
from minicam.cam.registry import REGISTRY
from minicam.errors import NonFiniteError

MOSTLY = 0.5  # a variant that is no match is named only if it leaves at most this share of the error


def map_error(result, expected) -> float:
    """max over images of max|result - expected| / max|expected| (absolute for an all-zero expected map)."""
    return error(result, expected)


@lru_cache(maxsize=1)
def builtin_cases():
    return OrderedDict((name, (case, expected_values(case))) for name, case in suite().items())


class _Float32:
    """minicam's own float32 values of each case (the net and inputs cast), built when first needed."""

    def __init__(self, case_set):
        self.case_set, self.values = case_set, {}

    def error(self, name, key):
        if name not in self.values:
            case, _ = self.case_set[name]
            model = build(describe(case.model), case.model.state_dict(), dtype=np.float32)
            single = replace(case, model=model, x=case.x.astype(np.float32))
            try:
                self.values[name] = expected_values(single)
            except NonFiniteError:  # e.g. exp(S) overflows float32: those values are left out, method by method
                self.values[name] = {}
                for method in case.methods:
                    try:
                        self.values[name].update(expected_values(replace(single, methods=(method,))))
                    except NonFiniteError:
                        continue
        value = self.values[name].get(key)
        expected = self.case_set[name][1][key]
        if value is None or value.shape != expected.shape or not np.all(np.isfinite(value)):
            return np.inf
        return error(value, expected)

    def tolerance(self, name, key, tolerance):
        return float(min(FLOAT32_CAP, max(tolerance, FLOAT32_FLOOR, FLOAT32_FACTOR * self.error(name, key))))


def verify(results, cases=None, tolerance=DEFAULT_TOLERANCE, float32_tolerance=DEFAULT_FLOAT32_TOLERANCE,
           require_all=False, diagnose=True) -> Report:
    """The report on `results` (a path to an .npz, or a dict key -> array).

    cases              None: minicam's built-in suite; a folder written by export_cases; or a
                       mapping name -> (Case, expected values) as load_cases returns
    tolerance          for float64 results
    float32_tolerance  None: per key (format.FLOAT32_RULE); a number: that, for every float32 result
    require_all        count maps that were not submitted as failures (default: only listed)
    diagnose           search for the causes of each failure
    """
    if not (tolerance > 0 and (float32_tolerance is None or float32_tolerance > 0)):
        raise ValueError(f"tolerances must be positive, got {tolerance} and {float32_tolerance}")
    case_set = builtin_cases() if cases is None else cases if isinstance(cases, dict) else load_cases(cases)
    try:
        source, submitted = read_results(results)
    except ResultsFileError as error_:
        report = Report(str(results), tolerance, float32_tolerance, readable=False)
        report.problems.append(str(error_))
        return report
    report = Report(source, tolerance, float32_tolerance)
    known = OrderedDict((name, case) for name, (case, _) in case_set.items())
    labs, float32, checked = {}, _Float32(case_set), {}
    for key, value in submitted.items():
        parsed = parse_key(key, known)
        if isinstance(parsed, Entry):
            report.entries.append(parsed)
            continue
        name, method, stage = parsed
        case, expected = case_set[name]
        reference = reference_key(method, stage)
        if reference not in expected:
            report.entries.append(Entry(key, "UNKNOWN", f"the cases hold no expected value for {reference!r} (a folder "
                                        "exported before version 2 has maps only): export the cases again",
                                        name, method, stage))
            continue
        entry = _compare(key, value, case, expected, method, stage, reference, tolerance)
        if entry.status in ("PASS", "FAIL") and entry.dtype == "float32":
            entry.tolerance = float32.tolerance(name, reference, tolerance) if float32_tolerance is None \
                else max(tolerance, float32_tolerance)
            entry.status = "PASS" if entry.error <= entry.tolerance else "FAIL"
        if entry.status == "FAIL":
            entry.where = largest_difference(entry.result, expected[reference], stage)
            entry.difference = float(np.max(np.abs(entry.result - expected[reference])))
            if diagnose:
                lab = labs.setdefault(name, Lab(case))
                rounding = 100 * np.finfo(np.dtype(entry.dtype)).eps
                entry.diagnosis, entry.closest = diagnose_entry(lab, method, stage, entry, expected, rounding)
        if method is not None and stage in STAGES:
            checked.setdefault(name, {}).setdefault(method, set()).add(stage)
        else:
            checked.setdefault(name, {})
        report.entries.append(entry)
    report.entries.sort(key=lambda e: _order(e, list(case_set)))
    report.firsts = first_differences(report.entries, case_set)
    _note_missing(report, case_set, checked, require_all)
    if not submitted:
        report.problems.append("the results file holds no maps: nothing was verified")
    return report


def _compare(key, value, case, expected, method, stage, reference, tolerance) -> Entry:
    """The entry of one well-named key: INVALID (with the reason), PASS or FAIL (with the error)."""
    target = expected[reference]
    array, problem = as_array(value)
    entry = Entry(key, "INVALID", problem, case.name, method, stage, None if array is None else str(array.dtype))
    if array is None:
        return entry
    layer_shape = expected["A"].shape[2:] if "A" in expected else expected[f"{method}/raw"].shape[1:] if method else ()
    result, entry.message = check_array(array, target.shape, stage, layer_shape, case.x.shape[2:])
    if result is None:
        return entry
    entry.tolerance = tolerance
    entry.error = map_error(result, target)
    entry.status = "PASS" if entry.error <= entry.tolerance else "FAIL"
    entry.result = result  # kept for the diagnosis (not part of the report's output)
    return entry


def diagnose_entry(lab, method, stage, entry, expected, rounding):
    """(matches, closest) for a failed entry of any stage."""
    reference = expected[reference_key(method, stage)]
    result, tolerance = entry.result, entry.tolerance
    if stage in CASE_STAGES or stage in TENSOR_STAGES:
        matches = diagnose_stage(lab, method, stage, result, reference, tolerance)
        return _sorted(matches, rounding), None
    if "/" in stage:
        previous = previous_step(lab, stage, expected, method)
        matches = diagnose_step(lab, method, stage, result, reference, previous, tolerance)
        if matches:
            return _sorted(matches, rounding), None
    return diagnose_map(lab, method, stage, result, reference, tolerance, rounding, entry.error)


def diagnose_map(lab, method, stage, result, expected, tolerance, rounding=100 * np.finfo(np.float64).eps,
                 own_error=None):
    """(the causes that reproduce `result`, best first; a variant that explains most of the difference
    when none does, else None).

    A variant that gives minicam's own map here (to the tolerance) is skipped: it cannot
    explain a difference. So is a pair whose two parts are not both effective on their own,
    or whose map equals one of its parts' maps (one part does nothing there). Pairs of a context
    and another method variant, and the maps of other layers, are searched only when nothing
    simpler matches.
    """
    own_error = map_error(result, expected) if own_error is None else own_error
    matches, tried = [], []
    singles = {}  # name -> map, for the variants that change the map on this key

    def consider(names, varied):
        if varied.shape != expected.shape or not np.all(np.isfinite(varied)):
            return
        if len(names) == 1:
            if map_error(varied, expected) <= tolerance:
                return
            singles[names[0]] = varied
        elif any(name not in singles or map_error(varied, singles[name]) <= tolerance for name in names) or \
                map_error(varied, expected) <= tolerance:
            return
        distance = map_error(result, varied)
        match = Match(tuple(names), distance, " + ".join(CATALOGUE[n].summary for n in names))
        (matches if distance <= tolerance else tried).append(match)

    for names, varied in candidates(lab, method, stage):
        consider(names, varied)
    matches += fitted(lab, method, stage, result, expected, tolerance)
    matches += eigen_signs(lab, method, stage, result, expected, tolerance)
    if not matches and "/" not in stage:
        for names, varied in context_pairs(lab, method, stage):
            consider(names, varied)
    if not matches:
        def finish_stage(pre, case):
            from minicam.conformance.cases import finish
            return finish(pre, case, stage, REGISTRY[method].final_relu)
        matches += wrong_layer(lab, method, stage, result, expected, tolerance, finish_stage)
    if matches:
        return _sorted(matches, rounding), None
    closest = min(tried, key=lambda m: m.error, default=None)
    if closest is None or closest.error > MOSTLY * own_error:
        return [], None  # nothing explains most of the difference: name nothing
    closest.summary += f" (explains {100 * (1 - closest.error / own_error):.0f} % of the difference)"
    return [], closest


def _sorted(matches, rounding):
    # single causes first; then by error, where errors at the level of rounding count as equal
    unique, seen = [], set()
    for match in matches:
        if (match.names, match.summary) not in seen:
            seen.add((match.names, match.summary))
            unique.append(match)
    return sorted(unique, key=lambda m: (len(m.names), max(m.error, rounding)))


def stage_order(method):
    return list(CASE_STAGES) + ([] if method is None else method_stages(method))


def first_differences(entries, case_set) -> list:
    """(entry, the last stage before it that agrees or None) for the first failing stage of each case
    (logits, score) or, where those agree or were not given, of each method of the case."""
    by_key = {(e.case, e.method, e.stage): e for e in entries if e.status in ("PASS", "FAIL", "INVALID")}
    firsts = []
    for name in case_set:
        case_level = [by_key.get((name, None, s)) for s in CASE_STAGES]
        failed = [e for e in case_level if e is not None and e.status != "PASS"]
        if failed:
            firsts.append((failed[0], None))
            continue
        methods = list(dict.fromkeys(method for (case, method, _) in by_key if case == name and method is not None))
        for method in methods:
            agreed = next((e for e in reversed(case_level) if e is not None), None)
            for stage in method_stages(method):
                entry = by_key.get((name, method, stage))
                if entry is None:
                    continue
                if entry.status != "PASS":
                    firsts.append((entry, agreed))
                    break
                agreed = entry if "/" in stage or stage in TENSOR_STAGES or stage == "raw" else agreed
    return firsts


def _order(entry, case_names):
    methods = list(METHODS)
    if entry.case not in case_names or (entry.method is not None and entry.method not in methods):
        return (1, 0, 0, 0, entry.key)
    stages = stage_order(entry.method)
    if entry.stage not in stages:
        return (1, 0, 0, 0, entry.key)
    return (0, case_names.index(entry.case), -1 if entry.method is None else methods.index(entry.method),
            stages.index(entry.stage), entry.key)


def _note_missing(report, case_set, checked, require_all):
    """One line per case that was not submitted, or submitted in part (the maps: raw and presets)."""
    lines = []
    for name, (case, _) in case_set.items():
        if name not in checked:
            lines.append(f"case {name}: not submitted")
            continue
        if not checked[name]:
            continue  # only stages before the maps were submitted for this case
        absent = [m for m in case.methods if m not in checked[name]]
        if absent:
            lines.append(f"case {name}: methods not submitted: {', '.join(absent)}")
        by_missing = OrderedDict()
        for method, stages in checked[name].items():
            missing = tuple(s for s in STAGES if s not in stages)
            if missing:
                by_missing.setdefault(missing, []).append(method)
        for missing, methods in by_missing.items():
            lines.append(f"case {name}: stages not submitted for {', '.join(methods)}: {', '.join(missing)}")
    if require_all:
        report.problems += [f"missing (required): {line}" for line in lines]
    else:
        report.notes += lines
