"""Write the conformance cases to a folder, framework-neutral, and read them back.

    DIR/README.md                 the format, the conventions, how to write a results file
    DIR/index.json                the case names, the stages, the key scheme, the tolerances
    DIR/<case>/case.json          layer, targets, methods, shapes, options, published values
    DIR/<case>/architecture.json  the net: a list of named layers (architecture.py)
    DIR/<case>/weights.npz        its state_dict, torch's keys ("conv1.weight", ...)
    DIR/<case>/inputs.npz         "x" (N, C, H, W) float64, "targets" (N,) int64,
                                  "smoothgradcam++/noise" (samples, N, C, H, W)
    DIR/<case>/expected.npz       "<method>/<stage>": minicam's maps, float64

load_cases(DIR) rebuilds every case (the net in minicam, with the stored
weights) and its expected maps; adapters.torch_net rebuilds the net in torch.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

import minicam
from minicam.cam.registry import REGISTRY
from minicam.conformance.architecture import build, describe
from minicam.conformance.cases import Case, expected_maps, smoothgrad_noise, suite
from minicam.conformance.format import (
    DEFAULT_FLOAT32_TOLERANCE, DEFAULT_TOLERANCE, ERROR_MEASURE, FORMAT, KEY, STAGES, VERSION, stage_note,
)
from minicam.conformance.readme import readme


class CaseDataError(ValueError):
    """An exported case folder that cannot be read (missing file, wrong format)."""


def export_cases(directory, cases=None) -> Path:
    """Write every case (default: the whole suite) to `directory`; return its path."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    cases = list(suite().values()) if cases is None else list(cases)
    expected = {case.name: expected_maps(case) for case in cases}
    for case in cases:
        _export_case(directory / case.name, case, expected[case.name])
    index = {
        "format": FORMAT,
        "version": VERSION,
        "minicam": minicam.__version__,
        "cases": [case.name for case in cases],
        "key": KEY,
        "stages": {stage: stage_note(stage) for stage in STAGES},
        "tolerance": {"float64": DEFAULT_TOLERANCE, "float32": DEFAULT_FLOAT32_TOLERANCE, "measure": ERROR_MEASURE},
    }
    (directory / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    (directory / "README.md").write_text(readme(cases, expected))
    return directory


def _export_case(folder: Path, case: Case, expected: dict):
    folder.mkdir(exist_ok=True)
    info = {
        "name": case.name,
        "description": case.description,
        "sources": case.sources,
        "layer": case.layer,
        "score": "logit",
        "input_shape": list(case.x.shape),
        "targets": [int(t) for t in case.targets],
        "methods": list(case.methods),
        "has_final_relu": {method: REGISTRY[method].final_relu for method in case.methods},
        "shapes": {method: {"raw": list(expected[f"{method}/raw"].shape),
                            "presets": list(expected[f"{method}/minicam"].shape)} for method in case.methods},
        "options": case.options,
        "published": {key: np.asarray(value).tolist() for key, value in case.published.items()},
    }
    (folder / "case.json").write_text(json.dumps(info, indent=1) + "\n")
    (folder / "architecture.json").write_text(
        json.dumps({"format": "sequential", "layers": describe(case.model)}, indent=1) + "\n")
    np.savez(folder / "weights.npz", **case.model.state_dict())
    inputs = {"x": case.x, "targets": case.targets.astype(np.int64)}
    if "smoothgradcam++" in case.methods:
        inputs["smoothgradcam++/noise"] = smoothgrad_noise(case)
    np.savez(folder / "inputs.npz", **inputs)
    np.savez(folder / "expected.npz", **expected)


def load_cases(directory) -> "OrderedDict[str, tuple[Case, dict]]":
    """name -> (Case with the net rebuilt in minicam, expected maps {"<method>/<stage>": array})."""
    directory = Path(directory)
    index = _read_json(directory / "index.json", "the index of an exported case folder")
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise CaseDataError(f"{directory / 'index.json'} is not a {FORMAT} index of version {VERSION}: "
                            f"format {index.get('format')!r}, version {index.get('version')!r}")
    cases = OrderedDict()
    for name in index.get("cases", []):
        cases[name] = load_case(directory / name)
    return cases


def load_case(folder) -> "tuple[Case, dict]":
    folder = Path(folder)
    try:
        return _load_case(folder)
    except KeyError as error:
        raise CaseDataError(f"{folder}: a required entry is missing: {error}; export the cases again") from error


def _load_case(folder: Path):
    info = _read_json(folder / "case.json", "a case description")
    layers = _read_json(folder / "architecture.json", "an architecture")["layers"]
    weights = _read_npz(folder / "weights.npz")
    inputs = _read_npz(folder / "inputs.npz")
    expected = _read_npz(folder / "expected.npz")
    try:
        model = build(layers, weights)
    except (ValueError, TypeError, RuntimeError) as error:
        raise CaseDataError(f"{folder}: the net cannot be rebuilt: {error}") from error
    absent = [f"{method}/{stage}" for method in info["methods"] for stage in STAGES if f"{method}/{stage}" not in expected]
    if absent:
        raise CaseDataError(f"{folder / 'expected.npz'} lacks {len(absent)} maps, e.g. {absent[0]!r}; export the "
                            "cases again with `minicam export-cases DIR`")
    case = Case(info["name"], info.get("description", ""), model, inputs["x"], inputs["targets"].astype(np.int64),
                info["layer"], tuple(info["methods"]), info.get("options", {}),
                {key: np.asarray(value) for key, value in info.get("published", {}).items()}, info.get("sources", ""))
    return case, expected


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise CaseDataError(f"{path} is missing: expected {what} (write the cases with `minicam export-cases DIR`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CaseDataError(f"{path} is not valid JSON: {error}") from error


def _read_npz(path: Path) -> dict:
    if not path.is_file():
        raise CaseDataError(f"{path} is missing (write the cases with `minicam export-cases DIR`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        raise CaseDataError(f"{path} cannot be read as .npz: {error}") from error
