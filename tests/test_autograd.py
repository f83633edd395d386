"""Engine semantics: reuse, accumulation, no_grad, deep graphs, grad(), dtypes.

These are the rules students trip over (micrograd's most frequent issues), so
each one is pinned down with exact numbers.
"""
import numpy as np
import pytest

import minicam
from minicam import Tensor


def test_a_tensor_used_twice_receives_the_sum():
    a = Tensor(3.0, requires_grad=True)
    b = a + a  # db/da = 2
    c = b + b  # dc/da = 4
    c.backward()
    assert a.grad.item() == 4.0


def test_reuse_inside_a_product():
    a = Tensor(3.0, requires_grad=True)
    (a * a * a).backward()  # d(a^3)/da = 3a^2 = 27
    assert a.grad.item() == 27.0


def test_leaves_accumulate_grad_across_backward_calls_like_torch():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (a * 3).sum().backward()
    (a * 3).sum().backward()
    np.testing.assert_array_equal(a.grad.data, [6.0, 6.0])
    a.zero_grad()
    (a * 3).sum().backward()
    np.testing.assert_array_equal(a.grad.data, [3.0, 3.0])


def test_intermediate_tensors_get_no_grad_and_leaves_that_do_not_require_grad_neither():
    a = Tensor(2.0, requires_grad=True)
    k = Tensor(5.0)
    b = a * k
    (b * b).backward()
    assert b.grad is None and k.grad is None
    assert a.grad.item() == 2 * 10.0 * 5.0


def test_no_grad_records_nothing():
    a = Tensor(2.0, requires_grad=True)
    with minicam.no_grad():
        b = a * a
    assert not b.requires_grad and b.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        b.backward()
    with minicam.no_grad():
        with minicam.enable_grad():
            c = a * a
    assert c.requires_grad


def test_a_chain_of_10000_ops_backpropagates_without_recursion():
    x = Tensor(np.ones(3), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, np.full(3, 1.0001**10_000), rtol=1e-12)


def test_broadcasting_is_undone_in_the_gradient():
    a = Tensor(np.ones((2, 3)), requires_grad=True)
    b = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    c = Tensor(np.ones((2, 1)), requires_grad=True)
    (a * b + c).sum().backward()
    np.testing.assert_array_equal(b.grad.data, [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(c.grad.data, [[3.0], [3.0]])
    np.testing.assert_array_equal(a.grad.data, [[1, 2, 3], [1, 2, 3]])


def test_grad_matches_torch_autograd_grad_semantics():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    h = x * x          # intermediate
    y = (h * x).sum()  # x^3
    gx, gh = minicam.grad(y, [x, h])
    np.testing.assert_array_equal(gx.data, 2 * x.data * x.data + x.data**2)  # through h and directly
    np.testing.assert_array_equal(gh.data, x.data)
    assert x.grad is None  # grad() writes no .grad


def test_grad_outputs_and_multiple_outputs():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (g,) = minicam.grad([x * 2, x * x], x, grad_outputs=[Tensor([1.0, 1.0]), Tensor([10.0, 100.0])])
    np.testing.assert_array_equal(g.data, [2 + 20.0, 2 + 400.0])


def test_grad_errors_are_clear():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    unused = Tensor(1.0, requires_grad=True)
    with pytest.raises(RuntimeError, match="only for one-element outputs"):
        minicam.grad(x * 2, x)
    with pytest.raises(RuntimeError, match="allow_unused=True"):
        minicam.grad((x * 2).sum(), [x, unused])
    assert minicam.grad((x * 2).sum(), [x, unused], allow_unused=True)[1] is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        minicam.grad((x * 2).sum(), Tensor(1.0))


def test_second_and_third_derivatives_are_exact():
    x = Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True)
    y = (x.exp() * x * x).sum()  # f = x^2 e^x
    (d1,) = minicam.grad(y, x, create_graph=True)
    (d2,) = minicam.grad(d1.sum(), x, create_graph=True)
    (d3,) = minicam.grad(d2.sum(), x)
    v, e = x.data, np.exp(x.data)
    np.testing.assert_allclose(d1.data, e * (v**2 + 2 * v), rtol=1e-14)
    np.testing.assert_allclose(d2.data, e * (v**2 + 4 * v + 2), rtol=1e-14)
    np.testing.assert_allclose(d3.data, e * (v**2 + 6 * v + 6), rtol=1e-14)


def test_backward_with_create_graph_gives_a_differentiable_grad():
    x = Tensor(3.0, requires_grad=True)
    (x**3).backward(create_graph=True)
    assert x.grad.requires_grad and x.grad.item() == 27.0
    (g2,) = minicam.grad(x.grad, x)
    assert g2.item() == 18.0


def test_relu_gradient_at_zero_is_zero_like_torch():
    x = Tensor(np.array([-1.0, 0.0, 1.0]), requires_grad=True)
    x.relu().sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0.0, 0.0, 1.0])


def test_dtypes_float32_is_preserved_and_integers_become_float64():
    x32 = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y = (x32 * 2.0 + 1).exp().sum()
    assert y.dtype == np.float32
    y.backward()
    assert x32.grad.dtype == np.float32
    assert Tensor([1, 2, 3]).dtype == np.float64
    assert Tensor(np.arange(3)).dtype == np.float64
    assert Tensor(np.ones(2, dtype=bool)).dtype == np.float64


def test_unsupported_dtypes_are_refused_with_a_message():
    with pytest.raises(TypeError, match="float16 is not supported|use np.float32 or np.float64|convert to np.float32"):
        Tensor(np.ones(2, dtype=np.float16))
    with pytest.raises(TypeError, match="complex128"):
        Tensor(np.ones(2, dtype=complex))
    with pytest.raises(TypeError, match="object"):
        Tensor(np.array([None, 1]))


def test_nan_and_inf_propagate_as_in_ieee_arithmetic():
    """minicam does not check for NaN/Inf: they flow through like in torch."""
    x = Tensor(np.array([np.nan, np.inf, -np.inf, 1.0]), requires_grad=True)
    y = x.relu()
    np.testing.assert_array_equal(y.data, [np.nan, np.inf, 0.0, 1.0])
    y.sum().backward()
    # relu's gradient mask is [x > 0]: False for NaN, so NaN inputs get gradient 0 (torch agrees)
    np.testing.assert_array_equal(x.grad.data, [0.0, 1.0, 0.0, 1.0])
    assert np.isnan(minicam.ops.max(x).item())  # NaN counts as the maximum, as in torch
    assert np.isnan((x * 0).data[0]) and np.isnan((x * 0).data[1])  # inf * 0 = nan


def test_tensor_repr_is_readable():
    assert repr(Tensor([1.0, 2.0])) == "Tensor([1., 2.])"
    assert repr(Tensor([1.0], requires_grad=True)) == "Tensor([1.], requires_grad=True)"
    assert "grad_fn=MulOp" in repr(Tensor([1.0], requires_grad=True) * 2)
    assert "dtype=float32" in repr(Tensor(np.ones(1, np.float32)))


def test_grad_fn_names_the_primitive_that_computed_a_tensor():
    from minicam.ops.elementwise import MulOp

    leaf = Tensor([1.0], requires_grad=True)
    assert (leaf * 2).grad_fn is MulOp
    assert leaf.grad_fn is None and Tensor([1.0]).grad_fn is None
    with minicam.no_grad():
        assert (leaf * 2).grad_fn is None  # no graph, no grad_fn (as torch)


def test_shape_errors_name_the_op_and_the_shapes():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(2, 3\)"):
        minicam.ops.matmul(Tensor(np.ones((2, 3))), Tensor(np.ones((2, 3))))
    with pytest.raises(ValueError, match=r"reshape: cannot reshape a tensor of shape \(2, 3\)"):
        Tensor(np.ones((2, 3))).reshape(4, 2)
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\) does not fit weight of shape \(4, 5\)"):
        minicam.ops.linear(Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5))))
    with pytest.raises(ValueError, match=r"add: shapes \(2,\) and \(3,\) do not broadcast"):
        Tensor(np.ones(2)) + Tensor(np.ones(3))
    with pytest.raises(IndexError, match="sum: dim 3 is out of range"):
        Tensor(np.ones((2, 3))).sum(dim=3)


def test_a_tensor_reached_by_a_short_and_a_long_path_gets_both_contributions():
    """x feeds the subtraction directly and, three ops deeper, through log-sum-exp.
    (A topological sort that marks tensors when pushed, not when expanded, loses
    the long path's gradient here.)"""
    x = Tensor(np.array([[0.3, -1.2, 2.0], [1.0, 0.5, -0.5]]), requires_grad=True)
    y = x - minicam.ops.log(minicam.ops.sum(minicam.ops.exp(x), dim=1, keepdim=True))
    y[np.arange(2), np.array([0, 1])].sum().backward()
    softmax = np.exp(x.data) / np.exp(x.data).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(x.grad.data, np.eye(3)[[0, 1]] - softmax, rtol=1e-14, atol=1e-15)


def test_many_paths_of_different_lengths():
    x = Tensor(np.array([0.7, -0.2]), requires_grad=True)
    y = x
    total = x
    for _ in range(5):
        y = y * x  # x^2, x^3, ...
        total = total + y
    total.sum().backward()  # d/dx (x + x^2 + ... + x^6)
    v = x.data
    np.testing.assert_allclose(x.grad.data, sum(k * v ** (k - 1) for k in range(1, 7)), rtol=1e-14)


def test_set_grad_enabled_as_a_function_and_as_a_block_like_torch():
    a = Tensor(2.0, requires_grad=True)
    with minicam.no_grad():
        minicam.set_grad_enabled(True)  # a plain call switches at once...
        assert (a * a).requires_grad
    assert minicam.is_grad_enabled()  # ...and the block restores the mode it found
    with minicam.set_grad_enabled(False):
        assert not (a * a).requires_grad
    assert minicam.is_grad_enabled()
