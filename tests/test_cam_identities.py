"""Exact identities of the gradient-family CAM methods, drawn by hypothesis over small nets.

Every test here asserts NUMBERS that a wrong formula would break:

  GAP -> Linear head   ReLU(CAM) = Z * Grad-CAM = Z * HiResCAM (Z = h * w), and the mean
                       of the un-ReLU'd CAM is the logit minus the class bias;
  flatten -> Linear    the sum of HiResCAM's signed map is the logit minus the bias, and
                       Grad-CAM is NOT HiResCAM there (a measured difference);
  Grad-CAM++           the closed form on a GAP head, computed from the FC weights alone;
                       the authors' renormalisation; eq. 10 with true derivatives ("exact")
                       equals eq. 19 ("paper") for Y = exp(S) and differs for the softmax;
                       the diagonal derivatives against finite differences and torch;
  invariances          class bias shifts change no map; scaling a class row by s > 0
                       scales the maps (Grad-CAM++ by a derived, non-linear rule);
  batches              a batch gives the maps of its images one at a time;
  oracles              short torch versions of each formula on the torch twin;
  dtypes and scores    float32 within ~1e-5 of float64; score="exp" at a logit of 1000.

Tolerances: float64 identities at 1e-12 relative to the map's scale, torch oracles at
1e-10. Nets are tiny so the whole file runs in seconds.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cam_nets import flatten_net, gap_net, images, record, relu, torch_twin
from minicam.autograd import Tensor, grad
from minicam.cam import explain
from minicam.cam.cam import cam
from minicam.cam.capture import capture, class_scores
from minicam.cam.gradcampp import diagonal_derivatives, gradcampp
from minicam.cam.gradient import gradcam, gradcam_elementwise, gradcam_plus, hirescam, layercam, xgradcam
from torch_required import require_torch

EXACT = 1e-12   # identities that hold in exact arithmetic, float64
ORACLE = 1e-10  # minicam against torch, float64
FLOAT32 = 1e-5  # float32 against float64 on the same rounded weights and inputs

GRADIENT_METHODS = {
    "gradcam": gradcam,
    "gradcam+": gradcam_plus,
    "hirescam": hirescam,
    "gradcam-elementwise": gradcam_elementwise,
    "xgradcam": xgradcam,
    "layercam": layercam,
}


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def assert_close(actual, expected, rtol, scale=None, what=""):
    """max |actual - expected| <= rtol * scale, scale defaulting to max |expected|.

    Pass `scale` where the expected values may cancel to ~0 (a ReLU'd map of a
    dead image): then the size of the terms, not of their sum, sets the rounding.
    """
    dtype = np.asarray(actual).dtype
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if scale is None:
        scale = np.abs(expected).max()
    error = np.abs(actual - expected).max()
    record(what, dtype, error / scale if scale > 0 else 0.0)
    assert error <= rtol * scale, f"{what}: max error {error:.3e} > {rtol:.0e} * scale {scale:.3e}"
    return error / scale if scale > 0 else 0.0


def relative_difference(a, b):
    """max |a - b| / max |b|: how different two maps are."""
    return float(np.abs(a - b).max() / np.abs(b).max())


def term_scale(A, weights_abs):
    """max over images and positions of sum_k |w_k| |A_k|: the size of the terms of a channel sum."""
    return float(np.einsum("nk,nkhw->nhw", np.abs(weights_abs), np.abs(A)).max()) + 1e-300


def set_fc(model, weight=None, bias=None):
    """Replace the final Linear's weight and/or bias data (arrays of the same shape)."""
    if weight is not None:
        model.fc.weight.data = np.array(weight, dtype=model.fc.weight.data.dtype)
    if bias is not None:
        model.fc.bias.data = np.array(bias, dtype=model.fc.bias.data.dtype)


def gradient_at(model, x, layer, A_value, target, score):
    """dy/dA evaluated with the layer's output REPLACED by A_value (for finite differences)."""
    module = dict(model.named_modules())[layer]
    leaf = Tensor(A_value.copy(), requires_grad=True)
    handle = module.register_forward_hook(lambda mod, inputs, output: leaf)
    try:
        output = model(Tensor(x))
        y, _, _ = class_scores(output, target, score)
        (g,) = grad(y.sum(), leaf)
    finally:
        handle.remove()
    return g.data


def torch_split(twin, layer):
    """(below, above): the twin cut after `layer`, so above(below(x)) = twin(x)."""
    names = [name for name, _ in twin.named_children()]
    i = names.index(layer)
    return twin[: i + 1], twin[i + 1 :]


def torch_A_g(torch, twin, x, layer, targets, score="logit", create_graph=False):
    """A and dy/dA from torch on the twin, y the target logit (or probability)."""
    below, above = torch_split(twin, layer)
    A = below(torch.tensor(x)).detach().requires_grad_(True)
    out = above(A)
    if score == "softmax":
        out = torch.softmax(out, dim=1)
    y = out[torch.arange(len(targets)), torch.tensor(targets)]
    (g,) = torch.autograd.grad(y.sum(), A, create_graph=create_graph)
    return A, g


# ----------------------------------------------------------------------------
# Strategies: small nets, inputs and targets
# ----------------------------------------------------------------------------


@st.composite
def cases(draw, head="gap", max_batch=3, min_batch=1):
    """(model, x, targets) for a small gap_net or flatten_net with random sizes and weights."""
    seed = draw(st.integers(0, 2**32 - 1))
    in_channels = draw(st.integers(1, 3))
    hidden = draw(st.integers(2, 4))
    channels = draw(st.integers(2, 5))
    classes = draw(st.integers(2, 4))
    n = draw(st.integers(min_batch, max_batch))
    targets = draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n))
    rng = np.random.default_rng(seed)
    if head == "gap":
        size = draw(st.integers(3, 7))
        model = gap_net(rng, in_channels, hidden, channels, classes)
    else:
        size = draw(st.sampled_from([4, 6, 8]))
        model = flatten_net(rng, in_channels, size, hidden, channels, classes)
    x = images(rng, n, in_channels, size)
    return model, x, targets


def any_head(**kwargs):
    return st.one_of(cases("gap", **kwargs), cases("flatten", **kwargs))


# ----------------------------------------------------------------------------
# GAP -> Linear head: CAM = Z * Grad-CAM = Z * HiResCAM
# ----------------------------------------------------------------------------


@settings(max_examples=25)
@given(cases("gap"))
def test_gap_head_cam_is_hw_times_gradcam_and_hirescam(case):
    model, x, targets = case
    raw_cam = cam(model, x, "relu2", targets)
    A = capture(model, x, "relu2", targets).A
    Z = A.shape[2] * A.shape[3]
    scale = term_scale(A, model.fc.weight.data[targets])
    assert_close(relu(raw_cam), Z * gradcam(model, x, "relu2", targets), EXACT, scale, "GAP head: ReLU(CAM) vs Z*Grad-CAM")
    assert_close(relu(raw_cam), Z * hirescam(model, x, "relu2", targets), EXACT, scale, "GAP head: ReLU(CAM) vs Z*HiResCAM")
    assert_close(raw_cam, Z * gradcam(model, x, "relu2", targets, relu=False), EXACT, scale, "GAP head: CAM vs Z*Grad-CAM signed")
    assert_close(raw_cam, Z * hirescam(model, x, "relu2", targets, relu=False), EXACT, scale, "GAP head: CAM vs Z*HiResCAM signed")
    # XGrad-CAM's weights sum_ij (A / sum A) g are g itself when g is constant per channel
    assert_close(relu(raw_cam), Z * xgradcam(model, x, "relu2", targets), EXACT, scale, "GAP head: ReLU(CAM) vs Z*XGrad-CAM")


@settings(max_examples=25)
@given(cases("gap"))
def test_gap_head_cam_mean_is_logit_minus_bias(case):
    model, x, targets = case
    raw_cam = cam(model, x, "relu2", targets)
    logits = capture(model, x, "relu2", targets).output[np.arange(len(x)), targets]
    expected = logits - model.fc.bias.data[targets]
    A = capture(model, x, "relu2", targets).A
    scale = term_scale(A, model.fc.weight.data[targets])
    assert_close(raw_cam.mean(axis=(1, 2)), expected, EXACT, scale, "GAP head: mean CAM vs S - b")


# ----------------------------------------------------------------------------
# flatten -> Linear head: HiResCAM sums to the score minus the bias
# ----------------------------------------------------------------------------


@settings(max_examples=25)
@given(any_head(), st.sampled_from(["relu2", "conv2"]))
def test_hirescam_sums_to_logit_minus_bias(case, layer):
    """sum_ij sum_k g A = S - b whenever the head above A is positively homogeneous
    (ReLU, max-pool, mean, flatten, a Linear whose bias we subtract): Euler's identity.
    At conv2 the ReLU is part of the head: ReLU(a) = ReLU'(a) a keeps it exact."""
    model, x, targets = case
    signed = hirescam(model, x, layer, targets, relu=False)
    cap = capture(model, x, layer, targets)
    expected = cap.output[np.arange(len(x)), targets] - model.fc.bias.data[targets]
    scale = np.abs(cap.gradients().data * cap.A).sum(axis=(1, 2, 3)).max() + 1e-300
    assert_close(signed.sum(axis=(1, 2)), expected, EXACT, scale, "sum HiResCAM vs S - b")


def test_gradcam_and_hirescam_differ_on_a_flatten_head():
    """HiResCAM = Grad-CAM only when g is constant per channel; after flatten -> Linear
    it is not. The difference is large (measured: max |Grad-CAM - HiResCAM| = 1.0 x max HiResCAM)."""
    rng = np.random.default_rng(3)
    model = flatten_net(rng)
    x = images(rng, 2)
    g_cam = gradcam(model, x, "relu2", [0, 1])
    h_cam = hirescam(model, x, "relu2", [0, 1])
    difference = relative_difference(g_cam, h_cam)
    assert difference > 0.1, difference
    # ... whereas on a GAP head they coincide (the test above), here even their
    # rankings of positions differ:
    assert np.argmax(g_cam[0]) != np.argmax(h_cam[0]) or np.argmax(g_cam[1]) != np.argmax(h_cam[1])


# ----------------------------------------------------------------------------
# Grad-CAM++
# ----------------------------------------------------------------------------


@settings(max_examples=25)
@given(cases("gap"))
def test_gradcampp_closed_form_on_a_gap_head(case):
    """On a GAP head g_kij = W_ck / Z everywhere, so eq. 19 gives alpha = 1 / (2 + W_ck mean(A_k))
    and w_k = sum_ij alpha ReLU(g) = ReLU(W_ck) / (2 + W_ck mean(A_k)): from the FC row alone."""
    model, x, targets = case
    A = capture(model, x, "relu2", targets).A
    W = model.fc.weight.data[targets]  # (N, K)
    means = A.mean(axis=(2, 3))
    w = np.where(W > 0, W / (2 + W * means), 0.0)
    expected = relu(np.einsum("nk,nkhw->nhw", w, A))
    scale = term_scale(A, w)
    assert_close(gradcampp(model, x, "relu2", targets), expected, EXACT, scale, "GAP head: gradcam++ paper vs closed form from W")
    # The authors renormalise alpha to sum to 1 over the positions with g > 0: alpha is
    # constant here, so it becomes 1/Z and the weights are mean_ij ReLU(g) = ReLU(W_ck) / Z,
    # which is Grad-CAM+ exactly.
    Z = A.shape[2] * A.shape[3]
    authors = relu(np.einsum("nk,nkhw->nhw", relu(W) / Z, A))
    assert_close(gradcampp(model, x, "relu2", targets, variant="authors"), authors, EXACT, scale / Z, "GAP head: gradcam++ authors vs ReLU(W)/Z")
    assert_close(gradcam_plus(model, x, "relu2", targets), authors, EXACT, scale / Z, "GAP head: gradcam+ vs ReLU(W)/Z")


@settings(max_examples=25)
@given(any_head(), st.sampled_from(["relu2", "conv2"]))
def test_gradcampp_paper_and_authors_by_hand(case, layer):
    """eq. 19 (alpha = g^2 / (2 g^2 + sum(A) g^3)) and the authors' renormalisation,
    written out from the captured A and g, on any head."""
    model, x, targets = case
    cap = capture(model, x, layer, targets)
    A, g = cap.A, cap.gradients().data
    S = A.sum(axis=(2, 3), keepdims=True)
    positive = g > 0
    safe_g = np.where(positive, g, 1.0)
    denominator = 2 * safe_g**2 + S * safe_g**3  # the paper's form, not minicam's 1 / (2 + g S)
    alpha = np.where(positive & (denominator > 0), safe_g**2 / np.where(denominator > 0, denominator, 1), 0.0)
    w = np.sum(alpha * relu(g), axis=(2, 3))
    scale = term_scale(A, w)
    assert_close(gradcampp(model, x, layer, targets), relu(np.einsum("nk,nkhw->nhw", w, A)), EXACT, scale, "gradcam++ paper vs eq. 19 by hand")
    total = np.sum(np.where(positive, alpha, 0), axis=(2, 3), keepdims=True)
    alpha_authors = alpha / np.where(total != 0, total, 1)
    w_authors = np.sum(alpha_authors * relu(g), axis=(2, 3))
    assert_close(
        gradcampp(model, x, layer, targets, variant="authors"),
        relu(np.einsum("nk,nkhw->nhw", w_authors, A)), EXACT, term_scale(A, w_authors), "gradcam++ authors vs renormalised alpha by hand",
    )


@settings(max_examples=10)
@given(any_head(max_batch=2), st.sampled_from(["relu2", "conv2"]))
def test_gradcampp_exact_with_exp_score_equals_paper(case, layer):
    """For Y = exp(S) and a piecewise-linear S, eq. 10 with the true derivatives IS eq. 19."""
    model, x, targets = case
    exact = gradcampp(model, x, layer, targets, variant="exact", score="exp")
    paper = gradcampp(model, x, layer, targets, variant="paper")
    cap = capture(model, x, layer, targets)
    w = np.sum(relu(cap.gradients().data), axis=(2, 3)) / 2  # alpha <= 1/2 bounds the weights
    assert_close(exact, paper, EXACT, term_scale(cap.A, w), "gradcam++ exact(exp) vs paper")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_gradcampp_exact_equals_paper_at_poles(seed):
    """Signed activations (conv2, before its ReLU) and a large FC make 2 + g sum(A) <= 0 at
    some positions with g > 0: eq. 19's pole. Both variants must give alpha = 0 there.
    (Before the fix in alpha_general, "exact" kept the negative alpha: relative
    difference 1.20 for seed 0.)"""
    rng = np.random.default_rng(seed)
    model = flatten_net(rng)
    model.fc.weight.data = model.fc.weight.data * 200
    x = images(rng, 1) * 3
    cap = capture(model, x, "conv2", 0)
    A, g = cap.A, cap.gradients().data
    poles = (g > 0) & (2 + g * A.sum(axis=(2, 3), keepdims=True) <= 0)
    assert poles.sum() >= 4  # the case really has poles
    exact = gradcampp(model, x, "conv2", 0, variant="exact", score="exp")
    paper = gradcampp(model, x, "conv2", 0, variant="paper")
    assert np.abs(paper).max() > 0
    assert_close(exact, paper, EXACT, what="gradcam++ exact(exp) vs paper at poles")


def test_gradcampp_exact_with_softmax_differs_from_paper():
    """For Y = softmax, eq. 19's assumption d^nY/dA^n = Y g^n fails: eq. 10 with the
    true derivatives gives other weights. Measured: relative difference 0.61 (seed 1)."""
    rng = np.random.default_rng(1)
    model = gap_net(rng)
    model.fc.weight.data = model.fc.weight.data * 10  # a confident classifier: softmax far from linear
    x = images(rng, 2)
    exact = gradcampp(model, x, "relu2", [0, 2], variant="exact", score="softmax")
    paper = gradcampp(model, x, "relu2", [0, 2], variant="paper", score="softmax")
    difference = relative_difference(exact, paper)
    assert difference > 1e-3, difference


def _tiny_softmax_case(seed=5):
    """gap_net with K = 2 channels of 4 x 4 at relu2, a sharpened FC, one image."""
    rng = np.random.default_rng(seed)
    model = gap_net(rng, in_channels=2, hidden=3, channels=2, classes=3)
    model.fc.weight.data = model.fc.weight.data * 10
    x = images(rng, 1, 2, 4)
    return model, x


def test_diagonal_derivatives_against_finite_differences():
    """d2 and d3 at a few elements against central differences of the gradient g(A)
    (the layer's output replaced by A +- h e), score="softmax" so both are nonzero."""
    model, x = _tiny_softmax_case()
    A, g, d2, d3 = diagonal_derivatives(model, x, "relu2", 1, "softmax")
    assert np.abs(d2).max() > 1e-4 and np.abs(d3).max() > 1e-5  # the check is not vacuous
    assert_close(g, gradient_at(model, x, "relu2", A, 1, "softmax"), EXACT, what="diagonal d1 vs gradient")
    h = 1e-2
    rng = np.random.default_rng(0)
    for flat in rng.choice(A.size, size=6, replace=False):
        e = np.zeros(A.size)
        e[flat] = h
        e = e.reshape(A.shape)
        plus = gradient_at(model, x, "relu2", A + e, 1, "softmax").flat[flat]
        minus = gradient_at(model, x, "relu2", A - e, 1, "softmax").flat[flat]
        d2_fd = (plus - minus) / (2 * h)
        d3_fd = (plus - 2 * g.flat[flat] + minus) / h**2
        assert_close(d2.flat[flat], d2_fd, 1e-5, np.abs(d2).max(), "diagonal d2 vs finite differences")
        assert_close(d3.flat[flat], d3_fd, 1e-4, np.abs(d3).max(), "diagonal d3 vs finite differences")


def test_diagonal_derivatives_against_torch():
    """Every element of d1, d2, d3 against torch.autograd.grad(create_graph=True) on the
    twin, one element at a time (32 elements), for the softmax score; also with chunks
    smaller than the layer (chunk_size=5) so the chunking is exercised."""
    torch = require_torch()
    model, x = _tiny_softmax_case()
    twin = torch_twin(model)
    A_t, g_t = torch_A_g(torch, twin, x, "relu2", [1], "softmax", create_graph=True)
    flat_g = g_t.reshape(-1)
    d2_t, d3_t = np.zeros(A_t.numel()), np.zeros(A_t.numel())
    for e in range(A_t.numel()):
        (row2,) = torch.autograd.grad(flat_g[e], A_t, create_graph=True, retain_graph=True)
        second = row2.reshape(-1)[e]
        (row3,) = torch.autograd.grad(second, A_t, retain_graph=True)
        d2_t[e], d3_t[e] = second.item(), row3.reshape(-1)[e].item()
    for chunk in (512, 5):
        A, g, d2, d3 = diagonal_derivatives(model, x, "relu2", 1, "softmax", chunk_size=chunk)
        assert_close(A, A_t.detach().numpy(), ORACLE, what="diagonal A vs torch")
        assert_close(g, g_t.detach().numpy(), ORACLE, what="diagonal d1 vs torch")
        assert_close(d2.ravel(), d2_t, ORACLE, what="diagonal d2 vs torch")
        assert_close(d3.ravel(), d3_t, ORACLE, what="diagonal d3 vs torch")


# ----------------------------------------------------------------------------
# Invariances
# ----------------------------------------------------------------------------


def all_maps(model, x, layer, targets, with_cam):
    maps = {name: f(model, x, layer, targets) for name, f in GRADIENT_METHODS.items()}
    maps["gradcam-signed"] = gradcam(model, x, layer, targets, relu=False)
    maps["gradcam++ paper"] = gradcampp(model, x, layer, targets)
    maps["gradcam++ authors"] = gradcampp(model, x, layer, targets, variant="authors")
    if with_cam:
        maps["cam"] = cam(model, x, layer, targets)
    return maps


@settings(max_examples=20)
@given(any_head(), st.lists(st.floats(-5, 5), min_size=4, max_size=4))
def test_class_bias_shift_changes_no_map(case, shifts):
    model, x, targets = case
    with_cam = hasattr(model, "pool")
    before = all_maps(model, x, "relu2", targets, with_cam)
    classes = model.fc.bias.data.shape[0]
    set_fc(model, bias=model.fc.bias.data + np.array(shifts[:classes]))
    after = all_maps(model, x, "relu2", targets, with_cam)
    for name in before:
        assert_close(after[name], before[name], 1e-14, np.abs(before[name]).max() + 1e-300, f"bias shift: {name}")


@settings(max_examples=20)
@given(any_head(), st.floats(0.05, 20))
def test_scaling_the_class_row(case, s):
    """W_c -> s W_c (s > 0) gives g -> s g. Every map linear in g, or in ReLU(g), scales
    by s; minmax-normalised maps do not change. Grad-CAM++ (eq. 19) does NOT scale:
        w_k(s) = sum_ij s ReLU(g) / (2 + s g sum(A_k))
    (alpha depends on s), checked against that formula from the unscaled g."""
    model, x, targets = case
    with_cam = hasattr(model, "pool")
    before = all_maps(model, x, "relu2", targets, with_cam)
    cap = capture(model, x, "relu2", targets)
    A, g = cap.A, cap.gradients().data
    normalised_before = {m: explain(model, x, m, "relu2", targets) for m in ("gradcam", "hirescam", "layercam")}
    weight = model.fc.weight.data.copy()
    rows = sorted(set(targets))
    weight[rows] *= s
    set_fc(model, weight=weight)
    after = all_maps(model, x, "relu2", targets, with_cam)
    linear_in_g = [*GRADIENT_METHODS, "gradcam-signed"] + (["cam"] if with_cam else [])
    for name in linear_in_g:
        scale = s * np.abs(before[name]).max() + 1e-300
        assert_close(after[name], s * before[name], EXACT, scale, f"scaling W_c by s: {name}")
    # Grad-CAM++ paper: the derived rule
    S = A.sum(axis=(2, 3), keepdims=True)
    positive = g > 0
    alpha_s = np.where(positive, 1 / (2 + s * np.where(positive, g, 0) * S), 0.0)
    w_s = np.sum(alpha_s * relu(s * g), axis=(2, 3))
    assert_close(after["gradcam++ paper"], relu(np.einsum("nk,nkhw->nhw", w_s, A)), EXACT, term_scale(A, w_s),
                 "scaling W_c by s: gradcam++ paper vs derived rule")
    for method, maps in normalised_before.items():
        assert_close(explain(model, x, method, "relu2", targets), maps, 1e-10, 1.0, f"scaling W_c by s: normalised {method}")


def test_scaling_changes_the_normalised_gradcampp_map():
    """The consequence of the rule above: s changes the relative weights of channels
    (w_k = ReLU(s W_k) / (2 + s W_k mean A_k) on a GAP head), so even the normalised
    Grad-CAM++ map changes, while Grad-CAM's does not. Measured: 0.034 of the range for s = 100."""
    rng = np.random.default_rng(2)
    model = gap_net(rng)
    x = images(rng, 1)
    before = explain(model, x, "gradcam++", "relu2", 0)
    gradcam_before = explain(model, x, "gradcam", "relu2", 0)
    model.fc.weight.data = model.fc.weight.data * 100
    after = explain(model, x, "gradcam++", "relu2", 0)
    assert np.abs(after - before).max() > 1e-3, np.abs(after - before).max()
    assert_close(explain(model, x, "gradcam", "relu2", 0), gradcam_before, 1e-12, 1.0, "scaling W_c by 100: normalised gradcam")


# ----------------------------------------------------------------------------
# A batch is its images one at a time
# ----------------------------------------------------------------------------


BATCH_METHODS = {
    **GRADIENT_METHODS,
    "gradcam counterfactual": lambda m, x, l, t: gradcam(m, x, l, t, counterfactual=True),
    "gradcam++ paper": lambda m, x, l, t: gradcampp(m, x, l, t),
    "gradcam++ authors": lambda m, x, l, t: gradcampp(m, x, l, t, variant="authors"),
    "gradcam++ paper softmax": lambda m, x, l, t: gradcampp(m, x, l, t, score="softmax"),
    "gradcam softmax": lambda m, x, l, t: gradcam(m, x, l, t, score="softmax"),
    "gradcam exp": lambda m, x, l, t: gradcam(m, x, l, t, score="exp"),
}


@settings(max_examples=15)
@given(any_head(min_batch=2), st.sampled_from(["relu2", "conv2"]))
def test_batch_equals_one_image_at_a_time(case, layer):
    model, x, targets = case
    for name, f in BATCH_METHODS.items():
        batch = f(model, x, layer, targets)
        for i, c in enumerate(targets):
            single = f(model, x[i : i + 1], layer, c)
            assert_close(batch[i : i + 1], single, EXACT, np.abs(batch).max() + 1e-300, f"batch vs single: {name}")


@settings(max_examples=5)
@given(any_head(min_batch=2, max_batch=2))
def test_batch_equals_one_image_at_a_time_exact_variant(case):
    model, x, targets = case
    for score in ("exp", "softmax"):
        batch = gradcampp(model, x, "relu2", targets, variant="exact", score=score)
        for i, c in enumerate(targets):
            single = gradcampp(model, x[i : i + 1], "relu2", c, variant="exact", score=score)
            assert_close(batch[i : i + 1], single, EXACT, np.abs(batch).max() + 1e-300, f"batch vs single: gradcam++ exact {score}")


@settings(max_examples=10)
@given(any_head(min_batch=2))
def test_batch_equals_one_image_at_a_time_explain(case):
    model, x, targets = case
    for convention in ("minicam", "paper", "pytorch-grad-cam", "torchcam", "captum", "tf-keras-vis"):
        for method in ("gradcam", "gradcam++", "hirescam", "layercam"):
            batch = explain(model, x, method, "relu2", targets, convention=convention)
            for i, c in enumerate(targets):
                single = explain(model, x[i : i + 1], method, "relu2", c, convention=convention)
                rtol = 1e-6 if convention == "pytorch-grad-cam" else 1e-10  # float32 output
                assert_close(batch[i : i + 1], single, rtol, np.abs(batch).max() + 1e-300, f"batch vs single: explain {convention}")
    # target=None is the per-image argmax, also image by image
    batch = explain(model, x, "gradcam", "relu2")
    for i in range(len(x)):
        assert_close(batch[i : i + 1], explain(model, x[i : i + 1], "gradcam", "relu2"), 1e-10, 1.0, "argmax")


# ----------------------------------------------------------------------------
# Counterfactual Grad-CAM and Grad-CAM+
# ----------------------------------------------------------------------------


@settings(max_examples=25)
@given(any_head(), st.sampled_from(["relu2", "conv2"]))
def test_counterfactual_is_relu_of_minus_the_signed_map(case, layer):
    model, x, targets = case
    signed = gradcam(model, x, layer, targets, relu=False)
    counterfactual = gradcam(model, x, layer, targets, counterfactual=True)
    assert_close(counterfactual, relu(-signed), EXACT, np.abs(signed).max() + 1e-300, "counterfactual vs ReLU(-signed)")
    assert np.all(counterfactual * gradcam(model, x, layer, targets) == 0)  # disjoint supports


@settings(max_examples=25)
@given(any_head(), st.sampled_from(["relu2", "conv2"]))
def test_gradcam_plus_is_mean_relu_gradient_by_hand(case, layer):
    model, x, targets = case
    cap = capture(model, x, layer, targets)
    A, g = cap.A, cap.gradients().data
    w = relu(g).mean(axis=(2, 3))
    expected = relu(np.einsum("nk,nkhw->nhw", w, A))
    assert_close(gradcam_plus(model, x, layer, targets), expected, EXACT, term_scale(A, w), "gradcam+ vs mean ReLU(g) by hand")


# ----------------------------------------------------------------------------
# Torch oracles: each formula written out with torch.autograd.grad on the twin
# ----------------------------------------------------------------------------


def torch_oracles(torch, twin, x, layer, targets):
    """Each method's formula, written directly in torch on (A, g) from the twin."""
    A, g = torch_A_g(torch, twin, x, layer, targets)
    A, g = A.detach(), g.detach()
    total = A.sum(dim=(2, 3), keepdim=True)
    usable = total > 0  # minicam's documented rule: a channel with sum(A) <= 0 gets weight 0
    x_weights = torch.where(usable, (g * A).sum(dim=(2, 3), keepdim=True) / torch.where(usable, total, 1), 0)
    return {
        "gradcam": torch.relu((g.mean(dim=(2, 3), keepdim=True) * A).sum(1)),
        "gradcam+": torch.relu((torch.relu(g).mean(dim=(2, 3), keepdim=True) * A).sum(1)),
        "hirescam": torch.relu((g * A).sum(1)),
        "gradcam-elementwise": torch.relu(g * A).sum(1),
        "xgradcam": torch.relu((x_weights * A).sum(1)),
        "layercam": torch.relu((torch.relu(g) * A).sum(1)),
    }


@settings(max_examples=15)
@given(any_head(), st.sampled_from(["relu2", "conv2", "relu1"]))
def test_gradient_methods_against_torch_oracles(case, layer):
    torch = require_torch()
    model, x, targets = case
    oracles = torch_oracles(torch, torch_twin(model), x, layer, targets)
    for name, f in GRADIENT_METHODS.items():
        expected = oracles[name].numpy()
        assert_close(f(model, x, layer, targets), expected, ORACLE, np.abs(expected).max() + 1e-300, f"torch oracle: {name}")


def test_xgradcam_oracle_is_not_gradcam_on_a_flatten_head():
    """The torch oracle above is only worth something if the methods differ: measured
    relative differences between XGrad-CAM, Grad-CAM and LayerCAM on flatten_net."""
    rng = np.random.default_rng(4)
    model = flatten_net(rng)
    x = images(rng, 1)
    maps = {name: GRADIENT_METHODS[name](model, x, "relu2", 0) for name in ("gradcam", "xgradcam", "layercam")}
    assert relative_difference(maps["xgradcam"], maps["gradcam"]) > 1e-2
    assert relative_difference(maps["layercam"], maps["gradcam"]) > 1e-2


# ----------------------------------------------------------------------------
# float32, and the exp score at a huge logit
# ----------------------------------------------------------------------------


def float32_twins(head, seed):
    """(float64 model, float32 model, float64 x, float32 x) on the SAME float32-rounded numbers."""
    rng = np.random.default_rng(seed)
    model64 = gap_net(rng) if head == "gap" else flatten_net(rng)
    x32 = images(rng, 2).astype(np.float32)
    state32 = {k: np.asarray(v).astype(np.float32) for k, v in model64.state_dict().items()}
    model64.load_state_dict({k: v.astype(np.float64) for k, v in state32.items()})
    rng = np.random.default_rng(seed)
    model32 = gap_net(rng, dtype=np.float32) if head == "gap" else flatten_net(rng, dtype=np.float32)
    model32.load_state_dict(state32)
    return model64, model32, x32.astype(np.float64), x32


FLOAT_METHODS = {
    **GRADIENT_METHODS,
    "gradcam++ paper": lambda m, x, l, t: gradcampp(m, x, l, t),
    "gradcam++ authors": lambda m, x, l, t: gradcampp(m, x, l, t, variant="authors"),
    "gradcam++ exact exp": lambda m, x, l, t: gradcampp(m, x, l, t, variant="exact", score="exp"),
    "gradcam++ exact softmax": lambda m, x, l, t: gradcampp(m, x, l, t, variant="exact", score="softmax"),
}


@pytest.mark.parametrize("head", ["gap", "flatten"])
def test_float32_within_1e5_of_float64(head):
    model64, model32, x64, x32 = float32_twins(head, seed=6)
    targets = [0, 2]
    for name, f in FLOAT_METHODS.items():
        for layer in ("relu2", "conv2"):
            m32, m64 = f(model32, x32, layer, targets), f(model64, x64, layer, targets)
            assert m32.dtype == np.float32, f"{name} returned {m32.dtype} for a float32 model"
            assert_close(m32, m64, FLOAT32, np.abs(m64).max() + 1e-30, f"float32 vs float64: {name}")
    if head == "gap":
        assert_close(cam(model32, x32, "relu2", targets), cam(model64, x64, "relu2", targets), FLOAT32, what="float32 vs float64: cam")
    e32 = explain(model32, x32, "gradcam", "relu2", targets)
    assert e32.dtype == np.float32
    assert_close(e32, explain(model64, x64, "gradcam", "relu2", targets), FLOAT32, 1.0, "float32 vs float64: explain")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exp_score_at_a_logit_of_1000(dtype):
    """exp(1000) overflows even float64; capture uses exp(S - S0) with S0 = S held constant,
    a factor exp(S - S0) = 1 at the evaluation point, so the exp-score Grad-CAM and HiResCAM
    maps ARE the logit maps (to rounding), and finite."""
    rng = np.random.default_rng(7)
    model = gap_net(rng, dtype=dtype)
    x = images(rng, 2, dtype=dtype)
    logits = capture(model, x, "relu2", 1).output[:, 1]
    bias = model.fc.bias.data.copy()
    bias[1] += 1000 - logits.mean()
    set_fc(model, bias=bias)
    cap = capture(model, x, "relu2", 1, score="exp")
    assert np.all(np.abs(cap.output[:, 1] - 1000) < 1)
    assert_close(cap.log_scale, cap.output[:, 1], 0, 1.0, "S0 is the logit")
    assert_close(cap.scores.data, np.ones(2), 0, 1.0, "y = exp(S - S0) = 1")
    for f in (gradcam, hirescam, layercam, xgradcam):
        exp_map, logit_map = f(model, x, "relu2", 1, score="exp"), f(model, x, "relu2", 1)
        assert np.all(np.isfinite(exp_map)) and np.abs(exp_map).max() > 0
        assert_close(exp_map, logit_map, 1e-15 if dtype == np.float64 else 1e-7, np.abs(logit_map).max(), f"score exp vs logit at S = 1000: {f.__name__}")
    exact = gradcampp(model, x, "relu2", 1, variant="exact", score="exp")
    assert np.all(np.isfinite(exact)) and np.abs(exact).max() > 0
    rtol = EXACT if dtype == np.float64 else FLOAT32
    assert_close(exact, gradcampp(model, x, "relu2", 1), rtol, what="gradcam++ exact(exp) vs paper at S = 1000")
    e = explain(model, x, "gradcam++", "relu2", 1, score="exp", variant="exact")
    assert np.all(np.isfinite(e)) and e.max() == 1
