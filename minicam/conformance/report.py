"""The verify report: one Entry per key of the results file, notes, a table and JSON.

Statuses:
  PASS     the map agrees with minicam's expected map within the tolerance
  FAIL     it does not; `diagnosis` lists the known variants that reproduce it
  INVALID  the array cannot be compared (wrong shape, dtype, NaN or infinite values)
  UNKNOWN  the key names no expected map (unknown case, method or stage, or a method
           that does not apply to the case)
FAIL, INVALID and UNKNOWN are failures: the exit status is then 1.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

FAILURES = ("FAIL", "INVALID", "UNKNOWN")


@dataclass
class Match:
    """A variant (or a method variant + a pipeline variant) that reproduces a map."""

    names: tuple
    error: float
    summary: str

    @property
    def label(self) -> str:
        return " + ".join(self.names)


@dataclass
class Entry:
    key: str
    status: str
    message: str = ""
    case: str | None = None
    method: str | None = None
    stage: str | None = None
    dtype: str | None = None
    error: float | None = None
    tolerance: float | None = None
    diagnosis: list = field(default_factory=list)  # Matches, best first
    closest: Match | None = None                   # a variant that explains most of the difference, when none matches
    where: str | None = None                       # a FAIL: where the difference is largest, e.g. "image 1, row 3, ..."
    difference: float | None = None                # a FAIL: the largest absolute difference
    result: object = field(default=None, repr=False, compare=False)  # the checked map (float64), not reported

    @property
    def failed(self) -> bool:
        return self.status in FAILURES

    @property
    def what(self) -> str:
        return f"{self.method} on case {self.case}" if self.method else f"case {self.case}"

    def sentence(self) -> str:
        """One line saying what happened, e.g. "gradcam++ on case gap_net (raw): max error 2.1e-01 - FAIL; ..."."""
        if self.status in ("INVALID", "UNKNOWN"):
            return f"{self.key}: {self.status}: {self.message}"
        text = f"{self.what} ({self.stage}): max error {self.error:.1e} - {self.status}"
        if self.status == "PASS":
            return text
        return f"{text}; {self.cause()}"

    def cause(self) -> str:
        """The diagnosis in words: the matching cause, or that none is known and where the difference is."""
        if self.diagnosis:
            best = self.diagnosis[0]
            text = f"matches {'variant ' if best.label in _catalogue() else ''}'{best.label}' ({best.summary}) to {best.error:.0e}"
            others = [m.label for m in self.diagnosis[1:]]
            if others:
                text += f"; also matched: {', '.join(others[:4])}" + (f" and {len(others) - 4} more" if len(others) > 4 else "")
            return text
        text = "no known variant explains it" + (f"; the largest difference is at {self.where}" if self.where else "")
        if self.closest is not None:
            text += f"; partly explained by '{self.closest.label}' ({self.closest.summary})"
        return text


def _catalogue():
    from minicam.conformance.variants import CATALOGUE
    return CATALOGUE


# What to check when a variant is named at the first stage that differs (the fix, in a few words).
ADVICE = {
    "flatten-dense-transposed": "check the Flatten -> Dense weight order: a channels-last Flatten needs "
                                "minicam.interop.flatten_dense_to_keras, not a plain transpose",
    "conv-kernel-reshaped": "transpose conv kernels to (kh, kw, C, K) with minicam.interop.conv_kernel_to_hwio, "
                            "never reshape them",
    "batchnorm-eps-keras": "give BatchNormalization the case's epsilon (architecture.json; Keras's default is 1e-3)",
    "batchnorm-keras-momentum-update": "the BatchNorm statistics were updated in training mode; run in inference "
                                       "mode, and convert momentum as 1 - momentum (minicam.interop.batch_norm_to_keras)",
    "batchnorm-train-mode": "run the net in inference mode (model.eval(); Keras: training=False)",
    "softmax-score": "differentiate the target's logit, before any softmax",
    "exp-score": "differentiate the logit itself, not exp(logit)",
    "predicted-class": "explain the case's targets (inputs.npz), not the predicted class",
    "first-target-for-all": "give each image its own target",
    "wrong-layer": "hook the output of the case's layer (case.json)",
}
PORT_HINT = ("the model port is wrong: check the Flatten -> Dense weight order (minicam.interop.flatten_dense_to_keras), "
             "conv kernels (conv_kernel_to_hwio), BatchNorm's epsilon (the case's; Keras's default is 1e-3), the "
             "padding (padding_to_keras) and inference mode")
FIRST = {
    "logits": "your logits differ by {difference:.3g}: the model port is wrong, and every later stage inherits it",
    "score": "your scores differ while your logits {agree}: the score is not the target's logit",
    "A": "your activations A differ{while}: the layer hooked, or the net before it, is not the case's",
    "g": "your gradients g differ{while}: the score differentiated, or the way it is, is not the case's",
    "weights": "your channel weights differ{while}: the method's formula for the weights differs",
    "raw": "your raw map differs{while}: the method's formula differs",
}


def first_sentence(entry: "Entry", agreed: "Entry | None") -> str:
    """The sentence for the first stage of a case or a method that differs: what it means, then its cause."""
    agreeing = {"logits": "the logits agree", "score": "the scores agree", "A": "A agrees", "g": "g agrees",
                "weights": "the weights agree", "raw": "the raw map agrees"}
    while_ = "" if agreed is None else f" while {agreeing.get(agreed.stage, 'the step before it agrees')}"
    if entry.status == "INVALID":
        return f"{entry.what}: the first stage that cannot be compared is {entry.stage}: {entry.message}"
    if entry.stage in FIRST:
        text = FIRST[entry.stage].format(difference=entry.difference or 0.0, **{
            "while": while_, "agree": "agree" if agreed is not None else "were not submitted"})
    elif "/" in entry.stage:
        preset, step = entry.stage.split("/")
        text = (f"your map first differs after the '{step[len('after-'):]}' step of preset '{preset}'{while_}: "
                f"that step is done differently")
    else:
        text = f"your '{entry.stage}' map differs{while_}: the steps after the map (ReLU, resize, normalise) differ"
    text = f"{entry.what} ({entry.stage}): {text}; "
    if entry.diagnosis:
        best = entry.diagnosis[0]
        advice = " / ".join(ADVICE[name] for name in best.names if name in ADVICE)
        return text + f"it matches '{best.label}' ({best.summary})" + (f": {advice}" if advice else "")
    hint = f"{PORT_HINT}; " if entry.stage in ("logits", "A") else ""
    return text + hint + entry.cause()


@dataclass
class Report:
    source: str
    tolerance: float
    float32_tolerance: float | None
    entries: list = field(default_factory=list)
    firsts: list = field(default_factory=list)     # (entry, the last stage before it that agrees): first differences
    notes: list = field(default_factory=list)      # information: what was not submitted
    problems: list = field(default_factory=list)   # failures not tied to one key (unreadable file, nothing to check)
    readable: bool = True                          # False: the results file itself could not be read

    @property
    def counts(self) -> dict:
        counts = {status: 0 for status in ("PASS", "FAIL", "INVALID", "UNKNOWN")}
        for entry in self.entries:
            counts[entry.status] += 1
        return counts

    @property
    def ok(self) -> bool:
        return not self.problems and not any(entry.failed for entry in self.entries)

    @property
    def exit_code(self) -> int:
        """0 everything passed, 1 something failed, 2 the results file could not be read."""
        return 2 if not self.readable else 0 if self.ok else 1

    def entry(self, key: str) -> Entry:
        for entry in self.entries:
            if entry.key == key:
                return entry
        raise KeyError(f"no entry {key!r} in the report")

    def to_text(self) -> str:
        float32 = "per key from minicam's own float32 error (column 'tolerance')" if self.float32_tolerance is None \
            else f"{max(self.tolerance, self.float32_tolerance):.0e}"
        lines = [f"minicam verify: {self.source}",
                 f"tolerance: max error relative to each image's largest |value| <= {self.tolerance:.0e} "
                 f"(float64), {float32} (float32)", ""]
        compared = [e for e in self.entries if e.status in ("PASS", "FAIL")]
        if compared:
            widths = [max(len(e.case) for e in compared), max(len(e.method or "-") for e in compared),
                      max(len(e.stage) for e in compared)]
            widths = [max(w, len(h)) for w, h in zip(widths, ("case", "method", "stage"))]
            header = (f"{'case':<{widths[0]}}  {'method':<{widths[1]}}  {'stage':<{widths[2]}}  "
                      f"{'dtype':<7}  {'max error':>9}  {'tolerance':>9}  status")
            lines += [header, "-" * len(header)]
            for e in compared:
                lines.append(f"{e.case:<{widths[0]}}  {e.method or '-':<{widths[1]}}  {e.stage:<{widths[2]}}  "
                             f"{e.dtype:<7}  {e.error:>9.1e}  {e.tolerance:>9.0e}  {e.status}")
            lines.append("")
        if self.firsts:
            lines.append("First differences (the earliest stage that differs, per case and method; read these first):")
            lines += [f"  {first_sentence(entry, agreed)}" for entry, agreed in self.firsts]
            lines.append("")
        failures = [e for e in self.entries if e.failed]
        if failures or self.problems:
            lines.append("Failures:")
            lines += [f"  {problem}" for problem in self.problems]
            lines += [f"  {e.sentence()}" for e in failures]
            lines.append("")
        if self.notes:
            lines.append("Not checked (not failures):")
            lines += [f"  {note}" for note in self.notes]
            lines.append("")
        c = self.counts
        lines.append(f"Summary: {c['PASS']} passed, {c['FAIL']} failed, {c['INVALID']} invalid, "
                     f"{c['UNKNOWN']} unknown keys" + (f", {len(self.problems)} other problems" if self.problems else "")
                     + f" -> {'OK' if self.ok else 'FAILED'} (exit status {self.exit_code})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        def entry_dict(e):
            d = asdict(e)
            d.pop("result")
            d["diagnosis"] = [dict(asdict(m), names=list(m.names)) for m in e.diagnosis]
            d["closest"] = None if e.closest is None else dict(asdict(e.closest), names=list(e.closest.names))
            d["sentence"] = e.sentence()
            return d
        return {"source": self.source, "ok": self.ok, "exit_code": self.exit_code, "tolerance": self.tolerance,
                "float32_tolerance": self.float32_tolerance, "counts": self.counts, "problems": list(self.problems),
                "notes": list(self.notes), "entries": [entry_dict(e) for e in self.entries],
                "first_differences": [{"key": entry.key, "agreed": None if agreed is None else agreed.key,
                                       "sentence": first_sentence(entry, agreed)} for entry, agreed in self.firsts]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=_plain)


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
