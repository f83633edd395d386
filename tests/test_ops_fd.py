"""Every op in the table against finite differences (float64), first and second order.

These checks need no torch: they test the backward against the forward.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicam.gradcheck import check_second_order, check_vjp
from op_cases import all_cases

CASES = [c for c in all_cases() if c.fd]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@given(data=st.data())
def test_first_derivative_matches_finite_differences(case, data):
    arrays, kwargs = case.draw(data)
    rng = np.random.default_rng(0)
    check_vjp(lambda *xs: case.minicam(*xs, **kwargs), arrays, rng, rtol=case.fd_rtol)


@pytest.mark.parametrize("case", [c for c in CASES if c.double], ids=[c.name for c in CASES if c.double])
@given(data=st.data())
def test_second_derivative_matches_finite_differences(case, data):
    arrays, kwargs = case.draw(data)
    rng = np.random.default_rng(1)
    check_second_order(lambda *xs: case.minicam(*xs, **kwargs), arrays, rng)
