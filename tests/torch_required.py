"""Import torch for a test module: skip without it, unless MINICAM_REQUIRE_TORCH=1.

.ci/run sets MINICAM_REQUIRE_TORCH=1, so in CI a missing torch fails the run
instead of silently skipping every comparison with torch.
"""
import os

import pytest


def require_torch():
    if os.environ.get("MINICAM_REQUIRE_TORCH") == "1":
        import torch  # an ImportError here fails the run, as it should in CI
    else:
        torch = pytest.importorskip("torch")
    return torch
