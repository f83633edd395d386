"""Write the conformance cases to a folder, framework-neutral, and read them back.

    DIR/README.md                 the format, the conventions, how to write a results file
    DIR/index.json                the case names, the stages, the key scheme, the tolerances
    DIR/<case>/case.json          layer, targets, methods, shapes, options, published values
    DIR/<case>/architecture.json  the net: a list of named layers (architecture.py)
    DIR/<case>/weights.npz        its state_dict, torch's keys ("conv1.weight", ...)
    DIR/<case>/inputs.npz         "x" (N, C, H, W) float64, "targets" (N,) int64,
                                  "smoothgradcam++/noise" (samples, N, C, H, W)
    DIR/<case>/expected.npz       minicam's values, float64: "<method>/<stage>" maps, and every stage
                                  before and between them (stages.py): "logits", "score", "A", "g",
                                  "<method>/weights", "<method>/<preset>/after-<step>"

load_cases(DIR) rebuilds every case (the net in minicam, with the stored
weights) and its expected maps; adapters.torch_net rebuilds the net in torch.
"""
from __future__ import annotations

import json
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

import minicam
from minicam import files
from minicam.autograd import Tensor
from minicam.cam.registry import REGISTRY
from minicam.conformance.architecture import build, describe
from minicam.conformance.cases import Case, expected_values, smoothgrad_noise, suite
from minicam.conformance.format import (
    DEFAULT_TOLERANCE, ERROR_MEASURE, FLOAT32_RULE, FORMAT, KEY, KEYS, STAGES, VERSION, stage_note,
)
from minicam.conformance.stages import STAGE_NOTES
from minicam.conformance.readme import readme


class CaseDataError(ValueError):
    """An exported case folder that cannot be read (missing file, wrong format)."""


def export_cases(directory, cases=None, force: bool = False) -> Path:
    """Write every case (default: the whole suite) to `directory`; return its path.

    The folder must be new, empty, or a previous export (its index.json carries minicam's
    mark, minicam.files): anything else is refused (files.FileRefused) unless force=True.
    Every file is written atomically, and never through a symbolic link.
    """
    directory = Path(directory)
    _check_export_folder(directory, force)
    directory.mkdir(parents=True, exist_ok=True)
    cases = list(suite().values()) if cases is None else list(cases)
    expected = {case.name: expected_values(case) for case in cases}
    for case in cases:
        _export_case(directory / case.name, case, expected[case.name])
    index = {
        "format": FORMAT,
        "version": VERSION,
        "minicam": minicam.__version__,
        "cases": [case.name for case in cases],
        "key": KEY,
        "keys": list(KEYS),
        "stages": {**{stage: stage_note(stage) for stage in STAGES}, **STAGE_NOTES,
                   "<preset>/after-<step>": "the map after each step of the preset, in order (relu, resize, normalize; "
                                            "a step's second time is numbered: after-normalize-2)"},
        "tolerance": {"float64": DEFAULT_TOLERANCE, "float32": FLOAT32_RULE, "measure": ERROR_MEASURE},
    }
    files.write_text(directory / "README.md", readme(cases, expected), force=True)
    files.write_json(directory / "index.json", index, force=True)  # last: the folder is complete
    return directory


def _check_export_folder(directory: Path, force: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise files.FileRefused(f"{directory} exists and is not a folder; choose a new folder name")
    if not directory.exists() or force or not any(directory.iterdir()):
        return
    index = directory / "index.json"
    ours = index.is_file() and not index.is_symlink() and files.written_by_minicam(index)
    if not ours or _read_json(index, "an index").get("format") != FORMAT:
        raise files.FileRefused(
            f"{directory} is not empty and is not a folder written by `minicam export-cases` (its index.json is "
            "missing or was not written by minicam): choose a new or empty folder, or pass --force to write the "
            "cases into it anyway (files of the same names are replaced)")


def _write_arrays(path: Path, arrays: dict) -> None:
    files.write_atomically(path, lambda temporary: np.savez(temporary, **arrays), force=True)


def _write_json(path: Path, data: dict) -> None:
    files.write_text(path, json.dumps(data, indent=1) + "\n", force=True)


def _export_case(folder: Path, case: Case, expected: dict):
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise files.FileRefused(f"{folder} is a symbolic link or a file; minicam writes the case {case.name!r} only "
                                "into a folder of its own: remove it, or export to a new folder")
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
    _write_json(folder / "case.json", info)
    _write_json(folder / "architecture.json", {"format": "sequential", "layers": describe(case.model)})
    _write_arrays(folder / "weights.npz", case.model.state_dict())
    inputs = {"x": case.x, "targets": case.targets.astype(np.int64)}
    if "smoothgradcam++" in case.methods:
        inputs["smoothgradcam++/noise"] = smoothgrad_noise(case)
    _write_arrays(folder / "inputs.npz", inputs)
    _write_arrays(folder / "expected.npz", expected)


def load_cases(directory) -> "OrderedDict[str, tuple[Case, dict]]":
    """name -> (Case with the net rebuilt in minicam, expected maps {"<method>/<stage>": array})."""
    directory = Path(directory)
    index = _read_json(directory / "index.json", "the index of an exported case folder")
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise CaseDataError(f"{directory / 'index.json'} is not a {FORMAT} index of version {VERSION}: "
                            f"format {index.get('format')!r}, version {index.get('version')!r}")
    if not isinstance(index.get("cases"), list):
        raise CaseDataError(f"{directory / 'index.json'} has no list of cases; export the cases again")
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
    except (TypeError, AttributeError) as error:  # an entry of the wrong kind (a list where a name should be, ...)
        raise CaseDataError(f"{folder}: an entry has the wrong type ({error}); export the cases again") from error


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
    _check_inputs(folder, inputs, model)
    case = Case(info["name"], info.get("description", ""), model, inputs["x"], inputs["targets"].astype(np.int64),
                info["layer"], tuple(info["methods"]), info.get("options", {}),
                {key: np.asarray(value) for key, value in info.get("published", {}).items()}, info.get("sources", ""))
    return case, expected


def _check_inputs(folder: Path, inputs: dict, model) -> None:
    """The inputs must be finite float images and the targets classes the net has."""
    x, targets = inputs["x"], inputs["targets"]
    where = folder / "inputs.npz"
    if x.dtype.kind != "f" or x.ndim != 4 or not np.all(np.isfinite(x)):
        raise CaseDataError(f"{where}: 'x' must be finite float images (N, C, H, W), got {x.dtype} {x.shape} "
                            f"with {int(np.sum(~np.isfinite(x))) if x.dtype.kind == 'f' else 'no'} NaN or infinite "
                            "values; export the cases again")
    try:
        classes = model(Tensor(x[:1])).shape[1]
    except ValueError as error:
        raise CaseDataError(f"{where}: the net cannot run on 'x' of shape {x.shape}: {error}") from error
    if targets.dtype.kind not in "iu" or targets.shape != (len(x),) or targets.min() < 0 or targets.max() >= classes:
        raise CaseDataError(f"{where}: 'targets' must be {len(x)} integer classes in 0..{classes - 1}, got "
                            f"{targets.tolist()}; export the cases again")


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise CaseDataError(f"{path} is missing: expected {what} (write the cases with `minicam export-cases DIR`)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CaseDataError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise CaseDataError(f"{path} must hold a JSON object ({what}), got a {type(data).__name__}; "
                            "export the cases again")
    return data


def _read_npz(path: Path) -> dict:
    if not path.is_file():
        raise CaseDataError(f"{path} is missing (write the cases with `minicam export-cases DIR`)")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            raise ValueError("it holds a single array, not named arrays")
        with data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # e.g. a truncated file
        raise CaseDataError(f"{path} cannot be read as .npz ({type(error).__name__}: {error}); export the cases "
                            "again") from error
