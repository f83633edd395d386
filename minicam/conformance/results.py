"""Reading a results file, and saying exactly what is wrong with it when something is.

A results file is an .npz (or, from Python, a dict) of maps keyed
"<case>/<method>/<stage>". Nothing in it may crash verify or slip through as a
wrong number: every problem becomes an Entry with status UNKNOWN (the key names
no expected map) or INVALID (the array cannot be compared), with a message that
says what was found and what was expected.
"""
from __future__ import annotations

import difflib
import zipfile
from pathlib import Path

import numpy as np

from minicam import files
from minicam.cam.registry import METHODS
from minicam.conformance.stages import CASE_STAGES, method_stages
from minicam.conformance.report import Entry


class ResultsFileError(ValueError):
    """The results file as a whole cannot be read."""


def read_results(source) -> "tuple[str, dict]":
    """(a description of the source, {key: array or an Exception raised when reading it})."""
    if isinstance(source, dict):
        return "results given as a dict", dict(source)
    path = Path(source)
    if not path.exists():
        raise ResultsFileError(f"results file {path} does not exist")
    if path.is_dir():
        raise ResultsFileError(f"{path} is a folder; give the results .npz file (e.g. {path / 'results.npz'})")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ResultsFileError(f"{path} cannot be read as an .npz file ({type(error).__name__}: {error}); "
                               "write it with np.savez(path, **{key: map})") from error
    if isinstance(data, np.ndarray):
        raise ResultsFileError(f"{path} holds a single array of shape {data.shape}, not named maps; "
                               "write it with np.savez(path, **{'<case>/<method>/<stage>': map, ...})")
    entries = {}
    with data:
        for key in data.files:
            if key == files.MARK_KEY:  # the mark of a results file minicam's adapters wrote, not a map
                continue
            try:
                entries[key] = data[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:  # e.g. an object array, a corrupt member
                entries[key] = error
    return str(path), entries


def parse_key(key, cases) -> "tuple[str, str | None, str] | Entry":
    """(case, method, stage), or an UNKNOWN Entry saying what is wrong with the key. The case's own
    stages ("<case>/logits", "<case>/score") have method None; a preset's step is the stage
    "<preset>/after-<step>"."""
    parts = key.split("/") if isinstance(key, str) else []
    if len(parts) == 2 and parts[1] in CASE_STAGES and parts[0] in cases:
        return parts[0], None, parts[1]
    if len(parts) == 4:
        parts = parts[:2] + ["/".join(parts[2:])]
    if len(parts) != 3:
        return Entry(str(key), "UNKNOWN", f"a key must be '<case>/<method>/<stage>' (three parts separated "
                                          f"by '/'), e.g. 'gap_net/gradcam/raw', or '<case>/logits', "
                                          f"'<case>/score', '<case>/<method>/<preset>/after-<step>'; got {key!r}")
    case, method, stage = parts
    if case not in cases:
        return Entry(key, "UNKNOWN", f"unknown case {case!r}{_did_you_mean(case, cases)}; the cases are "
                                     f"{', '.join(cases)}", case=case, method=method, stage=stage)
    if method not in METHODS:
        return Entry(key, "UNKNOWN", f"unknown method {method!r}{_did_you_mean(method, METHODS)}; the methods "
                                     f"are {', '.join(METHODS)}", case=case, method=method, stage=stage)
    allowed = method_stages(method)
    if stage not in allowed:
        return Entry(key, "UNKNOWN", f"unknown stage {stage!r} for {method}{_did_you_mean(stage, allowed)}; its stages "
                                     f"are {', '.join(allowed)}", case=case, method=method, stage=stage)
    if method not in cases[case].methods:
        reason = " (CAM needs the layer to feed global average pooling and a Linear layer)" if method == "cam" else ""
        return Entry(key, "UNKNOWN", f"method {method!r} has no expected map on case {case!r}{reason}",
                     case=case, method=method, stage=stage)
    return case, method, stage


def _did_you_mean(word, choices):
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def as_array(value) -> "tuple[np.ndarray | None, str]":
    """(the value as a NumPy array, ""), or (None, why it cannot be one)."""
    if isinstance(value, Exception):
        return None, f"the array cannot be read ({type(value).__name__}: {value}); save plain float arrays"
    try:
        return np.asarray(value), ""
    except Exception as error:  # ragged lists, tensors that require grad, arbitrary objects
        return None, f"the value cannot be made an array ({type(error).__name__}: {error}); save plain float arrays"


def check_array(value, expected_shape, stage, layer_shape, input_shape) -> "tuple[np.ndarray | None, str]":
    """(the value as float64, ""), or (None, what is wrong with it). `value` is an array (see as_array)."""
    checked, problem = _check_array(value, expected_shape, stage, layer_shape, input_shape)
    if problem and stage in ("A", "g") and value.ndim == 4 and tuple(value.shape) == tuple(
            np.array(expected_shape)[[0, 2, 3, 1]]):
        problem += ("; this is channels-last (N, h, w, K): save np.transpose(values, (0, 3, 1, 2)) "
                    "(minicam.interop.images_from_nhwc)")
    return checked, problem


def _check_array(value, expected_shape, stage, layer_shape, input_shape) -> "tuple[np.ndarray | None, str]":
    """(the map as float64, ""), or (None, what is wrong with it). `value` is an array (see as_array)."""
    kind = value.dtype.kind
    if kind in "biu":
        return None, (f"dtype {value.dtype}: integer maps cannot be compared; save float32 or float64 "
                      "(quantised maps lose the information verify checks)")
    if kind == "c":
        return None, f"dtype {value.dtype}: complex values; save the real float32 or float64 map"
    if kind != "f":
        return None, f"dtype {value.dtype}: not a floating-point array; save float32 or float64"
    if value.dtype not in (np.float32, np.float64):
        return None, f"dtype {value.dtype}: save float32 or float64 ({value.dtype} is not checked)"
    shape, expected_shape = tuple(value.shape), tuple(expected_shape)
    if shape != expected_shape:
        return None, _shape_message(shape, expected_shape, stage, layer_shape, input_shape)
    finite = np.isfinite(value)
    if not finite.all():
        nan, inf = int(np.isnan(value).sum()), int(np.isinf(value).sum())
        return None, f"holds {nan} NaN and {inf} infinite values (of {value.size}); every value must be finite"
    return value.astype(np.float64), ""


def _shape_message(shape, expected, stage, layer_shape, input_shape):
    n = expected[0]
    text = f"shape {shape}, expected {expected}"
    if len(shape) == 4 and shape[1] == 1 and (shape[0],) + shape[2:] == expected:
        return f"{text}: drop the channel axis (save maps[:, 0])"
    if len(shape) == 2 and shape == expected[1:]:
        return f"{text}: one map was given; the case has {n} images, save all of them (N, h, w)"
    if len(shape) == 3 and shape[0] != n and shape[1:] == expected[1:]:
        return f"{text}: {shape[0]} maps for the case's {n} images"
    if len(shape) == 3 and shape[0] == n and shape[1:] != expected[1:]:
        if stage == "raw" and shape[1:] == tuple(input_shape) and tuple(layer_shape) != tuple(input_shape):
            return f"{text}: the map is at the input's size; a raw map stays at the layer's resolution {tuple(layer_shape)}"
        if stage != "raw" and shape[1:] == tuple(layer_shape):
            return f"{text}: the map is at the layer's resolution; a '{stage}' map is resized to the input's size"
        if shape[1:] == expected[2:0:-1]:
            return f"{text}: height and width are swapped"
    return text
