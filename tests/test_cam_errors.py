"""Errors that say what went wrong and what to do, and a model left exactly as it was.

Each error test checks the exception type AND the parts of the message a user needs
(the valid names, the class and the range, the expected shape...). After every call,
successful or not, the model must have no hooks left and every module's train/eval flag
as before (capture runs in eval mode, so batch-norm layers neither mix images nor update
their running statistics).
"""
from collections import OrderedDict

import numpy as np
import pytest

from cam_nets import bn_net, flatten_net, gap_net, images
from minicam import nn
from minicam.autograd import Tensor
from minicam.cam import capture, explain
from minicam.cam.cam import cam
from minicam.cam.gradcampp import diagonal_derivatives, gradcampp, smoothgradcampp
from minicam.cam.gradient import gradcam, gradcam_elementwise, gradcam_plus, hirescam, layercam, xgradcam
from minicam.errors import NonFiniteError


@pytest.fixture
def net():
    rng = np.random.default_rng(0)
    return gap_net(rng), images(rng, 2)


def hooks_left(model):
    return sum(len(m.forward_hooks) for m in model.modules())


def flags(model):
    return [(name, m.training) for name, m in model.named_modules()]


# ----------------------------------------------------------------------------
# Layer names
# ----------------------------------------------------------------------------


def test_unknown_layer_lists_the_valid_names(net):
    model, x = net
    with pytest.raises(KeyError) as info:
        gradcam(model, x, "conv3")
    message = str(info.value)
    assert "'conv3'" in message
    for name in ("conv1", "relu1", "conv2", "relu2", "pool", "flatten", "fc"):
        assert f"'{name}'" in message
    for f in (cam, hirescam, gradcampp, lambda *a: explain(*a[:2], "gradcam", a[2])):
        with pytest.raises(KeyError, match="valid names"):
            f(model, x, "layer4")
    with pytest.raises(KeyError, match="valid names"):
        gradcam(model, x, "")  # the root module is not a layer


def test_layer_without_feature_maps(net):
    model, x = net
    for layer in ("fc", "flatten"):
        with pytest.raises(ValueError, match=rf"'{layer}' outputs shape \(2, \d+\).*\(N, K, h, w\)"):
            gradcam(model, x, layer)


class WithSpareLayer(nn.Module):
    """A model holding a layer that its forward never calls."""

    def __init__(self, rng):
        super().__init__()
        self.body = gap_net(rng)
        self.spare = nn.ReLU()

    def forward(self, x):
        return self.body(x)


def test_layer_that_is_never_called():
    rng = np.random.default_rng(0)
    model = WithSpareLayer(rng)
    with pytest.raises(RuntimeError, match="'spare' was not called"):
        gradcam(model, images(rng, 1), "spare")
    assert hooks_left(model) == 0
    np.testing.assert_array_equal(gradcam(model, images(rng, 1), "body.relu2", 0).shape, (1, 8, 8))


# ----------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------


def test_target_out_of_range_names_the_class_and_the_range(net):
    model, x = net
    for target in (3, -1, [0, 7]):
        with pytest.raises(ValueError) as info:
            gradcam(model, x, "relu2", target)
        bad = target if isinstance(target, int) else 7
        assert f"target class {bad} is out of range" in str(info.value)
        assert "3 classes (0 to 2)" in str(info.value)
    with pytest.raises(ValueError, match="out of range"):
        cam(model, x, "relu2", 5)
    with pytest.raises(ValueError, match="out of range"):
        gradcampp(model, x, "relu2", 5, variant="exact", score="exp")


def test_sequence_target_of_the_wrong_length(net):
    model, x = net
    for target in ([0], [0, 1, 2], (1,), np.array([0, 1, 1])):
        with pytest.raises(ValueError, match=r"one integer class per image \(2 of them\)"):
            gradcam(model, x, "relu2", target)


def test_non_integer_targets(net):
    model, x = net
    for target in (1.0, [0.5, 1.0], "cat"):
        with pytest.raises(ValueError, match="target must be None, an int, or one integer class per image"):
            gradcam(model, x, "relu2", target)


def test_callable_target_must_return_one_score_per_image(net):
    model, x = net
    wrong = [
        lambda out: out,               # (2, 3): the whole output
        lambda out: out[:, 0].sum(),   # a scalar
        lambda out: out[:1, 0],        # (1,)
        lambda out: out.data[:, 0],    # a NumPy array, not a Tensor: no gradient
    ]
    for target in wrong:
        with pytest.raises(ValueError, match=r"callable target must return a Tensor of shape \(2,\)"):
            gradcam(model, x, "relu2", target)
    assert hooks_left(model) == 0
    # the right shape works, and equals the class target
    np.testing.assert_allclose(gradcam(model, x, "relu2", lambda out: out[:, 1]), gradcam(model, x, "relu2", 1),
                               rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="callable defines the score"):
        gradcam(model, x, "relu2", lambda out: out[:, 1], score="softmax")


# ----------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------


def test_wrong_input_rank(net):
    model, x = net
    with pytest.raises(ValueError, match=r"\(N, C, H, W\); got shape \(3, 8, 8\).*x\[None\]"):
        gradcam(model, x[0], "relu2")
    with pytest.raises(ValueError, match=r"got shape \(2, 1, 3, 8, 8\)"):
        gradcam(model, x[:, None], "relu2")
    with pytest.raises(ValueError, match="empty batch"):
        gradcam(model, x[:0], "relu2")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        explain(model, x[0], "gradcam", "relu2")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_input(net, bad):
    model, x = net
    x = x.copy()
    x[1, 2, 3, 4] = bad
    x[0, 0, 0, 0] = bad
    kind = "NaN" if np.isnan(bad) else "infinite"
    for f in (gradcam, cam, hirescam, gradcampp):
        with pytest.raises(NonFiniteError, match=f"^x holds 2 {kind} values; .*give finite images"):
            f(model, x, "relu2", 0)
    with pytest.raises(NonFiniteError, match=f"x holds 2 {kind} values"):
        explain(model, x, "gradcam", "relu2", 0)


# ----------------------------------------------------------------------------
# CAM needs a GAP head
# ----------------------------------------------------------------------------


def test_cam_on_a_flatten_head_names_the_layer_and_the_linear():
    rng = np.random.default_rng(0)
    model = flatten_net(rng)
    x = images(rng, 2)
    with pytest.raises(ValueError) as info:
        cam(model, x, "relu2", 0)
    message = str(info.value)
    assert "'relu2'" in message and "'fc'" in message
    assert "global average pooling" in message and "Grad-CAM" in message
    with pytest.raises(ValueError, match="global average pooling"):
        explain(model, x, "cam", "relu2", 0)


def test_cam_at_a_layer_before_the_last_relu(net):
    """conv2 -> relu2 -> GAP: the Linear's input is the mean of ReLU(conv2), not of conv2."""
    model, x = net
    with pytest.raises(ValueError, match="'conv2'.*not the spatial mean"):
        cam(model, x, "conv2", 0)


def test_cam_needs_a_linear_last():
    rng = np.random.default_rng(0)
    model = gap_net(rng)
    model.add_module("out_relu", nn.ReLU())
    with pytest.raises(ValueError, match="output of its final Linear layer 'fc'"):
        cam(model, images(rng, 1), "relu2", 0)
    no_linear = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 2, 3, rng=rng)))
    with pytest.raises(ValueError, match="has no Linear layer"):
        cam(no_linear, images(rng, 1), "conv", 0)


def test_cam_has_no_score(net):
    model, x = net
    with pytest.raises(ValueError, match="score= does not apply"):
        cam(model, x, "relu2", 0, score="softmax")


# ----------------------------------------------------------------------------
# Unknown names
# ----------------------------------------------------------------------------


def test_unknown_method_convention_variant_score(net):
    model, x = net
    with pytest.raises(ValueError, match=r"unknown method 'gradcam\+\+\+'.*'gradcam\+\+'"):
        explain(model, x, "gradcam+++", "relu2")
    with pytest.raises(ValueError, match=r"unknown convention 'keras'.*'pytorch-grad-cam'"):
        explain(model, x, "gradcam", "relu2", convention="keras")
    with pytest.raises(ValueError, match=r"unknown Grad-CAM\+\+ variant 'tf'.*'paper', 'authors', 'exact'"):
        gradcampp(model, x, "relu2", variant="tf")
    with pytest.raises(ValueError, match=r"unknown Grad-CAM\+\+ variant"):
        explain(model, x, "gradcam++", "relu2", variant="tf")
    for f in (gradcam, hirescam, layercam, xgradcam, gradcam_plus, gradcam_elementwise, capture):
        with pytest.raises(ValueError, match=r"unknown score 'probability'.*'logit', 'softmax', 'exp'"):
            f(model, x, "relu2", 0, score="probability")
    with pytest.raises(ValueError, match="unknown score"):
        gradcampp(model, x, "relu2", 0, variant="exact", score="probability")
    with pytest.raises(ValueError, match="unknown normalize 'zscore'"):
        explain(model, x, "gradcam", "relu2", normalize="zscore")
    with pytest.raises(ValueError, match="unknown interpolation"):
        explain(model, x, "gradcam", "relu2", interpolation="area")
    with pytest.raises(ValueError, match="n_samples must be a positive integer, got 0"):
        smoothgradcampp(model, x, "relu2", n_samples=0)


# ----------------------------------------------------------------------------
# The model is left as it was
# ----------------------------------------------------------------------------


def test_the_batch_norm_net_depends_on_its_mode():
    """Without this, the checks below could not see a capture run in train mode:
    train mode changes the output (batch statistics) and the running statistics."""
    rng = np.random.default_rng(1)
    model = bn_net(rng)
    x = Tensor(images(rng, 2))
    running_mean = model.bn1.running_mean.copy()
    eval_output = model.eval()(x).data
    train_output = model.train()(x).data
    assert np.abs(eval_output - train_output).max() > 1e-2
    assert np.abs(model.bn1.running_mean - running_mean).max() > 1e-2


CALLS = {  # beyond the methods themselves (tests/test_cam_contract.py checks every one of those)
    "capture": lambda m, x: capture(m, x, "relu2", [0, 1]).gradients(),
    "gradcam++ exact": lambda m, x: gradcampp(m, x, "conv2", [0, 1], variant="exact", score="softmax"),
    "diagonal_derivatives": lambda m, x: diagonal_derivatives(m, x, "relu1", [0, 1], "exp", chunk_size=37),
    "explain": lambda m, x: explain(m, x, "layercam", "relu1", [0, 1], convention="pytorch-grad-cam"),
}


def as_arrays(result):
    parts = result if isinstance(result, tuple) else (result,)
    return [p.data if isinstance(p, Tensor) else p for p in parts]


@pytest.mark.parametrize("call", sorted(CALLS))
def test_model_is_left_unchanged(call):
    """Train mode (and a mix of flags) in; the same flags, no hooks, the same running
    statistics and parameters out; the maps are those of eval mode."""
    rng = np.random.default_rng(1)
    model = bn_net(rng)
    x = images(rng, 2)
    model.eval()
    reference = CALLS[call](model, x)
    assert not any(flag for _, flag in flags(model)), "a model in eval mode must stay in eval mode"
    for setup in ("train", "mixed"):
        model.train()
        if setup == "mixed":
            model.relu1.eval()
            model.fc.eval()
        before_flags = flags(model)
        before_state = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
        result = CALLS[call](model, x)
        assert flags(model) == before_flags
        assert hooks_left(model) == 0
        for k, v in model.state_dict().items():
            np.testing.assert_array_equal(v, before_state[k], err_msg=k)
        for a, b in zip(as_arrays(result), as_arrays(reference), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{call} in {setup} mode differs from eval mode")
        assert all(p.grad is None for p in model.parameters()), "parameter gradients were accumulated"


ERRORS = {
    "unknown layer": lambda m, x: gradcam(m, x, "nope"),
    "bad target": lambda m, x: gradcam(m, x, "relu2", 9),
    "bad callable": lambda m, x: gradcam(m, x, "relu2", lambda out: out),
    "not 4-D layer": lambda m, x: gradcam(m, x, "fc"),
    "cam at conv2": lambda m, x: cam(m, x, "conv2", 0),
    "exact, bad callable": lambda m, x: gradcampp(m, x, "relu2", lambda out: out, variant="exact"),
}


@pytest.mark.parametrize("error", sorted(ERRORS))
def test_model_is_left_unchanged_after_an_error(error):
    rng = np.random.default_rng(2)
    model = bn_net(rng).train()
    before = flags(model)
    with pytest.raises((ValueError, KeyError)):
        ERRORS[error](model, images(rng, 2))
    assert flags(model) == before
    assert hooks_left(model) == 0


def test_gradcampp_exact_with_a_logit_score_on_a_piecewise_linear_head_says_why_it_is_undefined():
    import numpy as np
    import pytest

    from cam_nets import gap_net, images
    from minicam.cam import METHODS

    rng = np.random.default_rng(0)
    model, x = gap_net(rng), images(rng, n=1)
    with pytest.raises(ValueError, match=r"eq. 10 is 0/0\. Use score='exp'"):
        METHODS["gradcam++"](model, x, "relu2", variant="exact", score="logit")


def test_explain_is_reexported_at_the_top_level():
    import minicam
    import minicam.cam

    assert minicam.explain is minicam.cam.explain


def test_capture_records_no_graph_below_the_layer_and_restores_grad_mode():
    import numpy as np

    import minicam
    from cam_nets import gap_net, images
    from minicam.cam.capture import capture

    rng = np.random.default_rng(0)
    model, x = gap_net(rng), images(rng, n=2)
    conv1_outputs = []
    handle = model.conv1.register_forward_hook(lambda m, i, out: conv1_outputs.append(out))
    with minicam.no_grad():
        cap = capture(model, x, "relu2")
        assert not minicam.is_grad_enabled()
    handle.remove()
    assert minicam.is_grad_enabled()
    assert not conv1_outputs[0].requires_grad  # below the layer: no graph
    assert cap.scores.requires_grad and cap.activations.is_leaf  # above it: a graph from the leaf A
