"""Shared test set-up: hypothesis profiles, the torch requirement, the error report.

Hypothesis profiles (choose with HYPOTHESIS_PROFILE=...):
  ci   derandomized (the same examples on every run), no deadline: CI's profile
  dev  random examples, more of them: for exploring on a workstation
The default is `ci`, so a plain `pytest` is reproducible.
"""
import json
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=100, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", deadline=None, max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a test that takes more than a few seconds")


def pytest_sessionfinish(session, exitstatus):
    """With MINICAM_ERROR_REPORT=path, write the worst relative error seen per op
    and dtype against torch (collected by tests/opcheck.py) as JSON."""
    path = os.environ.get("MINICAM_ERROR_REPORT")
    if not path:
        return
    from opcheck import WORST_ERRORS

    rows = {f"{name} [{dtype}]": error for (name, dtype), error in sorted(WORST_ERRORS.items())}
    with open(path, "w") as f:
        json.dump(rows, f, indent=1)
