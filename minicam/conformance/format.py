"""The exported folder's format, shared by export, its README and verify.

A results file maps keys to values: "<case>/<method>/<stage>" to maps, where a stage is
"raw" or a preset of minicam.cam.conventions.PRESETS (version 1, still read), and, since
version 2, the stages before and between them (stages.py): "<case>/logits",
"<case>/score", "<case>/<method>/A", "<case>/<method>/g", "<case>/<method>/weights" and
"<case>/<method>/<preset>/after-<step>". The error of a value is, for each image,
max|result - expected| / max|expected| (absolute where the expected value is all zeros),
the largest over the images; a value passes when the error is at most the tolerance.

Tolerances: float64 results 1e-6. float32 results: per key, 30 times the error of
minicam's own float32 computation of that value (the same net and inputs cast to
float32), at least 1e-6 (float32 rounding of a value of order 1 is 6e-8) and at most
1e-4, so that a float32 difference is a difference where float32 can resolve it (an eps
of 1e-6 on case tiny_maps) and rounding where it cannot. A fixed float32 tolerance can be given.
"""
from __future__ import annotations

from minicam.cam.conventions import PRESETS

FORMAT = "minicam-conformance-cases"
VERSION = 2
KEY = "<case>/<method>/<stage>"
KEYS = ("<case>/logits", "<case>/score", "<case>/<method>/A", "<case>/<method>/g", "<case>/<method>/weights",
        "<case>/<method>/raw", "<case>/<method>/<preset>/after-<step>", "<case>/<method>/<preset>")
STAGES = ("raw",) + tuple(PRESETS)
DEFAULT_TOLERANCE = 1e-6
DEFAULT_FLOAT32_TOLERANCE = None  # None: per key, from minicam's own float32 error (below)
FLOAT32_FACTOR, FLOAT32_FLOOR, FLOAT32_CAP = 30.0, 1e-6, 1e-4
FLOAT32_RULE = ("per key: 30 x the error of minicam's own float32 computation of the value, at least 1e-6, at most 1e-4")
ERROR_MEASURE = ("max over images of max|result - expected| / max|expected| (absolute where the expected map "
                 "is all zeros)")
RAW_NOTE = ("the method's map at the layer's resolution (N, h, w), with the method's own final ReLU "
            "(where its paper has one), not resized, not normalised")


def stage_note(stage: str) -> str:
    """What a map of this stage is, in one line."""
    return RAW_NOTE if stage == "raw" else PRESETS[stage].note
