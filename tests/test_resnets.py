"""minicam.models.ResNet against a torch twin of torchvision's ResNet.

torchvision is not installed here (it would pull a CUDA torch), so the twin
below is written from torchvision/models/resnet.py: the same classes, attribute
names, registration order, inplace ReLUs and functional flatten. Two
independent checks guard the twin itself: the key lists written out by hand
below, and the parameter counts torchvision documents (ResNet-18 11,689,512,
ResNet-34 21,797,672, ResNet-50 25,557,032).

Numbers: at width 8 on small inputs, with identical weights (minicam loads the
twin's state_dict through state_dict_from_torch) and random batch norm
statistics, logits, the input gradient, every parameter gradient and the
updated running statistics agree in float64, in eval and in train mode; so do
Grad-CAM maps at "layer4.1.conv2" and "layer4".
"""
import numpy as np
import pytest

from torch_required import require_torch

torch = require_torch()
tnn = torch.nn

from minicam import Tensor  # noqa: E402
from minicam.cam import METHODS, explain  # noqa: E402
from minicam.interop import state_dict_from_torch  # noqa: E402
from minicam.models import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50  # noqa: E402


from torch_resnet import TorchBasicBlock, TorchBottleneck, TorchResNet, TWINS, torch_twin, twin_pair  # noqa: E402


def assert_close(actual, expected, what, rtol=1e-10):
    """Relative error 1e-10, with an absolute floor of 1e-11 times the array's largest
    magnitude: an element that is a sum of terms cancelling to near zero (a gradient
    through batch norm) carries the rounding of those terms, not of its own size."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(float(np.max(np.abs(expected))), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-11 * scale, err_msg=what)


# ----------------------------------------------------------------------------
# Names and keys at torchvision's size (built, not run)
# ----------------------------------------------------------------------------

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

RESNET18_FIRST_10 = ["conv1.weight"] + [f"bn1.{k}" for k in BN] + [
    "layer1.0.conv1.weight", "layer1.0.bn1.weight", "layer1.0.bn1.bias", "layer1.0.bn1.running_mean"]
RESNET18_LAST_10 = ["layer4.1.bn1.running_var", "layer4.1.bn1.num_batches_tracked", "layer4.1.conv2.weight"] + [
    f"layer4.1.bn2.{k}" for k in BN] + ["fc.weight", "fc.bias"]
RESNET50_FIRST_10 = RESNET18_FIRST_10
RESNET50_LAST_10 = ["layer4.2.bn2.running_var", "layer4.2.bn2.num_batches_tracked", "layer4.2.conv3.weight"] + [
    f"layer4.2.bn3.{k}" for k in BN] + ["fc.weight", "fc.bias"]

# (key, shape) spot checks at width 64, from torchvision's printed models
RESNET18_SHAPES = {
    "conv1.weight": (64, 3, 7, 7), "layer1.0.conv1.weight": (64, 64, 3, 3),
    "layer2.0.conv1.weight": (128, 64, 3, 3), "layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "layer2.0.downsample.1.running_var": (128,), "layer4.0.downsample.0.weight": (512, 256, 1, 1),
    "layer4.1.conv2.weight": (512, 512, 3, 3), "fc.weight": (1000, 512), "fc.bias": (1000,),
    "bn1.num_batches_tracked": (),
}
RESNET50_SHAPES = {
    "conv1.weight": (64, 3, 7, 7), "layer1.0.conv1.weight": (64, 64, 1, 1), "layer1.0.conv2.weight": (64, 64, 3, 3),
    "layer1.0.conv3.weight": (256, 64, 1, 1), "layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "layer2.0.conv1.weight": (128, 256, 1, 1), "layer2.0.conv2.weight": (128, 128, 3, 3),
    "layer4.0.downsample.0.weight": (2048, 1024, 1, 1), "layer4.2.conv3.weight": (2048, 512, 1, 1),
    "layer4.2.bn3.running_mean": (2048,), "fc.weight": (1000, 2048),
}


@pytest.mark.parametrize("arch, count, parameters, first, last, shapes", [
    ("resnet18", 122, 11_689_512, RESNET18_FIRST_10, RESNET18_LAST_10, RESNET18_SHAPES),
    ("resnet50", 320, 25_557_032, RESNET50_FIRST_10, RESNET50_LAST_10, RESNET50_SHAPES),
])
def test_state_dict_keys_are_torchvisions(arch, count, parameters, first, last, shapes):
    model = TWINS[arch][0](dtype=np.float32, rng=np.random.default_rng(0))
    keys = list(model.state_dict())
    assert len(keys) == count
    assert keys[:10] == first and keys[-10:] == last
    assert sum(p.data.size for p in model.parameters()) == parameters
    sd = model.state_dict()
    for key, shape in shapes.items():
        assert sd[key].shape == shape, key
    assert sd["bn1.num_batches_tracked"].dtype == np.int64

    twin = torch_twin(arch, 64)
    twin_sd = twin.state_dict()
    assert keys == list(twin_sd)  # same keys, same order
    assert [sd[k].shape for k in keys] == [tuple(v.shape) for v in twin_sd.values()]
    assert sum(p.numel() for p in twin.parameters()) == parameters
    # named_modules too: no "flatten" module on either side (torchvision flattens in forward)
    assert [name for name, _ in model.named_modules()] == [name for name, _ in twin.named_modules()]
    assert [type(m).__name__ for _, m in model.named_modules()] == [
        type(m).__name__.removeprefix("Torch") for _, m in twin.named_modules()]


def test_resnet34_keys_and_parameter_count():
    model = resnet34(width=8, rng=np.random.default_rng(0))
    twin = torch_twin("resnet34", 8)
    assert list(model.state_dict()) == list(twin.state_dict()) and len(twin.state_dict()) == 218
    assert [v.shape for v in model.state_dict().values()] == [tuple(v.shape) for v in twin.state_dict().values()]
    # and at torchvision's width, counted from the twin (21,797,672 in torchvision's docs)
    assert sum(p.numel() for p in torch_twin("resnet34", 64).parameters()) == 21_797_672


def test_torchvision_sized_weights_load_unchanged():
    torch.manual_seed(1)
    twin = torch_twin("resnet18", 64)  # float32, as torchvision's checkpoints
    model = resnet18(rng=np.random.default_rng(0))
    model.load_state_dict(state_dict_from_torch(twin.state_dict()))
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, twin.state_dict()[key].numpy().astype(value.dtype), err_msg=key)
    assert model.conv1.weight.dtype == np.float64  # float32 weights widened exactly


# ----------------------------------------------------------------------------
# Numbers: forward, input gradient, parameter gradients, running statistics
# ----------------------------------------------------------------------------


def run_both(model, twin, x, mode):
    """Logits, input gradient and parameter gradients of sum(logits * R) on both sides."""
    model.train(mode == "train")
    twin.train(mode == "train")
    R = np.random.default_rng(7).standard_normal((x.shape[0], twin.fc.out_features))

    xm = Tensor(x, requires_grad=True)
    out = model(xm)
    (out * Tensor(R)).sum().backward()

    xt = torch.tensor(x, requires_grad=True)
    out_t = twin(xt)
    (out_t * torch.tensor(R)).sum().backward()
    return out, xm, out_t, xt


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_logits_and_all_gradients_match_the_torch_twin(arch, mode):
    model, twin = twin_pair(arch)
    # Train mode normalises with batch statistics. At 32x32, layer4 is 1x1 and each of
    # its batch norms sees only N = 2 numbers per channel: the normalised values are
    # +-1 up to eps, and the gradient through them is a cancellation that loses ~6
    # digits in any implementation (measured: 7e-10 relative, in both directions).
    # At 64x64 layer4 is 2x2 (8 numbers per channel) and the agreement is ~1e-13.
    size = 32 if mode == "eval" else 64
    x = np.random.default_rng(3).standard_normal((2, 3, size, size))
    out, xm, out_t, xt = run_both(model, twin, x, mode)

    assert_close(out.data, out_t.detach().numpy(), f"{arch} {mode} logits")
    assert_close(xm.grad.data, xt.grad.numpy(), f"{arch} {mode} input gradient")
    torch_params = dict(twin.named_parameters())
    names = [name for name, _ in model.named_parameters()]
    assert names == list(torch_params)
    for name, param in model.named_parameters():
        assert_close(param.grad.data, torch_params[name].grad.numpy(), f"{arch} {mode} grad of {name}")
    # train mode updates the running statistics (eval leaves them): same numbers afterwards
    for key, value in model.state_dict().items():
        assert_close(value, twin.state_dict()[key].numpy(), f"{arch} {mode} state {key}")
    if mode == "train":
        assert int(model.state_dict()["layer1.0.bn1.num_batches_tracked"]) == 4  # 3 + one batch


def test_a_batch_norm_statistic_that_is_not_loaded_changes_the_logits():
    """The test above would pass trivially if batch norm did nothing: it does not."""
    model, twin = twin_pair("resnet18")
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32))
    model.eval()
    before = model(x).data
    model.layer3[0].bn2.running_var[...] = 1.0
    assert np.max(np.abs(model(x).data - before)) > 1e-3


# ----------------------------------------------------------------------------
# Grad-CAM on the twin
# ----------------------------------------------------------------------------


def torch_gradcam(net, x, layer, target):
    """Grad-CAM (Selvaraju et al., eq. 1-2) from torch's activations and gradients at `layer`."""
    net.eval()
    captured = {}
    handle = dict(net.named_modules())[layer].register_forward_hook(lambda m, i, o: captured.update(A=o))
    try:
        out = net(torch.tensor(x))
        score = out[torch.arange(x.shape[0]), torch.tensor(target)].sum()
        (g,) = torch.autograd.grad(score, captured["A"])
    finally:
        handle.remove()
    A, g = captured["A"].detach(), g
    weights = g.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * A).sum(dim=1))


@pytest.mark.parametrize("arch, layer", [("resnet18", "layer4.1.conv2"), ("resnet18", "layer4"),
                                         ("resnet50", "layer4")])
def test_gradcam_matches_a_torch_computation(arch, layer):
    model, twin = twin_pair(arch, seed=2)
    x = np.random.default_rng(5).standard_normal((2, 3, 96, 96))  # layer4 is 3x3
    target = [1, 3]
    expected = torch_gradcam(twin, x, layer, target)
    raw = METHODS["gradcam"](model, x, layer, target)
    assert raw.shape == (2, 3, 3)
    assert np.max(raw) > 0  # a map that is not all zero
    assert_close(raw, expected.numpy(), f"{arch} Grad-CAM at {layer}")
    # and upsampled to the input (no normalisation): torch's bilinear, align_corners=False
    up = explain(model, x, "gradcam", layer, target, convention="paper")
    expected_up = torch.nn.functional.interpolate(expected[:, None], size=(96, 96), mode="bilinear",
                                                  align_corners=False)[:, 0]
    assert_close(up, expected_up.numpy(), f"{arch} upsampled Grad-CAM at {layer}")


# ----------------------------------------------------------------------------
# The blocks and the builder's checks
# ----------------------------------------------------------------------------


def test_bottleneck_names_shapes_and_downsample_rule():
    block = Bottleneck(16, 8, stride=2, rng=np.random.default_rng(0))
    assert [n for n, _ in block.named_modules()] == [
        "", "conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu", "downsample", "downsample.0", "downsample.1"]
    assert block.conv2.stride == (2, 2) and block.conv1.stride == (1, 1)  # ResNet v1.5: stride on the 3x3
    assert block(np.zeros((1, 16, 8, 8))).shape == (1, 32, 4, 4)
    assert Bottleneck(32, 8, rng=np.random.default_rng(0)).downsample is None  # 32 == 4 * 8, stride 1
    assert BasicBlock(8, 8).downsample is None


def test_initial_weights_follow_torchvisions_distributions():
    model = resnet18(width=16, rng=np.random.default_rng(0))
    w = model.layer3[0].conv2.weight.data  # fan_out = 64 * 3 * 3
    assert abs(w.std() / np.sqrt(2 / (64 * 9)) - 1) < 0.02 and abs(w.mean()) < 0.002
    assert np.all(model.bn1.weight.data == 1) and np.all(model.bn1.bias.data == 0)
    bound = 1 / np.sqrt(128)
    assert np.all(np.abs(model.fc.weight.data) <= bound) and model.fc.weight.data.max() > 0.9 * bound
    same = resnet18(width=16, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(same.layer3[0].conv2.weight.data, w)  # reproducible from the rng


def test_resnet_refuses_bad_arguments():
    with pytest.raises(TypeError, match="BasicBlock or Bottleneck"):
        ResNet(TorchBasicBlock, (2, 2, 2, 2))
    with pytest.raises(ValueError, match="four positive ints"):
        ResNet(BasicBlock, (2, 2, 2))
    with pytest.raises(ValueError, match="width must be a positive int"):
        ResNet(BasicBlock, (1, 1, 1, 1), width=0)
    with pytest.raises(TypeError, match="float32 or np.float64"):
        resnet18(width=4, dtype=np.int32)
