"""captum's published Grad-CAM numbers on its toy net (captum tests/attr/layer/test_grad_cam.py,
BasicModel_ConvNet_One_Conv; see docs/peers.md, Grad-CAM), reproduced with minicam.nn.

The net: conv 1 -> 2 channels, 3x3 kernels of ones, bias [-50, -75]; ReLU; flatten (8);
Linear 8 -> 4 with weight [ones(4, 5), -ones(4, 3)] and bias 0; ReLU.
Input arange(16) as (1, 1, 4, 4); target class 0.

By hand: the conv outputs are [[45, 54], [81, 90]] minus 50 and minus 75, i.e.
channel 0 [[-5, 4], [31, 40]] and channel 1 [[-30, -21], [6, 15]]. After the ReLU the
flattened vector is (0, 4, 31, 40, 0, 0, 6, 15), and class 0's logit is
(0 + 4 + 31 + 40 + 0) - (0 + 6 + 15) = 54 > 0, so the final ReLU passes the gradient.
The gradient at the conv output is the Linear row times the ReLU mask:
  channel 0: weights +1 +1 +1 +1, masks 0 1 1 1  ->  [[0, 1], [1, 1]],   mean  0.75
  channel 1: weights +1 -1 -1 -1, masks 0 0 1 1  ->  [[0, 0], [-1, -1]], mean -0.5
Map = 0.75 * channel 0 - 0.5 * channel 1 = [[11.25, 13.5], [20.25, 22.5]].
"""
from collections import OrderedDict

import numpy as np
import pytest

from minicam import nn
from minicam.cam.capture import capture
from minicam.cam.gradient import gradcam

EXPECTED_CONV = np.array([[11.25, 13.5], [20.25, 22.5]])
EXPECTED_TERMS = np.array([[[-3.75, 3.0], [23.25, 30.0]], [[15.0, 10.5], [-3.0, -7.5]]])
EXPECTED_RELU = np.array([[0.0, 4.0], [28.0, 32.5]])


def toy_net(with_input_layer=False):
    rng = np.random.default_rng(0)  # the weights are overwritten below
    layers = [("input", nn.Identity())] if with_input_layer else []
    layers += [
        ("conv1", nn.Conv2d(1, 2, 3, rng=rng)),
        ("relu1", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(8, 4, rng=rng)),
        ("relu2", nn.ReLU()),
    ]
    model = nn.Sequential(OrderedDict(layers))
    model.load_state_dict(
        {
            "conv1.weight": np.ones((2, 1, 3, 3)),
            "conv1.bias": np.array([-50.0, -75.0]),
            "fc1.weight": np.concatenate([np.ones((4, 5)), -np.ones((4, 3))], axis=1),
            "fc1.bias": np.zeros(4),
        }
    )
    return model.eval()


def toy_input():
    return np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)


def test_gradcam_at_the_conv_output():
    model = toy_net()
    signed = gradcam(model, toy_input(), "conv1", 0, relu=False)
    np.testing.assert_allclose(signed[0], EXPECTED_CONV, rtol=0, atol=1e-12)
    # the ReLU'd map is the same: every value is positive
    np.testing.assert_allclose(gradcam(model, toy_input(), "conv1", 0)[0], EXPECTED_CONV, rtol=0, atol=1e-12)


def test_per_channel_terms_and_gradient_means():
    cap = capture(toy_net(), toy_input(), "conv1", 0)
    np.testing.assert_array_equal(cap.A[0], [[[-5, 4], [31, 40]], [[-30, -21], [6, 15]]])
    np.testing.assert_array_equal(cap.output[0], [54.0, 54.0, 54.0, 54.0])
    g = cap.gradients().data
    np.testing.assert_array_equal(g[0], [[[0, 1], [1, 1]], [[0, 0], [-1, -1]]])
    alpha = g.mean(axis=(2, 3))
    np.testing.assert_array_equal(alpha[0], [0.75, -0.5])
    terms = alpha[:, :, None, None] * cap.A
    np.testing.assert_allclose(terms[0], EXPECTED_TERMS, rtol=0, atol=1e-12)
    np.testing.assert_allclose(terms[0].sum(axis=0), EXPECTED_CONV, rtol=0, atol=1e-12)


def test_gradcam_at_the_relu_layer():
    """At relu1 the activations are ReLU'd ([[0, 4], [31, 40]] and [[0, 0], [6, 15]]) and
    the gradient means are 0.75 and -0.5 again: 0.75 * ch0 - 0.5 * ch1."""
    signed = gradcam(toy_net(), toy_input(), "relu1", 0, relu=False)
    np.testing.assert_allclose(signed[0], EXPECTED_RELU, rtol=0, atol=1e-12)


def test_gradcam_at_the_layer_input():
    """captum's attribute_to_layer_input=True case at conv1 with inp[0, 0, 1, 1] = -4: the
    result is 0.5625 * inp. minicam has no 'layer input' switch; an Identity layer in front
    of conv1 exposes the same tensor. The gradient at the input is the 3x3 ones kernel
    spread over the conv's outputs; its mean over the 16 pixels is 0.5625."""
    x = toy_input()
    x[0, 0, 1, 1] = -4
    signed = gradcam(toy_net(with_input_layer=True), x, "input", 0, relu=False)
    np.testing.assert_allclose(signed, 0.5625 * x[:, 0], rtol=0, atol=1e-12)


def test_captum_itself_gives_these_numbers():
    """The same toy net in torch through captum 0.9.0's LayerGradCam: the published values."""
    from torch_required import require_torch

    torch = require_torch()
    captum_attr = pytest.importorskip("captum.attr")
    net = torch.nn.Sequential(OrderedDict(
        conv1=torch.nn.Conv2d(1, 2, 3), relu1=torch.nn.ReLU(), flatten=torch.nn.Flatten(),
        fc1=torch.nn.Linear(8, 4), relu2=torch.nn.ReLU(),
    )).double()
    net.load_state_dict({k: torch.tensor(v) for k, v in toy_net().state_dict().items()})
    x = torch.tensor(toy_input())
    conv = captum_attr.LayerGradCam(net, net.conv1)
    np.testing.assert_allclose(conv.attribute(x, target=0)[0, 0].detach().numpy(), EXPECTED_CONV, atol=1e-12)
    terms = conv.attribute(x, target=0, attr_dim_summation=False)[0].detach().numpy()
    np.testing.assert_allclose(terms, EXPECTED_TERMS, atol=1e-12)
    at_relu = captum_attr.LayerGradCam(net, net.relu1).attribute(x, target=0)[0, 0].detach().numpy()
    np.testing.assert_allclose(at_relu, EXPECTED_RELU, atol=1e-12)
    x2 = x.clone()
    x2[0, 0, 1, 1] = -4
    at_input = conv.attribute(x2, target=0, attribute_to_layer_input=True)[0, 0].detach().numpy()
    np.testing.assert_allclose(at_input, 0.5625 * x2[0, 0].detach().numpy(), atol=1e-12)
