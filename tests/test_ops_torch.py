"""Every op in the table against torch: forward, backward, double backward.

float64: minicam and torch in float64 agree to about 1e-10 (relative, normwise).
float32: minicam in float32 against torch in float64 on the same inputs.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from op_cases import all_cases
from opcheck import check_op_against_torch
from torch_required import require_torch

torch = require_torch()
CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@given(data=st.data())
def test_op_matches_torch(case, dtype, data):
    arrays, kwargs = case.draw(data)
    check_op_against_torch(torch, case.name, case.minicam, case.torch, arrays, kwargs, dtype=dtype,
                           rtol64=case.rtol64, rtol32=case.rtol32, double_backward=case.double)
