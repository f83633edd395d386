"""Score-CAM and Ablation-CAM: against torch versions of their formulas, against
torchcam's ScoreCAM, and against closed forms.

The torch oracles below are the papers' formulas written directly in torch on
the torch twin of each net (same weights, float64): masks with
torch.nn.functional.interpolate, ablations with a forward hook that returns a
modified copy of the layer's output. They share no code with minicam.
"""
import numpy as np
import pytest
from cam_nets import assert_close, classes_for, setup, torch_twin
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_required import require_torch

from minicam import nn
from minicam.autograd import Tensor, no_grad
from minicam.cam.ablation import ablation_weights, ablationcam
from minicam.cam.conventions import normalize_maps, resize_maps
from minicam.cam.explain import explain
from minicam.cam.scorecam import scorecam

torch = require_torch()
F = torch.nn.functional

# (net, layer): gap_net's layers are 8x8 like the input (masks need no resizing);
# flatten_net's pool1/relu2 are 4x4 (masks are upsampled); conv2 is signed.
CASES = [("gap", "relu2"), ("gap", "conv2"), ("flatten", "relu2"), ("flatten", "pool1")]


def torch_activations(twin, x, layer):
    seen = {}
    handle = dict(twin.named_modules())[layer].register_forward_hook(lambda m, i, o: seen.update(A=o))
    with torch.no_grad():
        twin(x)
    handle.remove()
    return seen["A"]


def torch_scores(twin, batch, classes, score):
    with torch.no_grad():
        out = twin(batch)
    if score == "softmax":
        out = torch.softmax(out, dim=1)
    return out[torch.arange(len(batch)), torch.as_tensor(classes)]


def torch_minmax(maps, eps):
    """Per map min-max over the last two axes; eps None: a constant map -> 0."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - low
    if eps is not None:
        return (maps - low) / (span + eps)
    return torch.where(span > 0, (maps - low) / torch.where(span > 0, span, 1.0), 0.0)


def torch_scorecam(twin, x, layer, classes, score="softmax", channel_softmax=True, baseline="zeros",
                   align_corners=False, normalize_first=False, eps=None):
    """Algorithm 1 of Wang et al. 2020: H_k = s(Up(A_k)), C_k = f(X H_k) - f(X_b), alpha = softmax(C)."""
    x = torch.as_tensor(x)
    A = torch_activations(twin, x, layer)
    up = lambda m: F.interpolate(m, size=x.shape[2:], mode="bilinear", align_corners=align_corners)
    H = up(torch_minmax(A, eps)) if normalize_first else torch_minmax(up(A), eps)
    n, k = A.shape[:2]
    C = torch.stack([torch_scores(twin, x[i : i + 1] * H[i][:, None], [classes[i]] * k, score) for i in range(n)])
    if baseline == "zeros":
        C = C - torch_scores(twin, torch.zeros_like(x), classes, score)[:, None]
    alpha = torch.softmax(C, dim=1) if channel_softmax else C
    return (alpha[:, :, None, None] * A).sum(dim=1).numpy()  # before the final ReLU


def torch_ablationcam(twin, x, layer, classes, score="logit", value=0.0):
    """w_k = (y - y_k) / |y| with y_k the score when channel k is set to `value`; ReLU(sum_k w_k A_k)."""
    x = torch.as_tensor(x)
    A = torch_activations(twin, x, layer)
    y = torch_scores(twin, x, classes, score)
    module = dict(twin.named_modules())[layer]
    n, k = A.shape[:2]
    y_k = torch.zeros(n, k, dtype=A.dtype)
    for i in range(n):
        for c in range(k):
            ablated = A[i : i + 1].clone()
            ablated[0, c] = value
            handle = module.register_forward_hook(lambda m, inp, out, ablated=ablated: ablated)
            y_k[i, c] = torch_scores(twin, x[i : i + 1], [classes[i]], score)[0]
            handle.remove()
    w = (y[:, None] - y_k) / y.abs()[:, None]
    return (w[:, :, None, None] * A).sum(dim=1).numpy()  # before the final ReLU


# ----------------------------------------------------------------------------
# Score-CAM
# ----------------------------------------------------------------------------

SCORECAM_OPTIONS = {  # name: (minicam options, torch oracle options)
    "paper": ({}, {}),
    "authors": ({"channel_softmax": False, "baseline": None}, {"channel_softmax": False, "baseline": None}),
    "no-softmax-baseline-logit": ({"score": "logit", "channel_softmax": False}, {"score": "logit", "channel_softmax": False}),
    "torchcam": ({"score": "logit", "normalize_masks": "before-upsample", "mask_eps": 1e-8},
                 {"score": "logit", "normalize_first": True, "eps": 1e-8}),
    "pytorch-grad-cam": ({"score": "logit", "baseline": None, "mask_interpolation": "bilinear-corners", "mask_eps": 1e-8},
                         {"score": "logit", "baseline": None, "align_corners": True, "eps": 1e-8}),
}


@pytest.mark.parametrize("net,layer", CASES)
@pytest.mark.parametrize("options", sorted(SCORECAM_OPTIONS))
@pytest.mark.parametrize("target", [None, 1, [2, 0, 1]])
def test_scorecam_matches_torch_formula(net, layer, options, target):
    model, x = setup(net)
    ours, theirs = SCORECAM_OPTIONS[options]
    classes = classes_for(model, x, target)
    expected = torch_scorecam(torch_twin(model), x, layer, classes, **theirs)
    assert np.abs(expected).max() > 0
    assert_close(scorecam(model, x, layer, target, batch_size=4, relu=False, **ours), expected)
    assert_close(scorecam(model, x, layer, target, batch_size=4, **ours), np.maximum(expected, 0))


@pytest.mark.parametrize("net,layer", [("gap", "relu2"), ("flatten", "relu2"), ("flatten", "pool1")])
def test_scorecam_matches_torchcam(net, layer):
    """torchcam 0.5.0 ScoreCAM, read in site-packages (methods/activation.py, core.py):
    1. a forward pass stores A (forward hook) and the input X (forward pre-hook);
    2. each channel is min-max normalised at the layer's resolution,
       (A - min) / (max - min + 1e-8)  (_normalize, eps 1e-8), then
       F.interpolate(bilinear, align_corners=False) to the input size;
    3. C_k = logit_c(mask_k * X) - logit_c(X)  (the model output: logits);
    4. w = softmax_k(C);  cam = ReLU(nansum_k w_k A_k);
    5. cam normalised per image: (cam - min) / (max - min + 1e-8).
    minicam with score="logit", normalize_masks="before-upsample", mask_eps=1e-8
    (its baseline cancels in the softmax, as torchcam's X does) gives step 4;
    step 5 is applied here with the same eps."""
    from torchcam.methods import ScoreCAM

    model, x = setup(net)
    twin = torch_twin(model)
    with ScoreCAM(twin, target_layer=layer, batch_size=4, input_shape=x.shape[1:]) as extractor:
        with torch.no_grad():
            out = twin(torch.as_tensor(x))
        classes = out.argmax(dim=1).tolist()
        (theirs,) = extractor(class_idx=classes)
    raw = scorecam(model, x, layer, np.array(classes), score="logit", normalize_masks="before-upsample", mask_eps=1e-8)
    assert theirs.max() > 0.5
    assert_close(normalize_maps(raw, "minmax", 1e-8), theirs.numpy())


def test_scorecam_baseline_cancels_in_the_channel_softmax():
    model, x = setup("flatten")
    with_baseline = scorecam(model, x, "relu2", baseline="zeros")
    without = scorecam(model, x, "relu2", baseline=None)
    assert_close(with_baseline, without, rtol=1e-13)
    # ... but not without the softmax
    assert not np.allclose(scorecam(model, x, "relu2", baseline="zeros", channel_softmax=False),
                           scorecam(model, x, "relu2", baseline=None, channel_softmax=False))


def test_scorecam_weights_are_score_increases_by_hand():
    """A net small enough to write Score-CAM out by hand: the input is one
    channel, the layer is the input itself (an identity conv), the head sums the
    pixels. Then C_k = sum(X * H_k) - 0, and with channel_softmax=False and
    logit score the map is C_k * A_k."""
    conv = nn.Conv2d(1, 1, 1, bias=False)
    conv.weight.data[...] = 1.0
    head = nn.Linear(4, 1, bias=False)
    head.weight.data[...] = 1.0
    model = nn.Sequential(conv, nn.Flatten(), head)
    x = np.array([[[[1.0, 2.0], [4.0, 3.0]]]])
    H = (x[0, 0] - 1) / 3  # min-max of the (not resized) channel
    C = np.sum(x[0, 0] * H)  # = 0 + 2/3 + 4 + 2 = 20/3
    assert C == pytest.approx(20 / 3)
    actual = scorecam(model, x, "0", score="logit", channel_softmax=False)
    assert_close(actual, C * x[:, 0], rtol=1e-14)


def test_scorecam_constant_channel_gives_zero_mask_and_no_nan():
    model, x = setup("gap")
    model.conv2.weight.data[0] = 0.0
    model.conv2.bias.data[0] = 0.7  # relu2's channel 0 is 0.7 everywhere
    A = torch_activations(torch_twin(model), torch.as_tensor(x), "relu2").numpy()
    assert np.all(A[:, 0] == 0.7)
    classes = classes_for(model, x, None)
    for options in ({}, {"channel_softmax": False, "score": "logit"}):
        actual = scorecam(model, x, "relu2", **options)
        assert np.all(np.isfinite(actual))
        torch_options = {"score": options.get("score", "softmax"), "channel_softmax": options.get("channel_softmax", True)}
        expected = torch_scorecam(torch_twin(model), x, "relu2", classes, **torch_options)
        assert_close(actual, np.maximum(expected, 0))
    # With the black baseline a constant channel's increase is exactly 0: its weight without the softmax is 0.
    only_channel_0 = scorecam(model, x, "relu2", channel_softmax=False, relu=False) - _scorecam_without_channel_0(model, x)
    assert_close(only_channel_0, np.zeros_like(only_channel_0), rtol=1e-13)


def _scorecam_without_channel_0(model, x):
    classes = classes_for(model, x, None)
    twin = torch_twin(model)
    xt = torch.as_tensor(x)
    A = torch_activations(twin, xt, "relu2")
    H = torch_minmax(A, None)
    C = torch.stack([torch_scores(twin, xt[i : i + 1] * H[i][:, None], [classes[i]] * A.shape[1], "softmax")
                     for i in range(len(x))])
    C = C - torch_scores(twin, torch.zeros_like(xt), classes, "softmax")[:, None]
    return (C[:, 1:, None, None] * A[:, 1:]).sum(dim=1).numpy()


def test_scorecam_all_channels_constant_gives_a_finite_map():
    model, x = setup("gap")
    model.conv2.weight.data[...] = 0.0
    actual = scorecam(model, x, "relu2")
    assert np.all(np.isfinite(actual))


# ----------------------------------------------------------------------------
# Ablation-CAM
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("net,layer", CASES)
@pytest.mark.parametrize("target", [None, 0, [2, 0, 1]])
@pytest.mark.parametrize("score,value", [("logit", 0.0), ("softmax", 0.0), ("logit", -0.5)])
def test_ablationcam_matches_torch_formula(net, layer, target, score, value):
    model, x = setup(net)
    classes = classes_for(model, x, target)
    expected = torch_ablationcam(torch_twin(model), x, layer, classes, score, value)
    assert np.abs(expected).max() > 0
    options = {"score": score, "ablation_value": value, "batch_size": 2}
    assert_close(ablationcam(model, x, layer, target, relu=False, **options), expected)
    assert_close(ablationcam(model, x, layer, target, **options), np.maximum(expected, 0))


@pytest.mark.parametrize("value", [0.0, 0.25])
def test_ablationcam_on_a_gap_head_has_a_closed_form(value):
    """On relu2 -> GAP -> Linear, ablating channel k changes only its pooled
    value, mean(A_k) -> value, so y - y_k = W_ck (mean(A_k) - value) exactly."""
    model, x = setup("gap")
    model.fc.bias.data[2] = -5.0  # class 2's logit is negative: the |y| rule is exercised
    A = torch_activations(torch_twin(model), torch.as_tensor(x), "relu2").numpy()
    with no_grad():
        logits = model(Tensor(x)).data
    for target in range(3):
        y = logits[:, target]
        drop = model.fc.weight.data[target] * (A.mean(axis=(2, 3)) - value)  # (N, K)
        w = drop / np.abs(y)[:, None]
        expected = np.maximum(np.einsum("nk,nkhw->nhw", w, A), 0)
        assert_close(ablationcam(model, x, "relu2", target, ablation_value=value), expected, rtol=1e-12)
    assert np.all(logits[:, 2] < 0)


def test_ablation_weights_rule_for_non_positive_scores():
    y = np.array([2.0, -2.0, 0.0, 1e-20])
    y_ablated = np.array([[1.0, 3.0], [-3.0, -1.0], [-0.5, 0.5], [-1e-20, 3e-20]])
    expected = np.array([
        [0.5, -0.5],      # (2 - 1) / 2, (2 - 3) / 2
        [0.5, -0.5],      # (-2 - -3) / |-2| > 0: ablating lowered the score
        [0.5, -0.5],      # y = 0: the drops themselves
        [2e-20, -2e-20],  # |y| < eps: the drops themselves
    ])
    assert_close(ablation_weights(y, y_ablated), expected, rtol=1e-15)
    # dividing by y itself (pytorch-grad-cam) would flip the second row's signs
    assert np.all(np.sign((y[1] - y_ablated[1]) / y[1]) == -np.sign(expected[1]))


def test_ablationcam_zero_score_gives_no_nan():
    model, x = setup("gap")
    model.fc.weight.data[1] = 0.0
    model.fc.bias.data[1] = 0.0  # y = y_k = 0 for class 1
    actual = ablationcam(model, x, "relu2", 1)
    assert np.array_equal(actual, np.zeros_like(actual))


# ----------------------------------------------------------------------------
# Both: batches, dtypes, the model left as it was, bad input
# ----------------------------------------------------------------------------

METHODS = {"scorecam": scorecam, "ablationcam": ablationcam}


@settings(max_examples=5)
@given(seed=st.integers(0, 2**16), batch_size=st.integers(1, 7))
def test_batch_size_does_not_change_the_maps(seed, batch_size):
    model, x = setup("flatten", seed=seed, n=2)
    for f in METHODS.values():
        assert_close(f(model, x, "relu2", batch_size=batch_size), f(model, x, "relu2", batch_size=32), rtol=1e-13)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_bad_options_raise_clear_errors(method):
    model, x = setup("gap")
    f = METHODS[method]
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        f(model, x, "relu2", batch_size=0)
    with pytest.raises(ValueError, match="score='exp'|not 'exp'"):
        f(model, x, "relu2", score="exp")
    assert all(len(m.forward_hooks) == 0 for m in model.modules())


def test_scorecam_bad_options_raise():
    model, x = setup("gap")
    with pytest.raises(ValueError, match="mask_interpolation"):
        scorecam(model, x, "relu2", mask_interpolation="cubic")
    with pytest.raises(ValueError, match="normalize_masks"):
        scorecam(model, x, "relu2", normalize_masks="never")
    with pytest.raises(ValueError, match="baseline"):
        scorecam(model, x, "relu2", baseline="blur")


def test_ablationcam_rejects_a_non_finite_ablation_value():
    model, x = setup("gap")
    with pytest.raises(ValueError, match="ablation_value"):
        ablationcam(model, x, "relu2", ablation_value=np.inf)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_explain_upsamples_the_raw_map(method):
    """explain() calls the method with relu=False and applies the ReLU itself."""
    model, x = setup("flatten")
    raw = METHODS[method](model, x, "relu2", relu=False)
    expected = resize_maps(np.maximum(raw, 0), (8, 8), "bilinear")
    assert_close(explain(model, x, method, "relu2", convention="paper"), expected, rtol=1e-13)
