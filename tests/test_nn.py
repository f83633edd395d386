"""minicam.nn against torch.nn: every layer with copied weights, two small CNNs,
and the Module API (names, hooks, repr, modes, dtypes, errors).

Each model is built by a factory that takes the namespace (`torch.nn` or
`minicam.nn`), so both twins come from the SAME constructor call; torch's
weights are copied into minicam through load_state_dict. Compared: the
output, the input gradient and every parameter gradient of <output, v> for a
random covector v. float64 against torch float64 at 1e-10 (normwise relative
error, see opcheck.py); float32 against torch float64 on the same
float32-rounded weights and inputs at 1e-5, so only minicam's rounding counts.
"""
import copy
from collections import OrderedDict

import numpy as np
import pytest
from torch_required import require_torch

torch = require_torch()

from minicam import Tensor, nn  # noqa: E402
from opcheck import assert_close  # noqa: E402

RTOL64 = 1e-10
RTOL32 = 1e-5


# ----------------------------------------------------------------------------
# Running a torch model and its minicam twin
# ----------------------------------------------------------------------------


def randomize(torch_model, seed: int):
    """Random values in every float entry of torch's state_dict (BatchNorm's
    ones and zeros would hide mistakes); running_var stays positive."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, value in torch_model.state_dict().items():
            if value.dtype.is_floating_point:
                low = 0.5 if name.endswith("running_var") else -1.0
                value.copy_(torch.from_numpy(rng.uniform(low, 1.5, size=tuple(value.shape))))


def twins(factory, seed: int = 0, dtype=np.float64):
    """(torch model in float64, minicam model in `dtype`) with the same weights."""
    torch.manual_seed(seed)
    torch_model = factory(torch.nn).double()
    randomize(torch_model, seed)
    model = factory(nn)
    model.load_state_dict({k: v.numpy() for k, v in torch_model.state_dict().items()})
    model.to(dtype)
    if dtype == np.float32:  # torch computes on the float32-rounded weights
        with torch.no_grad():
            for value in torch_model.state_dict().values():
                if value.dtype.is_floating_point:
                    value.copy_(value.float().double())
    return torch_model, model


def assert_same_run(factory, input_shape, seed=0, dtype=np.float64, mode="train", steps=1):
    """Run both twins `steps` times on fresh inputs and compare, after each step:
    the output, the input gradient and every parameter gradient of <output, v>
    (v random), and the whole state_dict (running statistics move in training).
    Returns the worst relative error seen."""
    rtol = RTOL64 if dtype == np.float64 else RTOL32
    torch_model, model = twins(factory, seed, dtype)
    torch_model.train(mode == "train")
    model.train(mode == "train")
    rng = np.random.default_rng(seed + 100)
    worst = 0.0

    def check(actual, expected, what):
        nonlocal worst
        worst = max(worst, assert_close(actual, expected, rtol, what))

    for step in range(steps):
        x = rng.normal(size=input_shape).astype(dtype)  # float32: torch gets the same rounded values
        x_torch = torch.tensor(x.astype(np.float64), requires_grad=True)
        x_mine = Tensor(x, requires_grad=True)
        y_torch, y_mine = torch_model(x_torch), model(x_mine)
        v = rng.normal(size=tuple(y_torch.shape)).astype(dtype)
        y_torch.backward(torch.tensor(v.astype(np.float64)))
        y_mine.backward(Tensor(v))
        check(y_mine.numpy(), y_torch.detach().numpy(), f"step {step}: output")
        assert y_mine.dtype == dtype
        check(x_mine.grad.numpy(), x_torch.grad.numpy(), f"step {step}: input gradient")
        theirs, mine = dict(torch_model.named_parameters()), dict(model.named_parameters())
        assert list(mine) == list(theirs)
        for name in theirs:
            check(mine[name].grad.numpy(), theirs[name].grad.numpy(), f"step {step}: gradient of {name}")
        state = model.state_dict()
        assert list(state) == list(torch_model.state_dict())
        for key, value in torch_model.state_dict().items():
            check(state[key], value.numpy(), f"step {step}: state_dict[{key!r}]")
        torch_model.zero_grad()
        model.zero_grad()
    return worst


# ----------------------------------------------------------------------------
# Every layer, alone
# ----------------------------------------------------------------------------

LAYERS = [
    ("Linear", lambda nn: nn.Linear(5, 3), (4, 5)),
    ("Linear-3d-no-bias", lambda nn: nn.Linear(5, 3, bias=False), (2, 4, 5)),
    ("Conv2d", lambda nn: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 6, 5)),
    ("Conv2d-geometry", lambda nn: nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), bias=False),
     (2, 2, 7, 6)),
    ("Conv2d-same-even-kernel", lambda nn: nn.Conv2d(2, 3, 4, padding="same"), (1, 2, 5, 6)),
    ("Conv2d-unbatched", lambda nn: nn.Conv2d(2, 3, 3), (2, 5, 5)),
    ("ReLU", lambda nn: nn.ReLU(), (2, 3, 4)),
    ("ReLU-inplace-ignored", lambda nn: nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True)), (2, 3, 4)),
    ("Sigmoid", lambda nn: nn.Sigmoid(), (2, 3, 4)),
    ("Tanh", lambda nn: nn.Tanh(), (2, 3, 4)),
    ("Softmax", lambda nn: nn.Softmax(dim=1), (3, 5, 2)),
    ("Identity", lambda nn: nn.Identity(3, unused=True), (2, 3)),
    ("Flatten", lambda nn: nn.Flatten(), (2, 3, 4, 5)),
    ("Flatten-0-2", lambda nn: nn.Flatten(0, 2), (2, 3, 4, 5)),
    ("MaxPool2d", lambda nn: nn.MaxPool2d(2), (2, 3, 6, 6)),
    ("MaxPool2d-overlap-padding", lambda nn: nn.MaxPool2d(3, stride=2, padding=1), (1, 2, 7, 7)),
    ("MaxPool2d-dilation", lambda nn: nn.MaxPool2d(2, stride=1, dilation=2), (1, 2, 5, 6)),
    ("AvgPool2d", lambda nn: nn.AvgPool2d(2), (2, 3, 6, 6)),
    ("AvgPool2d-padding-exclude", lambda nn: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (1, 2, 7, 6)),
    ("AdaptiveAvgPool2d-global", lambda nn: nn.AdaptiveAvgPool2d(1), (2, 3, 5, 4)),
    ("AdaptiveAvgPool2d-bins", lambda nn: nn.AdaptiveAvgPool2d((2, 3)), (1, 2, 5, 7)),
    ("Dropout-eval", lambda nn: nn.Dropout(0.3), (2, 3)),  # run in eval mode below: the identity
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name, factory, shape", LAYERS, ids=[case[0] for case in LAYERS])
def test_layer_matches_torch(name, factory, shape, dtype):
    mode = "eval" if name.startswith("Dropout") else "train"
    assert_same_run(factory, shape, seed=len(name), dtype=dtype, mode=mode)


BATCHNORMS = [
    ("default", lambda nn: nn.BatchNorm2d(3)),
    ("momentum-None", lambda nn: nn.BatchNorm2d(3, momentum=None)),  # cumulative average
    ("momentum-0.3-eps", lambda nn: nn.BatchNorm2d(3, eps=1e-3, momentum=0.3)),
    ("no-affine", lambda nn: nn.BatchNorm2d(3, affine=False)),
    ("no-bias", lambda nn: nn.BatchNorm2d(3, bias=False)),
    ("no-running-stats", lambda nn: nn.BatchNorm2d(3, track_running_stats=False)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name, factory", BATCHNORMS, ids=[case[0] for case in BATCHNORMS])
def test_batchnorm_matches_torch_over_steps(name, factory, mode, dtype):
    """Three steps, so the running statistics (compared after each step through
    state_dict, num_batches_tracked included) carry over as in torch."""
    assert_same_run(factory, (3, 3, 4, 2), seed=3, dtype=dtype, mode=mode, steps=3)


def test_batchnorm_counts_batches_and_leaves_statistics_alone_in_eval():
    layer = nn.BatchNorm2d(2)
    x = np.random.default_rng(0).normal(size=(4, 2, 3, 3))
    layer(x)
    layer(x)
    assert layer.num_batches_tracked.dtype == np.int64 and int(layer.num_batches_tracked) == 2
    before = layer.state_dict()
    layer.eval()(x)
    after = layer.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


# ----------------------------------------------------------------------------
# Two small CNNs, the shape of every CAM network
# ----------------------------------------------------------------------------


def small_cnn(nn, batchnorm: bool = False):
    """conv-relu-maxpool-conv-(bn)-relu-GAP-flatten-linear.

    A convolution followed by BatchNorm has no bias (as in ResNets): in training
    mode BatchNorm subtracts the batch mean, so that bias's gradient is exactly 0
    and its value never matters; a relative comparison of rounding noise with
    rounding noise would be meaningless."""
    layers = [nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1, bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)]
    return nn.Sequential(*layers)


CNNS = [
    ("plain", lambda nn: small_cnn(nn), "train"),
    ("batchnorm-train", lambda nn: small_cnn(nn, batchnorm=True), "train"),
    ("batchnorm-eval", lambda nn: small_cnn(nn, batchnorm=True), "eval"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name, factory, mode", CNNS, ids=[case[0] for case in CNNS])
def test_small_cnn_matches_torch(name, factory, mode, dtype):
    """Logits, every parameter gradient and the input gradient, over two steps."""
    assert_same_run(factory, (2, 3, 8, 8), seed=7, dtype=dtype, mode=mode, steps=2)


SMALL_CNN_REPR = """\
Sequential(
  (0): Conv2d(3, 6, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
  (1): ReLU()
  (2): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
  (3): Conv2d(6, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
  (4): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, bias=True, track_running_stats=True)
  (5): ReLU()
  (6): AdaptiveAvgPool2d(output_size=1)
  (7): Flatten(start_dim=1, end_dim=-1)
  (8): Linear(in_features=8, out_features=4, bias=True)
)"""


def test_repr_of_small_cnn():
    model = small_cnn(nn, batchnorm=True)
    print(model)
    assert repr(model) == SMALL_CNN_REPR
    assert repr(model) == repr(small_cnn(torch.nn, batchnorm=True))


# ----------------------------------------------------------------------------
# Names: the same as torch's for the same architecture
# ----------------------------------------------------------------------------


def resnet_like(nn):
    """Nested custom modules, an OrderedDict Sequential, a layer without bias,
    a module registered twice and a buffer that is not persistent."""

    class Block(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)

        def forward(self, x):
            return self.relu(x + self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3, padding=1), relu=nn.ReLU()))
            self.layer1 = nn.Sequential(Block(4), Block(4))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 2)
            self.head = self.fc  # the same module under a second name
            self.register_buffer("scratch", torch.zeros(1) if nn is torch.nn else np.zeros(1), persistent=False)

        def forward(self, x):
            return self.head(self.pool(self.layer1(self.stem(x))).flatten(1))

    return Net()


def test_names_equal_torch():
    mine, theirs = resnet_like(nn), resnet_like(torch.nn)
    assert [n for n, _ in mine.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert "layer1.0.conv1" in dict(mine.named_modules())
    assert [n for n, _ in mine.named_children()] == [n for n, _ in theirs.named_children()]
    assert [n for n, _ in mine.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in mine.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert list(mine.state_dict()) == list(theirs.state_dict())
    assert [type(m).__name__ for m in mine.modules()] == [type(m).__name__ for m in theirs.modules()]
    assert len(list(mine.parameters())) == len(list(theirs.parameters()))
    assert repr(mine) == repr(theirs)


def test_resnet_like_matches_torch():
    assert_same_run(resnet_like, (2, 3, 5, 5), seed=11, steps=2)


def test_get_submodule():
    model = resnet_like(nn)
    assert model.get_submodule("layer1.1.bn2") is model.layer1[1].bn2
    assert model.get_submodule("") is model
    with pytest.raises(AttributeError, match=r"no sub-module 'layer1.2'.*valid names: 'stem', 'stem.conv'"):
        model.get_submodule("layer1.2")


# ----------------------------------------------------------------------------
# Forward hooks: what minicam.cam captures activations with
# ----------------------------------------------------------------------------


def test_forward_hook_sees_inputs_and_output_and_remove_leaves_no_trace():
    model = small_cnn(nn)
    x = np.random.default_rng(0).normal(size=(1, 3, 8, 8))
    reference = model(x).numpy().copy()
    seen = []
    handle = model[3].register_forward_hook(lambda module, inputs, output: seen.append((module, inputs, output)))
    logits = model(x)
    (module, inputs, output), = seen
    assert module is model[3] and isinstance(inputs, tuple) and len(inputs) == 1
    expected_input = model[:3](x).numpy()
    np.testing.assert_array_equal(inputs[0].numpy(), expected_input)
    np.testing.assert_array_equal(output.numpy(), model[3](expected_input).numpy())
    np.testing.assert_array_equal(logits.numpy(), reference)
    handle.remove()
    handle.remove()  # a second remove is harmless, as in torch
    assert all(not m.forward_hooks for m in model.modules())
    model(x)
    assert len(seen) == 2  # the call above (model[3] directly) fired it; nothing after remove
    np.testing.assert_array_equal(model(x).numpy(), reference)


def test_forward_hook_can_replace_the_output_in_order():
    layer = nn.ReLU()
    x = Tensor(np.array([-1.0, 2.0]))
    first = layer.register_forward_hook(lambda m, inputs, output: output * 10.0)
    second = layer.register_forward_hook(lambda m, inputs, output: output + 1.0)  # sees the replaced output
    np.testing.assert_array_equal(layer(x).numpy(), [1.0, 21.0])
    first.remove()
    np.testing.assert_array_equal(layer(x).numpy(), [1.0, 3.0])
    with second:
        pass
    np.testing.assert_array_equal(layer(x).numpy(), [0.0, 2.0])
    assert not layer.forward_hooks


def test_forward_hook_that_removes_itself():
    layer, calls = nn.Identity(), []

    def once(module, inputs, output):
        calls.append(1)
        handle.remove()

    handle = layer.register_forward_hook(once)
    layer(Tensor(1.0))
    layer(Tensor(1.0))
    assert calls == [1]


# ----------------------------------------------------------------------------
# Modes, gradients, dtypes
# ----------------------------------------------------------------------------


def test_train_and_eval_switch_every_submodule():
    model = resnet_like(nn)
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.layer1.train()
    assert model.layer1[0].bn1.training and not model.training and not model.stem.training
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError, match="True or False"):
        model.train("no")


def test_dtype_conversions_keep_parameters_and_counters():
    model = small_cnn(nn, batchnorm=True)
    params = list(model.parameters())
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8))
    model(x).sum().backward()
    expected = model.eval()(x).numpy()
    assert model.float() is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]  # identity kept (optimisers hold them)
    assert all(p.dtype == np.float32 and p.grad.dtype == np.float32 for p in model.parameters())
    assert model[4].running_mean.dtype == np.float32 and model[4].num_batches_tracked.dtype == np.int64
    y = model(x.astype(np.float32))
    assert y.dtype == np.float32
    assert_close(y.numpy(), expected, RTOL32, "float32 logits")
    with pytest.raises(TypeError, match=r"Conv2d\(3, 6.*input is float64 but the layer is float32.*model.double"):
        model(x)
    model.double()
    assert all(p.dtype == np.float64 for p in model.parameters()) and model[4].running_var.dtype == np.float64
    assert_close(model(x).numpy(), expected, RTOL32, "after the round trip through float32")
    with pytest.raises(TypeError, match="float16 is not supported"):
        model.to(np.float16)


def test_layers_built_in_float32():
    layer = nn.Conv2d(2, 3, 3, dtype=np.float32)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    assert nn.Linear(2, 3, dtype="float32").weight.dtype == np.float32
    assert nn.BatchNorm2d(2, dtype=np.float32).running_mean.dtype == np.float32
    with pytest.raises(TypeError, match="int64 is not supported"):
        nn.Linear(2, 3, dtype=np.int64)


def test_deepcopy_gives_an_independent_twin():
    model = small_cnn(nn, batchnorm=True)
    twin = copy.deepcopy(model)
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8))
    np.testing.assert_array_equal(twin(x).numpy(), model(x).numpy())
    twin[0].weight.data += 1.0
    assert not np.array_equal(twin[0].weight.numpy(), model[0].weight.numpy())
    assert [n for n, _ in twin.named_parameters()] == [n for n, _ in model.named_parameters()]


def test_zero_grad_and_requires_grad():
    model = small_cnn(nn)
    model(np.ones((1, 3, 4, 4))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    assert model.requires_grad_(False) is model
    assert not any(p.requires_grad for p in model.parameters())
    x = Tensor(np.ones((1, 3, 4, 4)), requires_grad=True)
    model(x).sum().backward()  # gradients still reach the input (what CAM needs)
    assert x.grad is not None and all(p.grad is None for p in model.parameters())


# ----------------------------------------------------------------------------
# Initialisation and randomness
# ----------------------------------------------------------------------------


def test_default_initialisation_follows_torch_distribution():
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias: compare the bound
    and the variance (b^2/3) with torch's own initialisation on a large layer."""
    ours = nn.Conv2d(4, 300, (3, 2), rng=np.random.default_rng(1))
    torch.manual_seed(1)
    theirs = torch.nn.Conv2d(4, 300, (3, 2))
    bound = 1 / np.sqrt(4 * 3 * 2)
    for name in ("weight", "bias"):
        a, b = getattr(ours, name).numpy(), getattr(theirs, name).detach().numpy()
        assert a.shape == b.shape and a.dtype == np.float64
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.95 * bound
        assert np.abs(b).max() <= bound + 1e-7  # torch's own bound, the same
    assert np.var(ours.weight.numpy()) == pytest.approx(bound**2 / 3, rel=0.05)
    assert np.var(theirs.weight.detach().numpy()) == pytest.approx(bound**2 / 3, rel=0.05)
    linear = nn.Linear(9, 500)
    assert 0.95 / 3 < np.abs(linear.weight.numpy()).max() <= 1 / 3


def test_manual_seed_and_rng_make_weights_reproducible():
    nn.manual_seed(123)
    first = small_cnn(nn).state_dict()
    nn.manual_seed(123)
    second = small_cnn(nn).state_dict()
    assert all(np.array_equal(first[k], second[k]) for k in first)
    third = small_cnn(nn).state_dict()  # the generator moved on
    assert not np.array_equal(first["0.weight"], third["0.weight"])
    a = nn.Linear(3, 2, rng=np.random.default_rng(5))
    b = nn.Linear(3, 2, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    with pytest.raises(TypeError, match="np.random.Generator"):
        nn.Linear(3, 2, rng=5)


def test_dropout_mask_scaling_and_gradient():
    p = 0.25
    layer = nn.Dropout(p, rng=np.random.default_rng(0))
    x = Tensor(np.random.default_rng(1).normal(size=(40, 50)), requires_grad=True)
    y = layer(x)
    kept = y.numpy() != 0
    np.testing.assert_allclose(y.numpy()[kept], x.numpy()[kept] / (1 - p), rtol=1e-15)
    assert abs(1 - kept.mean() - p) < 0.03
    v = np.random.default_rng(2).normal(size=x.shape)
    y.backward(Tensor(v))
    np.testing.assert_allclose(x.grad.numpy(), v * kept / (1 - p), rtol=1e-15)
    # the same generator seed gives the same mask; eval mode is the identity
    again = nn.Dropout(p, rng=np.random.default_rng(0))(x).numpy()
    np.testing.assert_array_equal(again, y.numpy())
    assert layer.eval()(x) is x or np.array_equal(layer(x).numpy(), x.numpy())
    nn.manual_seed(4)
    first = nn.Dropout(0.5)(x).numpy()
    nn.manual_seed(4)
    np.testing.assert_array_equal(nn.Dropout(0.5)(x).numpy(), first)
    assert repr(nn.Dropout(0.1)) == repr(torch.nn.Dropout(0.1)) == "Dropout(p=0.1, inplace=False)"
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


# ----------------------------------------------------------------------------
# Containers and registration
# ----------------------------------------------------------------------------


def test_sequential_indexing_slicing_and_append():
    a, b, c = nn.ReLU(), nn.Tanh(), nn.Sigmoid()
    seq = nn.Sequential(a, b)
    assert len(seq) == 2 and list(seq) == [a, b] and seq[-1] is b
    assert seq.append(c) is seq and [n for n, _ in seq.named_children()] == ["0", "1", "2"]
    part = seq[1:]
    assert isinstance(part, nn.Sequential) and [n for n, _ in part.named_children()] == ["1", "2"]
    x = np.array([-1.0, 0.5])
    np.testing.assert_allclose(seq(x).numpy(), 1 / (1 + np.exp(-np.tanh(np.maximum(x, 0)))), rtol=1e-15)
    seq[0] = nn.Identity()
    assert isinstance(seq[0], nn.Identity)
    named = nn.Sequential(OrderedDict(first=a, second=b))
    assert named.first is a and [n for n, _ in named.named_modules()] == ["", "first", "second"]
    with pytest.raises(IndexError, match="out of range for 3 modules"):
        seq[3]
    with pytest.raises(TypeError, match="integers or slices"):
        seq["0"]


def test_registration_rules_and_errors():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(np.ones(2))
            self.child = nn.Linear(2, 1)
            self.register_buffer("stat", np.zeros(2))
            self.note = "plain attributes are not registered"

    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["w", "child.weight", "child.bias"]
    assert list(net.state_dict()) == ["w", "stat", "child.weight", "child.bias"]
    net.stat = np.ones(2)  # re-assigning a buffer keeps it a buffer
    np.testing.assert_array_equal(net.state_dict()["stat"], [1.0, 1.0])
    with pytest.raises(TypeError, match="wrap it as minicam.nn.Parameter"):
        net.w = Tensor(np.ones(2))
    del net.child
    assert [n for n, _ in net.named_parameters()] == ["w"]
    with pytest.raises(KeyError, match="already exists"):
        net.register_buffer("note", np.zeros(1))
    with pytest.raises(KeyError, match="without '.'"):
        net.register_buffer("a.b", np.zeros(1))

    class Forgot(nn.Module):
        def __init__(self):
            self.layer = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\) first"):
        Forgot()
    with pytest.raises(NotImplementedError, match="missing the required 'forward'"):
        nn.Module()(1.0)
    with pytest.raises(AttributeError, match="'Linear' object has no attribute 'wieght'"):
        nn.Linear(1, 1).wieght
    p = nn.Parameter(np.zeros(3, dtype=np.float32))
    assert p.requires_grad and p.is_leaf and p.dtype == np.float32 and isinstance(p, Tensor)


# ----------------------------------------------------------------------------
# Errors on bad input name the layer, what it expects, and what it got
# ----------------------------------------------------------------------------


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8, .*\) expects input of shape \(N, 3, H, W\).*got shape \(1, 4, 8, 8\)"):
        nn.Conv2d(3, 8, 3)(np.zeros((1, 4, 8, 8)))
    with pytest.raises(ValueError, match=r"Linear\(in_features=5.* expects input of shape \(\.\.\., 5\), got shape \(2, 4\)"):
        nn.Linear(5, 2)(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3.* expects input of shape \(N, 3, H, W\), got shape \(2, 3\)"):
        nn.BatchNorm2d(3)(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="dim is None"):
        nn.Softmax()(np.zeros(3))
    with pytest.raises(NotImplementedError, match="padding_mode='reflect'"):
        nn.Conv2d(1, 1, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(TypeError, match="kernel_size must be an int or a pair"):
        nn.Conv2d(3, 4, (3, 3, 3))
