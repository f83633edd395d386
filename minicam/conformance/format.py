"""The exported folder's format, shared by export, its README and verify.

A results file maps keys "<case>/<method>/<stage>" to maps; a stage is "raw" or a preset
of minicam.cam.conventions.PRESETS. The error of a map is, for each image,
max|result - expected| / max|expected| (absolute where the expected map is all zeros),
the largest over the images; a map passes when the error is at most the tolerance.
"""
from __future__ import annotations

from minicam.cam.conventions import PRESETS

FORMAT = "minicam-conformance-cases"
VERSION = 1
KEY = "<case>/<method>/<stage>"
STAGES = ("raw",) + tuple(PRESETS)
DEFAULT_TOLERANCE = 1e-6
DEFAULT_FLOAT32_TOLERANCE = 1e-4
ERROR_MEASURE = ("max over images of max|result - expected| / max|expected| (absolute where the expected map "
                 "is all zeros)")
RAW_NOTE = ("the method's map at the layer's resolution (N, h, w), with the method's own final ReLU "
            "(where its paper has one), not resized, not normalised")


def stage_note(stage: str) -> str:
    """What a map of this stage is, in one line."""
    return RAW_NOTE if stage == "raw" else PRESETS[stage].note
