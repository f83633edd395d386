"""Eigen-CAM, EigenGrad-CAM, guided backpropagation and Guided Grad-CAM: against
torch versions of their formulas, against captum, and against closed forms.

The torch oracles share no code with minicam: torch.linalg.svd for the
projections, torch.autograd.grad for the gradients, and a torch.autograd.Function
swapped in for every torch ReLU module for guided backpropagation.
"""
from collections import OrderedDict

import numpy as np
import pytest
from cam_nets import NETS, assert_close, classes_for, images, setup, torch_twin
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_required import require_torch

from minicam import nn
from minicam.autograd import Tensor, grad
from minicam.cam.eigen import eigencam, eigengradcam, first_component_map, orient
from minicam.cam.explain import explain
from minicam.cam.guided import guided_backprop, guided_gradcam, guided_gradients

torch = require_torch()
F = torch.nn.functional

CASES = [("gap", "relu2"), ("gap", "conv2"), ("flatten", "relu2"), ("flatten", "pool1")]


def no_hooks_left(model):
    return all(len(m.forward_hooks) == 0 for m in model.modules())


# ----------------------------------------------------------------------------
# torch oracles
# ----------------------------------------------------------------------------


def torch_activations_and_gradients(twin, x, layer, classes):
    """A and dy/dA (y the logit of each image's class), with torch.autograd.grad."""
    seen = {}
    handle = dict(twin.named_modules())[layer].register_forward_hook(lambda m, i, o: seen.update(A=o))
    out = twin(torch.as_tensor(x))
    handle.remove()
    y = out[torch.arange(len(x)), torch.as_tensor(classes)]
    (g,) = torch.autograd.grad(y.sum(), seen["A"])
    return seen["A"].detach(), g


def torch_eigen_projection(maps, center):
    """Per image: O = maps.reshape(K, hw).T (centred or not), O @ v_1 with v_1 the eigenvector
    of O^T O of the largest eigenvalue (torch.linalg.eigh: the first right singular vector,
    found another way), with minicam's documented sign: sum > 0 (uncentred, unless the sum is
    zero up to rounding), else the largest-magnitude element > 0."""
    out = []
    for a in maps:
        k, h, w = a.shape
        columns = a.reshape(k, h * w).T
        O = columns - columns.mean(dim=0) if center else columns
        _, eigenvectors = torch.linalg.eigh(O.T @ O)  # eigenvalues in ascending order
        p = O @ eigenvectors[:, -1]
        total = p.sum()
        if not center and total.abs() > np.sqrt(np.finfo(np.float64).eps) * p.abs().sum():
            sign = torch.sign(total)
        else:
            sign = 1.0 if p[p.abs().argmax()] >= 0 else -1.0
        out.append((sign * p).reshape(h, w))
    return torch.stack(out).numpy()


class TorchGuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x > 0) * (g > 0)


def torch_guided_gradients(twin, x, classes):
    """Guided backpropagation on the torch twin: every ReLU module's output is
    replaced (forward hook) by TorchGuidedReLU of its input."""
    relus = [m for m in twin.modules() if isinstance(m, torch.nn.ReLU)]
    handles = [m.register_forward_hook(lambda m, i, o: TorchGuidedReLU.apply(i[0])) for m in relus]
    image = torch.tensor(x, requires_grad=True)
    out = twin(image)
    for handle in handles:
        handle.remove()
    (g,) = torch.autograd.grad(out[torch.arange(len(x)), torch.as_tensor(classes)].sum(), image)
    return g.numpy()


def torch_gradcam_upsampled(twin, x, layer, classes):
    """Grad-CAM (eq. 1-2 of Selvaraju et al.), bilinearly upsampled with half-pixel centres."""
    A, g = torch_activations_and_gradients(twin, x, layer, classes)
    L = torch.relu((g.mean(dim=(2, 3), keepdim=True) * A).sum(dim=1, keepdim=True))
    return F.interpolate(L, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0].numpy()


# ----------------------------------------------------------------------------
# Eigen-CAM and EigenGrad-CAM
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("net,layer", CASES)
@pytest.mark.parametrize("center", [False, True])
def test_eigencam_matches_torch_svd(net, layer, center):
    model, x = setup(net)
    A, _ = torch_activations_and_gradients(torch_twin(model), x, layer, classes_for(model, x, None))
    expected = torch_eigen_projection(A, center)
    actual = eigencam(model, x, layer, center=center)
    assert np.abs(expected).max() > 0
    assert_close(actual, expected)


@pytest.mark.parametrize("net,layer", CASES)
@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("target", [None, 1, [2, 0, 1]])
def test_eigengradcam_matches_torch_svd_of_g_times_A(net, layer, center, target):
    model, x = setup(net)
    classes = classes_for(model, x, target)
    A, g = torch_activations_and_gradients(torch_twin(model), x, layer, classes)
    expected = torch_eigen_projection(g * A, center)
    actual = eigengradcam(model, x, layer, target, center=center)
    assert np.abs(expected).max() > 0
    assert_close(actual, expected)


def test_eigencam_ignores_the_target():
    model, x = setup("gap")
    assert np.array_equal(eigencam(model, x, "relu2", 0), eigencam(model, x, "relu2", [2, 1, 0]))


def rank_one_model(v):
    """x (N, 1, h, w) -> A_k = v_k x: a 1x1 convolution without bias, so A = u v^T per image."""
    conv = nn.Conv2d(1, len(v), 1, bias=False)
    conv.weight.data[...] = np.asarray(v, dtype=np.float64).reshape(-1, 1, 1, 1)
    return nn.Sequential(OrderedDict([("conv", conv), ("flatten", nn.Flatten()), ("fc", nn.Linear(len(v) * 16, 2))]))


@pytest.mark.parametrize("u,sign", [
    ([[1, 2, -1, 0], [3, 0, 0, 1], [0, -2, 1, 1], [2, 0, 1, 0]], +1),      # sum 9 > 0: +u |v|
    ([[-1, -2, 1, 0], [-3, 0, 0, -1], [0, 2, -1, -1], [-2, 0, -1, 0]], -1),  # sum -9 < 0: -u |v|
    ([[1, 2, -1, 0], [3, 0, 0, 1], [0, -5, 1, 1], [-2, 0, -1, 0]], -1),     # sum 0: the largest |u| is -5
])
def test_eigencam_of_a_rank_one_layer_is_u_times_norm_v(u, sign):
    v = np.array([0.5, -1.0, 2.0])
    u = np.array(u, dtype=np.float64)
    model = rank_one_model(v)
    expected = sign * u * np.linalg.norm(v)
    assert_close(eigencam(model, u[None, None], "conv")[0], expected, rtol=1e-13)
    # centred: the projection of (u - mean(u)) v^T, its largest-magnitude element positive
    centred = (u - u.mean()) * np.linalg.norm(v)
    centred = centred if centred.flat[np.argmax(np.abs(centred))] > 0 else -centred
    assert_close(eigencam(model, u[None, None], "conv", center=True)[0], centred, rtol=1e-13)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16), center=st.booleans(), zero_sum=st.booleans())
def test_orient_does_not_depend_on_the_singular_vector_sign(seed, center, zero_sum):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(20)
    if zero_sum:
        p -= p.mean()
    assert np.array_equal(orient(p, by_sum=not center), orient(-p, by_sum=not center))
    oriented = orient(p, by_sum=not center)
    assert np.array_equal(np.abs(oriented), np.abs(p))


@pytest.mark.parametrize("center", [False, True])
def test_flipping_the_svd_sign_cannot_change_the_map(monkeypatch, center):
    model, x = setup("flatten")
    before = eigencam(model, x, "relu2", center=center), eigengradcam(model, x, "relu2", center=center)
    svd = np.linalg.svd

    def flipped_svd(a, *args, **kwargs):
        U, S, Vt = svd(a, *args, **kwargs)
        U, Vt = U.copy(), Vt.copy()
        U[:, 0], Vt[0] = -U[:, 0], -Vt[0]
        return U, S, Vt

    monkeypatch.setattr(np.linalg, "svd", flipped_svd)
    after = eigencam(model, x, "relu2", center=center), eigengradcam(model, x, "relu2", center=center)
    assert np.array_equal(before[0], after[0]) and np.array_equal(before[1], after[1])


def test_eigencam_of_constant_layers_has_no_nan():
    model, x = setup("gap")
    model.conv2.weight.data[...] = 0.0
    model.conv2.bias.data[...] = np.array([0.5, 0.0, 1.0, 0.0, 2.0])  # relu2 is constant per channel
    c = np.array([0.5, 0.0, 1.0, 0.0, 2.0])
    # uncentred: every row of O is c, so O v_1 = |c| everywhere
    assert_close(eigencam(model, x, "relu2"), np.full((3, 8, 8), np.linalg.norm(c)), rtol=1e-13)
    # centred: O = 0, so the map is 0, not NaN
    assert np.array_equal(eigencam(model, x, "relu2", center=True), np.zeros((3, 8, 8)))
    model.conv2.bias.data[...] = 0.0
    assert np.array_equal(eigencam(model, x, "relu2"), np.zeros((3, 8, 8)))


# ----------------------------------------------------------------------------
# Guided backpropagation and Guided Grad-CAM
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("target", [None, 0, [2, 0, 1]])
def test_guided_gradients_match_torch_and_captum(net, target):
    from captum.attr import GuidedBackprop

    model, x = setup(net)
    classes = classes_for(model, x, target)
    twin = torch_twin(model)
    expected = torch_guided_gradients(twin, x, classes)
    actual = guided_gradients(model, x, target)
    assert np.abs(expected).max() > 0
    assert_close(actual, expected)
    captum = GuidedBackprop(twin).attribute(torch.tensor(x), target=torch.as_tensor(classes)).detach().numpy()
    assert_close(actual, captum)
    assert_close(guided_backprop(model, x, None, target), np.abs(expected).max(axis=1))
    assert_close(guided_backprop(model, x, None, target, channel_reduction="sum"), expected.sum(axis=1))


@pytest.mark.parametrize("net,layer", [("gap", "relu2"), ("flatten", "relu2"), ("flatten", "pool1")])
@pytest.mark.parametrize("target", [None, [2, 0, 1]])
def test_guided_gradcam_matches_torch_and_captum(net, layer, target):
    """Ours: guided * minmax(Up(L)). captum's GuidedGradCam with interpolate_mode="bilinear"
    gives guided * Up(L) (no normalisation), so ours * (max - min) + min * guided = captum."""
    from captum.attr import GuidedGradCam

    model, x = setup(net)
    classes = classes_for(model, x, target)
    twin = torch_twin(model)
    guided = torch_guided_gradients(twin, x, classes)
    up = torch_gradcam_upsampled(twin, x, layer, classes)
    low, high = up.min(axis=(1, 2), keepdims=True), up.max(axis=(1, 2), keepdims=True)
    fused = guided * ((up - low) / (high - low))[:, None]
    assert np.all(high > low)
    assert_close(guided_gradcam(model, x, layer, target, channel_reduction="sum"), fused.sum(axis=1))
    assert_close(guided_gradcam(model, x, layer, target), np.abs(fused).max(axis=1))

    captum = GuidedGradCam(twin, dict(twin.named_modules())[layer]).attribute(
        torch.tensor(x), target=torch.as_tensor(classes), interpolate_mode="bilinear"
    ).detach().numpy()
    ours = guided_gradcam(model, x, layer, target, channel_reduction="sum")
    assert_close(ours * (high - low) + low * guided.sum(axis=1), captum.sum(axis=1))


def test_guided_backprop_equals_the_plain_gradient_when_no_gradient_is_negative():
    """gap_net with conv2 and fc weights made positive: the gradient reaching each
    ReLU from above is >= 0, so guided backpropagation changes nothing."""
    model, x = setup("gap")
    model.conv2.weight.data[...] = np.abs(model.conv2.weight.data)
    model.fc.weight.data[...] = np.abs(model.fc.weight.data)
    image = Tensor(x, requires_grad=True)
    out = model(image)
    classes = out.data.argmax(axis=1)
    (plain,) = grad(out[np.arange(len(x)), classes].sum(), image)
    assert np.abs(plain.data).max() > 0
    assert_close(guided_gradients(model, x), plain.data, rtol=1e-14)
    # ... and on the original net, where negative gradients exist, it does change something
    model, x = setup("gap")
    image = Tensor(x, requires_grad=True)
    out = model(image)
    (plain,) = grad(out[np.arange(len(x)), out.data.argmax(axis=1)].sum(), image)
    assert not np.allclose(guided_gradients(model, x), plain.data)


def test_guided_backprop_ignores_the_layer():
    model, x = setup("flatten")
    assert np.array_equal(guided_backprop(model, x, "relu2"), guided_backprop(model, x))


def test_guided_backprop_needs_a_relu_module():
    model = nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(3, 2, 3, padding=1, rng=np.random.default_rng(0))),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(2 * 64, 3, rng=np.random.default_rng(1))),
    ]))
    x = images(np.random.default_rng(2), 2)
    with pytest.raises(ValueError, match="has none"):
        guided_gradients(model, x)
    with pytest.raises(ValueError, match="has none"):
        guided_gradcam(model, x, "conv")


def test_guided_channel_reduction_none_points_to_guided_gradients():
    model, x = setup("gap")
    with pytest.raises(ValueError, match="guided_gradients"):
        guided_backprop(model, x, channel_reduction="none")
    with pytest.raises(ValueError, match="guided_gradients"):
        guided_gradcam(model, x, "relu2", channel_reduction="none")
    with pytest.raises(ValueError, match="unknown channel_reduction"):
        guided_gradcam(model, x, "relu2", channel_reduction="mean")


# ----------------------------------------------------------------------------
# All four: batches, dtypes, the model left as it was, bad input
# ----------------------------------------------------------------------------

METHODS = {
    "eigencam": eigencam,
    "eigengradcam": eigengradcam,
    "guided-backprop": guided_backprop,
    "guided-gradcam": guided_gradcam,
}


def test_hooks_are_removed_when_the_guided_pass_fails():
    model, x = setup("gap")
    with pytest.raises(ValueError, match="out of range"):
        guided_gradients(model, x, 7)
    assert no_hooks_left(model)


def test_first_component_map_keeps_float32():
    a = np.random.default_rng(0).random((4, 3, 3)).astype(np.float32)
    assert first_component_map(a).dtype == np.float32


@pytest.mark.parametrize("method", sorted(METHODS))
def test_explain_runs_every_method_with_its_signature(method):
    model, x = setup("flatten")
    raw = METHODS[method](model, x, "relu2")
    from minicam.cam.conventions import resize_maps

    expected = resize_maps(raw, (8, 8), "bilinear")  # no final ReLU for these four
    assert_close(explain(model, x, method, "relu2", convention="paper"), expected, rtol=1e-13)
