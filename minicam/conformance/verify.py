"""verify: compare another implementation's maps with minicam's, and say why they differ.

    report = verify("results.npz")                      # against the built-in suite
    report = verify("results.npz", cases="cases/")     # against an exported folder
    print(report.to_text()); report.ok; report.to_json()

For every key "<case>/<method>/<stage>" in the results:

1. The error: for each image n, max |result_n - expected_n| / max |expected_n|
   (absolute where the expected map is all zeros); the entry's error is the
   largest over the images. Everything is compared in float64.
2. PASS if the error is at most the tolerance: by default 1e-6 for float64
   results, and 1e-4 for float32 results (float32 carries about 7 digits, and a
   float32 network loses a few more; see DEFAULT_FLOAT32_TOLERANCE). Otherwise FAIL.
3. For a FAIL, the diagnosis: every known variant and mistake in the catalogue
   (variants.py) that applies to the key is recomputed from the case's net, and
   so is every pair (method variant, pipeline variant). Those within the same
   tolerance of the result are listed, single variants before pairs, then by
   error (errors at rounding level, 100 machine epsilons of the result's dtype,
   count as equal and keep the catalogue's order). Variants that give minicam's
   own map on this case (to the tolerance) are left out: they cannot explain a
   difference. Without a match, the closest variant is named.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache

import numpy as np

from minicam.cam.registry import METHODS
from minicam.conformance.cases import expected_maps, suite
from minicam.conformance.export import load_cases
from minicam.conformance.format import DEFAULT_FLOAT32_TOLERANCE, DEFAULT_TOLERANCE, STAGES
from minicam.conformance.report import Entry, Match, Report
from minicam.conformance.results import ResultsFileError, as_array, check_array, parse_key, read_results
from minicam.conformance.variants import CATALOGUE, Lab, candidates


def map_error(result, expected) -> float:
    """max over images of max|result - expected| / max|expected| (absolute for an all-zero expected map)."""
    with np.errstate(over="ignore", invalid="ignore"):  # a huge result gives an infinite error, not a warning
        difference = np.abs(np.asarray(result, np.float64) - expected).reshape(len(expected), -1).max(axis=1)
        scale = np.abs(expected).reshape(len(expected), -1).max(axis=1)
        return float(np.max(difference / np.where(scale > 0, scale, 1.0)))


@lru_cache(maxsize=1)
def builtin_cases():
    return OrderedDict((name, (case, expected_maps(case))) for name, case in suite().items())


def verify(results, cases=None, tolerance=DEFAULT_TOLERANCE, float32_tolerance=DEFAULT_FLOAT32_TOLERANCE,
           require_all=False, diagnose=True) -> Report:
    """The report on `results` (a path to an .npz, or a dict key -> array).

    cases        None: minicam's built-in suite; a folder written by export_cases; or a
                 mapping name -> (Case, expected maps) as load_cases returns
    tolerance    for float64 results; float32 results use max(tolerance, float32_tolerance)
    require_all  count maps that were not submitted as failures (default: only listed)
    diagnose     search the catalogue for the variants that explain each failure
    """
    if not (tolerance > 0 and float32_tolerance > 0):
        raise ValueError(f"tolerances must be positive, got {tolerance} and {float32_tolerance}")
    case_set = builtin_cases() if cases is None else cases if isinstance(cases, dict) else load_cases(cases)
    try:
        source, submitted = read_results(results)
    except ResultsFileError as error:
        report = Report(str(results), tolerance, float32_tolerance, readable=False)
        report.problems.append(str(error))
        return report
    report = Report(source, tolerance, float32_tolerance)
    known = OrderedDict((name, case) for name, (case, _) in case_set.items())
    labs = {}
    checked = {}
    for key, value in submitted.items():
        parsed = parse_key(key, known)
        if isinstance(parsed, Entry):
            report.entries.append(parsed)
            continue
        name, method, stage = parsed
        case, expected = case_set[name]
        entry = _compare(key, value, case, expected, method, stage, tolerance, float32_tolerance)
        if entry.status == "FAIL" and diagnose:
            lab = labs.setdefault(name, Lab(case))
            rounding = 100 * np.finfo(np.dtype(entry.dtype)).eps
            entry.diagnosis, entry.closest = diagnose_map(lab, method, stage, entry.result, expected[f"{method}/{stage}"],
                                                          entry.tolerance, rounding)
        checked.setdefault(name, {}).setdefault(method, set()).add(stage)
        report.entries.append(entry)
    report.entries.sort(key=lambda e: _order(e, list(case_set)))
    _note_missing(report, case_set, checked, require_all)
    if not submitted:
        report.problems.append("the results file holds no maps: nothing was verified")
    return report


def _compare(key, value, case, expected, method, stage, tolerance, float32_tolerance) -> Entry:
    """The entry of one well-named key: INVALID (with the reason), PASS or FAIL (with the error)."""
    reference = expected[f"{method}/{stage}"]
    array, problem = as_array(value)
    entry = Entry(key, "INVALID", problem, case.name, method, stage, None if array is None else str(array.dtype))
    if array is None:
        return entry
    result, entry.message = check_array(array, reference.shape, stage, expected[f"{method}/raw"].shape[1:],
                                        case.x.shape[2:])
    if result is None:
        return entry
    entry.tolerance = max(tolerance, float32_tolerance) if array.dtype == np.float32 else tolerance
    entry.error = map_error(result, reference)
    entry.status = "PASS" if entry.error <= entry.tolerance else "FAIL"
    entry.result = result  # kept for the diagnosis (not part of the report's output)
    return entry


def diagnose_map(lab, method, stage, result, expected, tolerance, rounding=100 * np.finfo(np.float64).eps):
    """(the variants that reproduce `result`, best first; the closest variant when none does).

    A variant that gives minicam's own map here (to the tolerance) is skipped: it cannot
    explain a difference. So is a pair whose two parts are not both effective on their own,
    or whose map equals one of its parts' maps (one part does nothing there).
    """
    matches, closest = [], None
    singles = {}  # name -> map, for the variants that change the map on this key
    for names, varied in candidates(lab, method, stage):
        if varied.shape != expected.shape or not np.all(np.isfinite(varied)):
            continue
        if len(names) == 1:
            if map_error(varied, expected) <= tolerance:
                continue
            singles[names[0]] = varied
        elif any(name not in singles or map_error(varied, singles[name]) <= tolerance for name in names):
            continue
        error = map_error(result, varied)
        match = Match(tuple(names), error, " + ".join(CATALOGUE[n].summary for n in names))
        if error <= tolerance:
            matches.append(match)
        elif closest is None or error < closest.error:
            closest = match
    # single variants first; then by error, where errors at the level of rounding (100 machine
    # epsilons of the result's dtype) count as equal and keep the catalogue's order
    matches.sort(key=lambda m: (len(m.names), max(m.error, rounding)))
    return matches, (None if matches else closest)


def _order(entry, case_names):
    methods = list(METHODS)
    known = entry.case in case_names and entry.method in methods and entry.stage in STAGES
    if not known:
        return (1, 0, 0, 0, entry.key)
    return (0, case_names.index(entry.case), methods.index(entry.method), STAGES.index(entry.stage), entry.key)


def _note_missing(report, case_set, checked, require_all):
    """One line per case that was not submitted, or submitted in part."""
    lines = []
    for name, (case, _) in case_set.items():
        if name not in checked:
            lines.append(f"case {name}: not submitted")
            continue
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
