"""minicam.interop: torch modules and state_dicts in, Keras (channels-last) weights in.

from_torch: every supported layer, converted and run on both sides in float64,
gives the same outputs and input gradients (~1e-12), the same named_modules and
state_dict, and each module's train/eval flag; unsupported modules fail with a
message naming the module and the way out. The Keras helpers are checked
against channels-last computations written here in NumPy (einsum), never
against themselves.
"""
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from torch_required import require_torch

torch = require_torch()
tnn = torch.nn

from minicam import Tensor, nn, ops  # noqa: E402
from minicam.interop import (  # noqa: E402
    conv_kernel_from_hwio, dense_kernel_from_keras, flatten_dense_from_keras, from_torch, images_from_nhwc,
    same_padding_from_keras, state_dict_from_torch,
)


def assert_close(actual, expected, what="", rtol=1e-12):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(float(np.max(np.abs(expected))), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-13 * scale, err_msg=what)


def randomise_batch_norms(net, generator):
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, tnn.BatchNorm2d):
                if m.weight is not None:
                    m.weight.copy_(0.5 + torch.rand(m.num_features, generator=generator))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.num_features, generator=generator))
                if m.running_mean is not None:
                    m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=generator))
                    m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=generator))
                    m.num_batches_tracked.fill_(5)


def every_layer_net(dropout_p=0.3):
    """A torch net that uses every supported layer, with named and numbered Sequentials.

    x (N, 3, 16, 16) -> conv 4 -> 16x16 -> maxpool 8x8 -> conv stride 2 (valid) 3x3 ->
    avgpool pad 1 2x2 -> adaptive (2, None) 2x2 -> flatten 20 -> fc 6 -> fc 3 -> softmax
    """
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = tnn.Sequential(OrderedDict(
        features=tnn.Sequential(
            tnn.Conv2d(3, 4, 3, padding=1),
            tnn.BatchNorm2d(4),
            tnn.ReLU(inplace=True),
            tnn.MaxPool2d(3, stride=2, padding=1),
            tnn.Conv2d(4, 5, (3, 2), stride=2, padding=(1, 0), dilation=(1, 2), bias=False),
            tnn.BatchNorm2d(5, eps=1e-3, momentum=None),
            tnn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
            tnn.Tanh(),
        ),
        pool=tnn.AdaptiveAvgPool2d((2, None)),
        flatten=tnn.Flatten(),
        drop=tnn.Dropout(dropout_p),
        hidden=tnn.Linear(5 * 2 * 4, 6),
        act=tnn.Sigmoid(),
        same=tnn.Identity(),
        fc=tnn.Linear(6, 3, bias=False),
        softmax=tnn.Softmax(dim=1),
    ))
    randomise_batch_norms(net, generator)
    return net.double()


def outputs_and_input_grads(twin, net, x):
    R = np.random.default_rng(1).standard_normal((x.shape[0], 3))
    xm = Tensor(x, requires_grad=True)
    out = twin(xm)
    (out * Tensor(R)).sum().backward()
    xt = torch.tensor(x, requires_grad=True)
    out_t = net(xt)
    (out_t * torch.tensor(R)).sum().backward()
    return out.data, xm.grad.data, out_t.detach().numpy(), xt.grad.numpy()


# ----------------------------------------------------------------------------
# from_torch: names, weights, numbers
# ----------------------------------------------------------------------------


def test_every_supported_layer_round_trips_in_eval_mode():
    net = every_layer_net().eval()
    twin = from_torch(net)
    assert [(n, type(m).__name__) for n, m in twin.named_modules()] == [
        (n, type(m).__name__) for n, m in net.named_modules()]
    assert list(twin.state_dict()) == list(net.state_dict())
    for key, value in twin.state_dict().items():
        np.testing.assert_array_equal(value, net.state_dict()[key].numpy(), err_msg=key)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16))
    out, grad, out_t, grad_t = outputs_and_input_grads(twin, net, x)
    assert_close(out, out_t, "output")
    assert_close(grad, grad_t, "input gradient")
    assert np.max(np.abs(grad)) > 1e-6  # the gradient is not trivially zero


def test_train_mode_is_kept_and_batch_norm_updates_match():
    # Dropout with p > 0 draws different masks in torch and minicam: p = 0 here
    net = every_layer_net(dropout_p=0.0).train()
    twin = from_torch(net)
    assert all(m.training for m in twin.modules())
    x = np.random.default_rng(2).standard_normal((3, 3, 16, 16))
    for step in range(2):  # two steps: momentum=None is a cumulative average over batches
        out, grad, out_t, grad_t = outputs_and_input_grads(twin, net, x + step)
        assert_close(out, out_t, f"train output, step {step}", rtol=1e-11)
        assert_close(grad, grad_t, f"train input gradient, step {step}", rtol=1e-11)
    for key, value in twin.state_dict().items():
        assert_close(value, net.state_dict()[key].numpy(), f"state {key} after two training steps")
    assert int(twin.state_dict()["features.5.num_batches_tracked"]) == 7  # 5 + 2


def test_mixed_modes_are_copied_module_by_module():
    net = every_layer_net().train()
    net.features[1].eval()  # a frozen batch norm inside a training net
    net.drop.eval()
    twin = from_torch(net)
    flags = {name: m.training for name, m in twin.named_modules()}
    assert flags == {name: m.training for name, m in net.named_modules()}
    assert flags["features.1"] is False and flags["drop"] is False and flags["features.5"] is True


def test_weights_are_converted_to_float64_by_default_or_float32_on_request():
    net = every_layer_net().float().eval()  # a float32 torch model
    twin = from_torch(net)
    w = net.features[0].weight.detach().numpy()
    assert twin.features[0].weight.dtype == np.float64
    np.testing.assert_array_equal(twin.features[0].weight.data, w.astype(np.float64))  # exact widening
    assert twin.state_dict()["features.1.num_batches_tracked"].dtype == np.int64
    twin32 = from_torch(net, dtype=np.float32)
    assert all(p.dtype == np.float32 for p in twin32.parameters())
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    expected = net(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(twin32(x).data, expected, rtol=2e-5, atol=1e-6)
    with pytest.raises(TypeError, match="np.float64 or np.float32"):
        from_torch(net, dtype=np.int64)


def test_the_twin_shares_nothing_with_torch():
    net = every_layer_net().eval()
    twin = from_torch(net)
    with torch.no_grad():
        net.features[0].weight.add_(1.0)
        net.features[1].running_mean.add_(1.0)
    assert not np.allclose(twin.features[0].weight.data, net.features[0].weight.detach().numpy())
    assert not np.allclose(twin.features[1].running_mean, net.features[1].running_mean.numpy())


@pytest.mark.parametrize("make", [
    lambda: tnn.BatchNorm2d(4, affine=False),
    lambda: tnn.BatchNorm2d(4, track_running_stats=False),
    lambda: tnn.BatchNorm2d(4, momentum=0.3, eps=0.01),
    lambda: tnn.BatchNorm2d(4, bias=False),  # torch 2.x: a weight without a bias
], ids=["no-affine", "no-running-stats", "momentum-eps", "no-bias"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batch_norm_settings_carry_over(make, mode):
    bn = make().double()
    randomise_batch_norms(bn, torch.Generator().manual_seed(3))
    bn.train(mode == "train")
    twin = from_torch(bn)
    assert (twin.eps, twin.momentum, twin.affine, twin.track_running_stats) == (
        bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    assert list(twin.state_dict()) == list(bn.state_dict())
    x = np.random.default_rng(4).standard_normal((3, 4, 5, 5))
    assert_close(twin(x).data, bn(torch.tensor(x)).detach().numpy(), "batch norm output", rtol=1e-11)
    for key, value in twin.state_dict().items():
        assert_close(value, bn.state_dict()[key].numpy(), key)


def test_single_layers_and_string_padding():
    torch.manual_seed(0)
    conv = tnn.Conv2d(2, 3, 3, padding="same", dilation=2).double()
    twin = from_torch(conv)
    assert isinstance(twin, nn.Conv2d) and twin.padding == "same"
    x = np.random.default_rng(0).standard_normal((1, 2, 7, 6))
    assert_close(twin(x).data, conv(torch.tensor(x)).detach().numpy(), "conv padding='same'")


def test_a_shared_module_stays_shared():
    relu = tnn.ReLU()
    net = tnn.Sequential(tnn.Linear(3, 3), relu, tnn.Linear(3, 3), relu).double()
    twin = from_torch(net)
    assert twin[1] is twin[3]
    assert [n for n, _ in twin.named_modules()] == [n for n, _ in net.named_modules()] == ["", "0", "1", "2"]


# ----------------------------------------------------------------------------
# from_torch: what it refuses, and how it says so
# ----------------------------------------------------------------------------


class Doubler(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(2, 2, 1)

    def forward(self, x):
        return 2 * self.conv(x)


class MyConv(tnn.Conv2d):
    def forward(self, x):
        return super().forward(x) + 1


def test_a_custom_module_is_refused_with_its_path_type_and_the_way_out():
    net = tnn.Sequential(OrderedDict(stem=tnn.ReLU(), body=tnn.Sequential(tnn.Identity(), Doubler())))
    with pytest.raises(TypeError) as error:
        from_torch(net)
    message = str(error.value)
    assert "'body.1'" in message and "Doubler" in message
    assert "custom torch.nn.Module subclass" in message
    assert "state_dict_from_torch" in message and "load_state_dict" in message
    with pytest.raises(TypeError, match="the root module .*Doubler"):
        from_torch(Doubler())
    with pytest.raises(TypeError, match="'0' .*MyConv"):  # a subclass of a supported layer: its forward may differ
        from_torch(tnn.Sequential(MyConv(1, 1, 1)))


@pytest.mark.parametrize("module, pattern", [
    (tnn.Sequential(tnn.GELU()), r"'0': minicam has no equivalent of torch\.nn\.modules\.activation\.GELU"),
    (tnn.ModuleList([tnn.ReLU()]), "no equivalent of .*ModuleList"),
    (tnn.Conv2d(4, 4, 3, groups=2), "groups=2; minicam computes groups=1 only"),
    (tnn.Conv2d(1, 1, 3, padding_mode="reflect"), "padding_mode='reflect'"),
    (tnn.MaxPool2d(2, ceil_mode=True), "ceil_mode=True"),
    (tnn.AvgPool2d(2, ceil_mode=True), "ceil_mode=True"),
    (tnn.Softmax(), "dim=None"),
])
def test_unsupported_layers_and_settings_are_named(module, pattern):
    with pytest.raises((TypeError, ValueError), match=pattern):
        from_torch(module)


def test_hooks_are_refused_and_non_modules_too():
    net = tnn.Sequential(tnn.Linear(2, 2))
    handle = net[0].register_forward_hook(lambda m, i, o: o * 2)
    with pytest.raises(ValueError, match="'0' .* 1 forward hook.*handle.remove"):
        from_torch(net)
    handle.remove()
    from_torch(net)  # fine once removed
    with pytest.raises(TypeError, match="expected a torch.nn.Module.*state_dict_from_torch"):
        from_torch(net.state_dict())


# ----------------------------------------------------------------------------
# state_dict_from_torch
# ----------------------------------------------------------------------------


def test_state_dict_from_torch_types_copies_and_loads():
    net = tnn.Sequential(tnn.Conv2d(2, 3, 3), tnn.BatchNorm2d(3))  # float32
    sd = state_dict_from_torch(net.state_dict())
    assert list(sd) == list(net.state_dict())
    assert sd["0.weight"].dtype == np.float32 and isinstance(sd["0.weight"], np.ndarray)
    assert sd["1.num_batches_tracked"].dtype == np.int64 and sd["1.num_batches_tracked"].shape == ()
    np.testing.assert_array_equal(sd["0.weight"], net[0].weight.detach().numpy())
    with torch.no_grad():
        net[0].weight.zero_()
    assert np.any(sd["0.weight"] != 0)  # a copy, not a view of the tensor

    sd64 = state_dict_from_torch(net.state_dict(), dtype=np.float64)
    assert sd64["0.weight"].dtype == np.float64 and sd64["1.num_batches_tracked"].dtype == np.int64

    twin = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    twin.load_state_dict(sd)
    np.testing.assert_array_equal(twin[0].weight.data, sd["0.weight"])  # the values from before zero_()


def test_state_dict_from_torch_accepts_tensors_with_grad_half_precision_and_arrays():
    mixed = OrderedDict([
        ("a", torch.ones(2, requires_grad=True)),
        ("b", torch.tensor([1.5, -2.25], dtype=torch.bfloat16)),
        ("c", torch.tensor([0.5], dtype=torch.float16)),
        ("d", np.arange(3.0)),
        ("e", Tensor(np.ones(2))),
        ("bn.num_batches_tracked", np.array(7, dtype=np.int32)),
    ])
    sd = state_dict_from_torch(mixed)
    assert [sd[k].dtype for k in "abcde"] == [np.float32, np.float32, np.float32, np.float64, np.float64]
    np.testing.assert_array_equal(sd["b"], [1.5, -2.25])
    assert sd["bn.num_batches_tracked"].dtype == np.int64 and int(sd["bn.num_batches_tracked"]) == 7
    assert sd["d"] is not mixed["d"]


def test_state_dict_from_torch_errors():
    with pytest.raises(TypeError, match=r"a module: pass module\.state_dict\(\)"):
        state_dict_from_torch(tnn.Linear(2, 2))
    with pytest.raises(TypeError, match="keys must be strings"):
        state_dict_from_torch({0: np.ones(2)})
    with pytest.raises(TypeError, match="'w' holds a str"):
        state_dict_from_torch({"w": "weights.pt"})
    with pytest.raises(TypeError, match="'w' has dtype complex128"):
        state_dict_from_torch({"w": np.ones(2, dtype=complex)})
    with pytest.raises(TypeError, match="np.float64 or np.float32"):
        state_dict_from_torch({}, dtype=np.float16)


# ----------------------------------------------------------------------------
# Keras / channels-last helpers, against NumPy computations written here
# ----------------------------------------------------------------------------


def conv_nhwc_by_hand(x, kernel, bias, stride, pads):
    """A channels-last convolution as Keras computes it, written out:
    y[n, oh, ow, k] = b[k] + sum_{i, j, c} xp[n, oh*s + i, ow*s + j, c] * kernel[i, j, c, k]
    with xp zero-padded (top, bottom, left, right) = pads."""
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    kh, kw = kernel.shape[:2]
    OH = (xp.shape[1] - kh) // stride + 1
    OW = (xp.shape[2] - kw) // stride + 1
    y = np.empty((x.shape[0], OH, OW, kernel.shape[3]))
    for oh in range(OH):
        for ow in range(OW):
            window = xp[:, oh * stride:oh * stride + kh, ow * stride:ow * stride + kw, :]  # (N, kh, kw, C)
            y[:, oh, ow, :] = np.einsum("nijc,ijck->nk", window, kernel) + bias
    return y


def test_a_keras_conv_equals_minicams_after_conversion():
    rng = np.random.default_rng(0)
    x_nhwc = rng.standard_normal((2, 7, 6, 3))
    kernel = rng.standard_normal((3, 2, 3, 4))  # (kh, kw, in, out), an asymmetric kernel
    bias = rng.standard_normal(4)
    expected = conv_nhwc_by_hand(x_nhwc, kernel, bias, stride=1, pads=(0, 0, 0, 0))  # padding="valid"
    y = ops.conv2d(images_from_nhwc(x_nhwc), conv_kernel_from_hwio(kernel), bias)
    assert_close(y.data, expected.transpose(0, 3, 1, 2), "valid conv")
    # through a Conv2d layer, as a port would do it
    conv = nn.Conv2d(3, 4, (3, 2))
    conv.weight.data[...] = conv_kernel_from_hwio(kernel)
    conv.bias.data[...] = bias
    assert_close(conv(images_from_nhwc(x_nhwc)).data, expected.transpose(0, 3, 1, 2), "Conv2d layer")


def test_keras_same_padding_with_stride_2_is_asymmetric():
    assert same_padding_from_keras(32, 32, 3, stride=2) == (0, 1, 0, 1)
    assert same_padding_from_keras(224, 224, 7, stride=2) == (2, 3, 2, 3)  # torch's ResNet stem pads 3 and 3
    assert same_padding_from_keras(7, 6, 3) == (1, 1, 1, 1)  # stride 1, odd kernel: symmetric
    assert same_padding_from_keras(5, 5, (1, 4)) == (1, 2, 0, 0)  # even kernel: the extra pixel at the end
    assert same_padding_from_keras(9, 9, 3, stride=1, dilation=2) == (2, 2, 2, 2)
    assert same_padding_from_keras(6, 6, 1, stride=2) == (0, 0, 0, 0)

    rng = np.random.default_rng(1)
    x_nhwc = rng.standard_normal((1, 8, 8, 2))
    kernel, bias = rng.standard_normal((3, 3, 2, 3)), np.zeros(3)
    left, right, top, bottom = same_padding_from_keras(8, 8, 3, stride=2)
    expected = conv_nhwc_by_hand(x_nhwc, kernel, bias, stride=2, pads=(top, bottom, left, right))
    assert expected.shape[1:3] == (4, 4)  # "same": ceil(8 / 2)
    x = ops.pad(Tensor(images_from_nhwc(x_nhwc)), (left, right, top, bottom))
    y = ops.conv2d(x, conv_kernel_from_hwio(kernel), stride=2)
    assert_close(y.data, expected.transpose(0, 3, 1, 2), "same padding")
    symmetric = ops.conv2d(images_from_nhwc(x_nhwc), conv_kernel_from_hwio(kernel), stride=2, padding=1)
    assert np.max(np.abs(symmetric.data - y.data)) > 0.1  # torch-style padding=1 is a different conv
    with pytest.raises(ValueError, match="stride must be a positive int"):
        same_padding_from_keras(8, 8, 3, stride=0)


def test_dense_kernel_and_images():
    rng = np.random.default_rng(2)
    kernel, bias, x = rng.standard_normal((5, 3)), rng.standard_normal(3), rng.standard_normal((4, 5))
    assert_close(ops.linear(Tensor(x), Tensor(dense_kernel_from_keras(kernel)), Tensor(bias)).data,
                 x @ kernel + bias, "dense")
    x_nhwc = rng.standard_normal((2, 3, 4, 5))
    nchw = images_from_nhwc(x_nhwc)
    assert nchw.shape == (2, 5, 3, 4) and nchw.flags["C_CONTIGUOUS"]
    assert nchw[1, 4, 2, 3] == x_nhwc[1, 2, 3, 4]


def test_flatten_dense_reorders_the_rows():
    rng = np.random.default_rng(3)
    C, H, W, out = 3, 2, 4, 5
    fmap_nhwc = rng.standard_normal((2, H, W, C))
    kernel, bias = rng.standard_normal((H * W * C, out)), rng.standard_normal(out)
    expected = fmap_nhwc.reshape(2, -1) @ kernel + bias  # Keras: Flatten (h, w, c order), then Dense

    weight = flatten_dense_from_keras(kernel, C, H, W)
    flat = ops.flatten(Tensor(images_from_nhwc(fmap_nhwc)), 1)  # minicam/torch: (c, h, w) order
    assert_close(ops.linear(flat, Tensor(weight), Tensor(bias)).data, expected, "flatten -> dense")
    wrong = ops.linear(flat, Tensor(dense_kernel_from_keras(kernel)), Tensor(bias)).data
    assert np.max(np.abs(wrong - expected)) > 0.1  # the plain transpose is the classic bug

    # the docstring's worked example: C=2, H=1, W=2, kernel rows [a, b, c, d] -> weight row [a, c, b, d]
    a, b, c, d = 1.0, 2.0, 3.0, 4.0
    np.testing.assert_array_equal(flatten_dense_from_keras(np.array([[a], [b], [c], [d]]), 2, 1, 2),
                                  [[a, c, b, d]])


@pytest.mark.parametrize("call, pattern", [
    (lambda: conv_kernel_from_hwio(np.ones((3, 3, 2))),
     r"4-D array \(kh, kw, in_channels, out_channels\), got shape \(3, 3, 2\)"),
    (lambda: conv_kernel_from_hwio(np.ones((3, 2))), "dense_kernel_from_keras"),
    (lambda: dense_kernel_from_keras(np.ones((2, 3, 4))), r"2-D array \(in_features, out_features\)"),
    (lambda: images_from_nhwc(np.ones((8, 8, 3))), r"\(N, H, W, C\), got shape \(8, 8, 3\); for one image"),
    (lambda: flatten_dense_from_keras(np.ones(24), 3, 2, 4), "2-D array"),
    (lambda: flatten_dense_from_keras(np.ones((24, 5)), 3, 2, 2), "24 input rows but the flattened map"),
    (lambda: flatten_dense_from_keras(np.ones((24, 5)), 3, 2, 4.0), "width must be a positive int"),
])
def test_wrong_ranks_and_shapes_are_named(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_minicam_imports_without_torch():
    """interop imports torch inside functions only: a fresh interpreter that blocks torch still imports it."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "import minicam, minicam.interop, minicam.models\n"
            "import numpy as np\n"
            "sd = minicam.interop.state_dict_from_torch({'w': np.ones(2)})\n"
            "assert sd['w'].dtype == np.float64\n"
            "print('ok')")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root)
    assert result.stdout.strip() == "ok", result.stderr
