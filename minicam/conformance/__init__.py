"""minicam.conformance: check another CAM implementation against minicam, and say why it differs.

  cases.py              the suite: small seeded nets, inputs, targets, layers; minicam's expected maps
  architecture.py       a net as a list of named layers (JSON) and back
  export.py             export_cases(DIR): framework-neutral files; load_cases(DIR) reads them back
  readme.py             the README.md written into DIR (format, conventions, a torch example)
  results.py            reading a results file; every problem with it becomes a report line
  verify.py             verify(results): errors, pass/fail, and the diagnosis
  report.py             the report: entries, a text table, JSON
  catalogue.py          how a variant is described and registered; the Lab that computes for it
  formulas.py           the gradient methods as functions of A and g
  variants_methods.py   variants of the method's map (Grad-CAM++ alphas, scores, Score-CAM, ...)
  variants_pipeline.py  variants of ReLU / resize / normalise
  variants.py           the whole catalogue, and the search over single variants and pairs
  adapters.py           (torch) captum, torchcam and hand-written torch runs on the exported cases
  cli.py                `minicam export-cases DIR`, `minicam verify RESULTS.npz`

None of these import torch except adapters.py (inside its functions).
"""
from minicam.conformance.cases import STAGES, Case, build_case, expected_maps, suite
from minicam.conformance.export import export_cases, load_cases
from minicam.conformance.verify import verify

__all__ = ["Case", "STAGES", "build_case", "suite", "expected_maps", "export_cases", "load_cases", "verify"]
