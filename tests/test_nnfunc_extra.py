"""softmax, cross_entropy, batch_norm, dropout, interpolate: what the op table cannot check.

Running statistics across several training steps, extreme logits, hand-computed
resize values, torch's float32 rounding in nearest, dropout's statistics, and
the error messages. The op table (cases_nnfunc.py) checks values and
derivatives against torch and finite differences.
"""
import numpy as np
import pytest

import minicam
from minicam import Tensor, ops
from minicam.gradcheck import check_second_order, check_vjp
from minicam.ops.norm import dropout_mask
from minicam.ops.resize import MODES, interpolation_matrix
from torch_required import require_torch

torch = require_torch()
F = torch.nn.functional


def t64(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


# ----------------------------------------------------------------------------
# softmax, log_softmax
# ----------------------------------------------------------------------------


def test_softmax_of_huge_logits_is_exact():
    assert ops.softmax(np.array([1000.0, 0.0]), 0).data.tolist() == [1.0, 0.0]  # exp(-1000) underflows to 0
    assert ops.log_softmax(np.array([1000.0, 0.0]), 0).data.tolist() == [0.0, -1000.0]
    assert ops.softmax(np.array([-1000.0, -1000.0]), 0).data.tolist() == [0.5, 0.5]
    x = Tensor(np.array([1000.0, 0.0]), requires_grad=True)
    (g,) = minicam.grad(ops.log_softmax(x, 0)[1], x)
    assert g.data.tolist() == [-1.0, 1.0]  # d/dx (x1 - logsumexp x) = e_1 - softmax(x) = [-1, 1]


def test_softmax_with_minus_infinity_matches_torch():
    x = np.array([[-np.inf, 0.0, 1.0], [2.0, -np.inf, -np.inf]])
    np.testing.assert_allclose(ops.softmax(x, 1).data, F.softmax(t64(x), 1).numpy(), rtol=1e-15, atol=0)
    np.testing.assert_allclose(ops.log_softmax(x, 1).data, F.log_softmax(t64(x), 1).numpy(), rtol=1e-15)
    assert ops.softmax(np.array(3.0), 0).item() == 1.0  # a single number, as torch


def test_softmax_float32_keeps_its_dtype():
    x = np.array([[0.5, -1.0, 2.0]], dtype=np.float32)
    assert ops.softmax(x, 1).dtype == np.float32
    assert ops.log_softmax(x, -1).dtype == np.float32


# ----------------------------------------------------------------------------
# cross_entropy
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_of_huge_logits_is_finite_and_matches_torch(reduction, label_smoothing):
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 5.0], [3.0, 2.0, 1.0]])
    target = np.array([2, 0, 1])
    x = Tensor(logits, requires_grad=True)
    loss = ops.cross_entropy(x, target, reduction=reduction, label_smoothing=label_smoothing)
    xt = t64(logits).requires_grad_()
    expected = F.cross_entropy(xt, torch.tensor(target), reduction=reduction, label_smoothing=label_smoothing)
    assert np.all(np.isfinite(loss.data))
    np.testing.assert_allclose(loss.data, expected.detach().numpy(), rtol=1e-14)
    v = np.arange(1.0, loss.numel() + 1).reshape(loss.shape)
    (g,) = minicam.grad(loss, x, Tensor(v))
    (gt,) = torch.autograd.grad(expected, xt, t64(v))
    np.testing.assert_allclose(g.data, gt.numpy(), rtol=1e-14, atol=1e-15)


def test_cross_entropy_ignores_minus_infinity_outside_the_target():
    """log p = -inf at a class that is not the target (or at an ignored sample) must not give nan."""
    logits = np.array([[-np.inf, 1.0, 2.0], [-np.inf, 0.0, 0.0]])
    target = np.array([1, -100])
    x = Tensor(logits, requires_grad=True)
    loss = ops.cross_entropy(x, target, reduction="none")
    expected = F.cross_entropy(t64(logits), torch.tensor(target), reduction="none").numpy()
    np.testing.assert_allclose(loss.data, expected, rtol=1e-15)
    (g,) = minicam.grad(ops.cross_entropy(x, target), x)
    xt = t64(logits).requires_grad_()
    (gt,) = torch.autograd.grad(F.cross_entropy(xt, torch.tensor(target)), xt)
    np.testing.assert_allclose(g.data, gt.numpy(), rtol=1e-15)


def test_cross_entropy_hand_value_and_torch_defaults():
    # one sample, logits [0, ln 3]: p = [1/4, 3/4]; target 1 -> -ln(3/4)
    assert ops.cross_entropy(np.array([[0.0, np.log(3.0)]]), [1]).item() == pytest.approx(-np.log(0.75), rel=1e-15)
    # a weighted mean is sum(w_y loss) / sum(w_y); then unbatched logits (C,) with a 0-d target
    logits, weight = np.array([[1.0, 2.0, 0.5], [0.1, 0.2, 0.3]]), np.array([1.0, 3.0, 0.5])
    got = ops.cross_entropy(logits, np.array([1, 2]), weight).item()
    by_hand = (3.0 * -ops.log_softmax(logits, 1).data[0, 1] + 0.5 * -ops.log_softmax(logits, 1).data[1, 2]) / 3.5
    assert got == pytest.approx(by_hand, rel=1e-14)
    assert ops.cross_entropy(np.array([1.0, 2.0, 3.0]), np.array(2)).item() == pytest.approx(
        F.cross_entropy(t64([1.0, 2.0, 3.0]), torch.tensor(2)).item(), rel=1e-15)


def test_cross_entropy_all_targets_ignored_gives_nan_like_torch():
    with np.errstate(invalid="ignore"):
        assert np.isnan(ops.cross_entropy(np.zeros((2, 3)), np.array([-100, -100])).item())
    assert torch.isnan(F.cross_entropy(torch.zeros(2, 3), torch.tensor([-100, -100])))


def test_cross_entropy_probability_targets_are_differentiable():
    rng = np.random.default_rng(0)
    logits, probs = rng.standard_normal((3, 4)), rng.dirichlet(np.ones(4), size=3)
    check_vjp(lambda x, t: ops.cross_entropy(x, t, label_smoothing=0.1), [logits, probs], rng)
    check_second_order(lambda x, t: ops.cross_entropy(x, t), [logits, probs], rng)


# ----------------------------------------------------------------------------
# batch_norm
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 2, 3)])
@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy buffers", "Tensor buffers"])
def test_batch_norm_running_statistics_follow_torch_over_several_steps(shape, as_tensor):
    rng = np.random.default_rng(1)
    channels = shape[1]
    mean0, var0 = rng.standard_normal(channels), rng.uniform(0.5, 2.0, channels)
    running_mean, running_var = mean0.copy(), var0.copy()
    buffers = (Tensor(running_mean), Tensor(running_var)) if as_tensor else (running_mean, running_var)
    torch_mean, torch_var = t64(mean0), t64(var0)
    weight, bias = rng.standard_normal(channels), rng.standard_normal(channels)
    for step, momentum in enumerate([0.1, 0.1, 0.5, 0.9]):
        x = rng.standard_normal(shape) * (1 + step) + step  # a new batch, moving statistics
        y = ops.batch_norm(x, *buffers, weight, bias, training=True, momentum=momentum)
        expected = F.batch_norm(t64(x), torch_mean, torch_var, t64(weight), t64(bias), training=True, momentum=momentum)
        np.testing.assert_allclose(y.data, expected.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(buffers[0].data if as_tensor else running_mean, torch_mean.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(buffers[1].data if as_tensor else running_var, torch_var.numpy(), rtol=1e-12, atol=1e-12)
    # the same arrays were updated in place (not replaced)
    assert (buffers[0].data if as_tensor else running_mean) is running_mean
    # eval mode then uses the accumulated statistics
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(ops.batch_norm(x, *buffers, weight, bias).data,
                               F.batch_norm(t64(x), torch_mean, torch_var, t64(weight), t64(bias)).numpy(), rtol=1e-12, atol=1e-12)


def test_batch_norm_running_variance_is_unbiased_by_hand():
    x = np.array([[1.0], [2.0], [6.0]])  # mean 3, biased var 14/3, unbiased var 7
    running_mean, running_var = np.zeros(1), np.ones(1)
    ops.batch_norm(x, running_mean, running_var, training=True, momentum=0.5)
    assert running_mean.tolist() == [1.5]  # 0.5 * 0 + 0.5 * 3
    assert running_var.tolist() == [4.0]  # 0.5 * 1 + 0.5 * 7


def test_batch_norm_with_two_values_per_channel_and_without_running_statistics():
    """Two values: y = +-d / sqrt(d^2 + eps) with d = (a - b)/2; torch allows None statistics in training."""
    x = np.array([[0.5], [-1.5]])
    d = 1.0
    np.testing.assert_allclose(ops.batch_norm(x, None, None, training=True).data[:, 0],
                               [d / np.sqrt(d * d + 1e-5), -d / np.sqrt(d * d + 1e-5)], rtol=1e-15)
    xm, xt = Tensor(x, requires_grad=True), t64(x).requires_grad_()
    v = np.array([[1.0], [0.25]])
    (g,) = minicam.grad(ops.batch_norm(xm, None, None, training=True), xm, Tensor(v))
    (gt,) = torch.autograd.grad(F.batch_norm(xt, None, None, training=True), xt, t64(v))
    np.testing.assert_allclose(g.data, gt.numpy(), rtol=1e-10)


def test_batch_norm_float32_updates_float32_buffers():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 2)).astype(np.float32)
    running_mean, running_var = np.zeros(2, np.float32), np.ones(2, np.float32)
    y = ops.batch_norm(x, running_mean, running_var, np.ones(2), np.zeros(2), training=True)
    assert y.dtype == np.float32 and running_mean.dtype == np.float32
    torch_mean, torch_var = torch.zeros(2), torch.ones(2)
    F.batch_norm(torch.tensor(x), torch_mean, torch_var, training=True)
    np.testing.assert_allclose(running_mean, torch_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(running_var, torch_var.numpy(), rtol=1e-6)


# ----------------------------------------------------------------------------
# dropout
# ----------------------------------------------------------------------------


def test_dropout_statistics():
    """Share of zeros ~ p and mean preserved (E[y] = x): bounds are 5 standard deviations."""
    n, p = 200_000, 0.3
    y = ops.dropout(np.ones(n), p, generator=np.random.default_rng(0)).data
    zeros = np.mean(y == 0)
    assert abs(zeros - p) < 5 * np.sqrt(p * (1 - p) / n)
    assert abs(y.mean() - 1.0) < 5 * np.sqrt(p / (1 - p) / n)
    assert np.all((y == 0) | (y == 1 / (1 - p)))  # kept units scaled by exactly 1/(1 - p)


def test_dropout_mask_is_a_constant_of_the_generator():
    x = Tensor(np.arange(1.0, 13.0).reshape(3, 4), requires_grad=True)
    y = ops.dropout(x, 0.5, generator=np.random.default_rng(7))
    keep = dropout_mask((3, 4), 0.5, np.random.default_rng(7))  # same seed, same mask
    np.testing.assert_array_equal(y.data, np.where(keep, x.data * 2.0, 0.0))
    (g,) = minicam.grad(y, x, Tensor(np.ones((3, 4))))
    np.testing.assert_array_equal(g.data, keep * 2.0)  # dx = g * mask / (1 - p)


def test_dropout_special_cases():
    x = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    assert ops.dropout(x, 0.5, training=False) is x
    assert ops.dropout(x, 0.0) is x
    zero = ops.dropout(x, 1.0)
    assert zero.data.tolist() == [0.0, 0.0, 0.0]
    assert minicam.grad(zero.sum(), x)[0].data.tolist() == [0.0, 0.0, 0.0]
    assert ops.dropout(np.ones(5, np.float32), 0.5, generator=np.random.default_rng(0)).dtype == np.float32


# ----------------------------------------------------------------------------
# interpolate
# ----------------------------------------------------------------------------

SQUARE = np.array([[[[0.0, 1.0], [2.0, 3.0]]]])  # x[i, j] = 2 i + j


@pytest.mark.parametrize("mode, align_corners, steps", [
    ("bilinear", False, [0.0, 0.25, 0.75, 1.0]),  # half-pixel centres, clamped at the border
    ("bilinear", True, [0.0, 1 / 3, 2 / 3, 1.0]),  # corner pixels aligned
    ("nearest", None, [0.0, 0.0, 1.0, 1.0]),
])
def test_interpolate_2x2_to_4x4_by_hand(mode, align_corners, steps):
    # x is linear, so the interpolation is 2 * steps[i] + steps[j]
    steps = np.array(steps)
    expected = 2 * steps[:, None] + steps[None, :]
    out = ops.interpolate(SQUARE, size=4, mode=mode, align_corners=align_corners).data[0, 0]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(out[0], steps, rtol=0, atol=1e-15)


def test_bicubic_weights_by_hand():
    """4 -> 2 half-pixel: sources 0.5 and 2.5, Keys weights at t = 1/2 are
    (-3/32, 19/32, 19/32, -3/32), border taps clamped (replicated)."""
    expected = np.array([[0.5, 19 / 32, -3 / 32, 0.0],  # taps -1, 0, 1, 2 -> 0, 0, 1, 2
                         [0.0, -3 / 32, 19 / 32, 0.5]])  # taps 1, 2, 3, 4 -> 1, 2, 3, 3
    np.testing.assert_allclose(interpolation_matrix(4, 2, "bicubic", False), expected, rtol=0, atol=1e-16)


@pytest.mark.parametrize("mode", MODES)
def test_interpolation_matrix_rows_sum_to_one(mode):
    for in_size in range(1, 7):
        for out_size in range(1, 9):
            for align_corners in ([False, True] if mode in ("bilinear", "bicubic") else [False]):
                matrix = interpolation_matrix(in_size, out_size, mode, align_corners)
                assert matrix.shape == (out_size, in_size)
                np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-14)  # four rounded weights


def test_interpolation_matrix_is_built_once_and_read_only():
    """The matrix is cached per arguments, so it must not be writable (a write would change every later resize)."""
    first, second = interpolation_matrix(7, 32, "bilinear"), interpolation_matrix(7, 32, "bilinear")
    assert first is second and not first.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first[0, 0] = 5.0
    assert interpolation_matrix(7, 32, "bilinear", True) is not first  # other arguments, another matrix
    np.testing.assert_allclose(first.sum(axis=1), np.ones(32), rtol=0, atol=1e-15)


def test_nearest_rounds_in_float32_like_torch():
    """26 -> 22: output 11 sits at 11 * 26/22 = 13 exactly, but torch computes
    11 * float32(26/22) = 12.99999... and takes pixel 12; so does minicam."""
    assert interpolation_matrix(26, 22, "nearest")[11].argmax() == 12
    x = np.arange(26.0).reshape(1, 1, 26, 1)
    np.testing.assert_array_equal(ops.interpolate(x, size=(22, 1)).data,
                                  F.interpolate(t64(x), size=(22, 1)).numpy())


def _geometries():
    for mode in MODES:
        for align_corners in ([False, True] if mode in ("bilinear", "bicubic") else [None]):
            for size in range(1, 8):
                yield mode, align_corners, {"size": (size, 3)}
            for scale in [0.5, 0.7, 1.0, 1.1, 4 / 3, 1.5, 2.0, 2.5]:
                for recompute in [None, True]:
                    yield mode, align_corners, {"scale_factor": (scale, 1.0), "recompute_scale_factor": recompute}


def test_interpolate_forward_matches_torch_on_a_grid_of_geometries():
    """Every mode, both alignments, sizes 1..7 from 1..6, scale factors with and without
    recompute: catches every special case of torch's index rules (about 1,500 resizes)."""
    rng = np.random.default_rng(3)
    for height in range(1, 7):
        x = rng.standard_normal((1, 1, height, 3))
        for mode, align_corners, geometry in _geometries():
            if "scale_factor" in geometry and int(height * geometry["scale_factor"][0]) < 1:
                continue
            got = ops.interpolate(x, mode=mode, align_corners=align_corners, **geometry).data
            expected = F.interpolate(t64(x), mode=mode, align_corners=align_corners, **geometry).numpy()
            np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-14, err_msg=f"{mode} {align_corners} {geometry} H={height}")


def test_bicubic_gradient_is_the_adjoint_of_the_forward_where_torch_backward_is_not():
    """With a scale_factor that leaves both sizes unchanged (2 * 1.3 -> 2), torch's bicubic
    forward resamples with ratio 1/1.3 but its backward copies the gradient (its own gradcheck
    fails there). minicam's gradient is M^T g, the adjoint of the forward torch computes."""
    x = np.array([[[[0.3, -1.2]]]])
    kwargs = dict(scale_factor=(1.0, 1.3), mode="bicubic", align_corners=False)
    # torch's forward Jacobian, column by column from the forward only (not from torch's backward)
    jacobian = np.stack([F.interpolate(t64(e.reshape(1, 1, 1, 2)), **kwargs).numpy().ravel() for e in np.eye(2)], axis=1)
    xm = Tensor(x, requires_grad=True)
    y = ops.interpolate(xm, **kwargs)
    np.testing.assert_allclose(y.data.ravel(), jacobian @ x.ravel(), rtol=1e-14)
    v = np.array([[[[1.0, 2.0]]]])
    (g,) = minicam.grad(y, xm, Tensor(v))
    np.testing.assert_allclose(g.data.ravel(), jacobian.T @ v.ravel(), rtol=1e-14)
    assert not np.allclose(g.data.ravel(), v.ravel())  # torch's copy would be wrong here
    check_vjp(lambda t: ops.interpolate(t, **kwargs), [x], np.random.default_rng(0))


# ----------------------------------------------------------------------------
# errors: say what was wrong and what to do
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("call, error, match", [
    (lambda: ops.softmax(np.zeros(3), None), TypeError, "dim is required"),
    (lambda: ops.log_softmax(np.zeros((2, 3)), 2), IndexError, "dim 2 is out of range"),
    (lambda: ops.softmax(np.zeros((2, 3)), (0, 1)), TypeError, "dim must be one int"),
    (lambda: ops.cross_entropy(np.zeros((2, 3)), [0, 3]), IndexError, r"target class 3 is out of range.*\[0, 2\]"),
    (lambda: ops.cross_entropy(np.zeros((2, 3)), [-1, 0]), IndexError, r"target class -1 .*\[0, 2\]"),
    (lambda: ops.cross_entropy(np.zeros((2, 3)), [0, 1, 2]), ValueError, r"shape \(2,\).*got shape \(3,\)"),
    (lambda: ops.cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0])), TypeError, "must be integers.*astype"),
    (lambda: ops.cross_entropy(np.zeros((2, 3)), Tensor([0, 1])), TypeError, "Tensor target holds floats"),
    (lambda: ops.cross_entropy(np.zeros((2, 3)), [0, 1], reduction="avg"), ValueError, "reduction 'avg'"),
    (lambda: ops.cross_entropy(np.zeros((2, 3)), [0, 1], label_smoothing=1.5), ValueError, r"label_smoothing must lie in \[0, 1\]"),
    (lambda: ops.cross_entropy(np.zeros((2, 3)), [0, 1], np.ones(2)), ValueError, r"weight must have shape \(3,\)"),
    (lambda: ops.cross_entropy(np.zeros(()), 0), ValueError, "0-d"),
    (lambda: ops.batch_norm(np.zeros(3), None, None), ValueError, r"\(N, C\)"),
    (lambda: ops.batch_norm(np.zeros((1, 3)), np.zeros(3), np.ones(3), training=True), ValueError, "more than 1 value per channel"),
    (lambda: ops.batch_norm(np.zeros((2, 3)), np.zeros(2), np.ones(3)), ValueError, r"running_mean must have shape \(3,\)"),
    (lambda: ops.batch_norm(np.zeros((2, 3)), None, None), ValueError, "required when training=False"),
    (lambda: ops.batch_norm(np.zeros((2, 3)), np.zeros(3), np.ones(3), np.ones(2)), ValueError, r"weight must have shape \(3,\)"),
    (lambda: ops.batch_norm(np.zeros((2, 3)), [0.0] * 3, [1.0] * 3, training=True), TypeError, "updated in place"),
    (lambda: ops.batch_norm(np.zeros((2, 3)), None, None, training=True, eps=0.0), ValueError, "eps must be positive"),
    (lambda: ops.dropout(np.zeros(3), 1.5), ValueError, r"p must lie in \[0, 1\], got 1.5"),
    (lambda: ops.dropout(np.zeros(3), -0.1), ValueError, r"p must lie in \[0, 1\]"),
    (lambda: ops.dropout(np.zeros(3), 0.5, generator=0), TypeError, "np.random.Generator"),
    (lambda: ops.dropout(np.zeros(3), 0.5, True, np.random.default_rng()), TypeError, "generator by keyword"),
    (lambda: ops.interpolate(np.zeros((1, 1, 2, 2)), size=3, scale_factor=2), ValueError, "only one of size or scale_factor"),
    (lambda: ops.interpolate(np.zeros((1, 1, 2, 2))), ValueError, "either size"),
    (lambda: ops.interpolate(np.zeros((1, 1, 2, 2)), size=3, align_corners=True), ValueError, "align_corners can only be set"),
    (lambda: ops.interpolate(np.zeros((1, 2, 2)), size=3), ValueError, r"4-D \(N, C, H, W\), got shape \(1, 2, 2\)"),
    (lambda: ops.interpolate(np.zeros((1, 1, 2, 2)), size=3, mode="linear"), ValueError,
     "unknown mode 'linear'; valid modes: nearest, nearest-exact, bilinear, bicubic, area"),
    (lambda: ops.interpolate(np.zeros((1, 1, 2, 2)), scale_factor=0.4), ValueError, "at least 1"),
    (lambda: ops.interpolate(np.zeros((1, 1, 2, 2)), size=(3, 2.5)), ValueError, "positive integers"),
    (lambda: ops.interpolate(np.zeros((1, 1, 2, 2)), size=(1, 2, 3)), ValueError, "a pair"),
    (lambda: ops.interpolate(np.zeros((1, 1, 2, 2)), size=3, recompute_scale_factor=True), ValueError, "not meaningful"),
    (lambda: interpolation_matrix(0, 3, "bilinear"), ValueError, "positive integers"),
])
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()
