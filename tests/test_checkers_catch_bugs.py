"""Test the testers: plant wrong derivatives and make sure every checker fails.

A check that cannot fail proves nothing. Each planted bug is small (a factor
of 1.001, a wrong second derivative) so the checkers must be tight to see it.
"""
import numpy as np
import pytest

from minicam import ops
from minicam.gradcheck import GradcheckError, check_second_order, check_vjp
from minicam.ops import elementwise
from opcheck import check_op_against_torch
from torch_required import require_torch

torch = require_torch()

X = np.array([[0.7, -1.3, 2.1], [-0.4, 1.9, 0.3]])


@pytest.fixture
def relu_backward_off_by_0_1_percent(monkeypatch):
    original = elementwise.ReLUOp.backward

    def wrong(ctx, g):
        (right,) = original(ctx, g)
        return (right * 1.001,)

    monkeypatch.setattr(elementwise.ReLUOp, "backward", staticmethod(wrong))


@pytest.fixture
def tanh_second_derivative_wrong(monkeypatch):
    """First derivative right in value, but built so its own derivative is wrong:
    (1 - y^2) is computed from a detached y, so d/dx of the backward misses a term."""

    def wrong(ctx, g):
        (x,) = ctx.inputs
        y = elementwise.TanhOp.apply(x).detach()
        return (g * (1 - y * y),)

    monkeypatch.setattr(elementwise.TanhOp, "backward", staticmethod(wrong))


def test_the_correct_ops_pass_first():
    check_op_against_torch(torch, "relu", ops.relu, lambda x: x.relu(), [X])
    check_vjp(ops.relu, [X], np.random.default_rng(0))
    check_second_order(ops.tanh, [X], np.random.default_rng(0))


def test_torch_comparison_catches_a_wrong_backward(relu_backward_off_by_0_1_percent):
    with pytest.raises(AssertionError, match="relu backward, input 0"):
        check_op_against_torch(torch, "relu", ops.relu, lambda x: x.relu(), [X])


def test_finite_differences_catch_a_wrong_backward(relu_backward_off_by_0_1_percent):
    with pytest.raises(GradcheckError, match="first derivative"):
        check_vjp(ops.relu, [X], np.random.default_rng(0))


def test_torch_comparison_catches_a_wrong_double_backward(tanh_second_derivative_wrong):
    with pytest.raises(AssertionError, match="tanh double backward"):
        check_op_against_torch(torch, "tanh", ops.tanh, lambda x: x.tanh(), [X])


def test_second_order_finite_differences_catch_a_wrong_double_backward(tanh_second_derivative_wrong):
    check_vjp(ops.tanh, [X], np.random.default_rng(0))  # the first derivative is still right...
    with pytest.raises(GradcheckError, match="second derivative"):
        check_second_order(ops.tanh, [X], np.random.default_rng(0))  # ...its derivative is not


def test_torch_comparison_catches_a_wrong_forward():
    with pytest.raises(AssertionError, match="forward"):
        check_op_against_torch(torch, "exp", lambda x: ops.exp(x) * (1 + 1e-9), lambda x: x.exp(), [X])
