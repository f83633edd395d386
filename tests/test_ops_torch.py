"""Every op in the table against torch: forward, backward, double backward.

float64: minicam and torch in float64 agree to about 1e-10 (relative, normwise).
float32: minicam in float32 against torch in float64 on the same inputs.

The ops whose primitives have a fast wing (conv2d, max_pool2d, batch_norm in eval mode) run
by default on the fast kernels; their rows run a second time inside
minicam.ops.reading_room(), so that the readable definitions are checked against torch too.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicam import ops
from op_cases import all_cases
from opcheck import check_op_against_torch
from torch_required import require_torch

torch = require_torch()
CASES = all_cases()
WITH_A_FAST_WING = [c for c in CASES if c.name.startswith(("conv2d", "max_pool2d", "batch_norm_eval"))]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@given(data=st.data())
def test_op_matches_torch(case, dtype, data):
    arrays, kwargs = case.draw(data)
    check_op_against_torch(torch, case.name, case.minicam, case.torch, arrays, kwargs, dtype=dtype,
                           rtol64=case.rtol64, rtol32=case.rtol32, double_backward=case.double)


@pytest.mark.parametrize("case", WITH_A_FAST_WING, ids=[c.name for c in WITH_A_FAST_WING])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@given(data=st.data())
def test_reading_room_matches_torch(case, dtype, data):
    arrays, kwargs = case.draw(data)
    with ops.reading_room():
        check_op_against_torch(torch, f"{case.name} (reading room)", case.minicam, case.torch, arrays, kwargs,
                               dtype=dtype, rtol64=case.rtol64, rtol32=case.rtol32, double_backward=case.double)
