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
    closest: Match | None = None                   # the nearest variant when none matches
    result: object = field(default=None, repr=False, compare=False)  # the checked map (float64), not reported

    @property
    def failed(self) -> bool:
        return self.status in FAILURES

    def sentence(self) -> str:
        """One line saying what happened, e.g. "gradcam++ on case gap_net (raw): max error 2.1e-01 - FAIL; ..."."""
        if self.status in ("INVALID", "UNKNOWN"):
            return f"{self.key}: {self.status}: {self.message}"
        text = f"{self.method} on case {self.case} ({self.stage}): max error {self.error:.1e} - {self.status}"
        if self.status == "PASS":
            return text
        if self.diagnosis:
            best = self.diagnosis[0]
            text += f"; matches variant '{best.label}' ({best.summary}) to {best.error:.0e}"
            others = [m.label for m in self.diagnosis[1:]]
            if others:
                text += f"; also matched: {', '.join(others[:4])}" + (f" and {len(others) - 4} more" if len(others) > 4 else "")
        elif self.closest is not None:
            text += (f"; no known variant explains it (closest: '{self.closest.label}', "
                     f"error {self.closest.error:.1e})")
        else:
            text += "; no known variant explains it"
        return text


@dataclass
class Report:
    source: str
    tolerance: float
    float32_tolerance: float
    entries: list = field(default_factory=list)
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
        lines = [f"minicam verify: {self.source}",
                 f"tolerance: max error relative to each image's largest |value| <= {self.tolerance:.0e} "
                 f"(float64), {max(self.tolerance, self.float32_tolerance):.0e} (float32)", ""]
        compared = [e for e in self.entries if e.status in ("PASS", "FAIL")]
        if compared:
            widths = [max(len(e.case) for e in compared), max(len(e.method) for e in compared),
                      max(len(e.stage) for e in compared)]
            widths = [max(w, len(h)) for w, h in zip(widths, ("case", "method", "stage"))]
            header = (f"{'case':<{widths[0]}}  {'method':<{widths[1]}}  {'stage':<{widths[2]}}  "
                      f"{'dtype':<7}  {'max error':>9}  {'tolerance':>9}  status")
            lines += [header, "-" * len(header)]
            for e in compared:
                lines.append(f"{e.case:<{widths[0]}}  {e.method:<{widths[1]}}  {e.stage:<{widths[2]}}  "
                             f"{e.dtype:<7}  {e.error:>9.1e}  {e.tolerance:>9.0e}  {e.status}")
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
                "notes": list(self.notes), "entries": [entry_dict(e) for e in self.entries]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=_plain)


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
