"""Small networks for CAM tests, and identical torch twins.

gap_net      conv -> relu -> conv -> relu -> global average pooling -> flatten -> linear
             (CAM applies; Grad-CAM's weights are exactly W_c / (h w))
flatten_net  conv -> relu -> maxpool -> conv -> relu -> flatten -> linear
             (CAM does not apply; HiResCAM and Grad-CAM differ)
torch_twin   the same architecture in torch with the same weights (float64)

Layer names (for `layer=`): "conv1", "relu1", "conv2", "relu2", ...
"""
from collections import OrderedDict

import numpy as np

from minicam import nn


def gap_net(rng, in_channels=3, hidden=4, channels=5, classes=3, dtype=np.float64):
    model = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(in_channels, hidden, 3, padding=1, rng=rng, dtype=dtype)),
        ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(hidden, channels, 3, padding=1, rng=rng, dtype=dtype)),
        ("relu2", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(channels, classes, rng=rng, dtype=dtype)),
    ]))
    return model.eval()


def flatten_net(rng, in_channels=3, size=8, hidden=4, channels=5, classes=3, dtype=np.float64):
    side = (size // 2)
    model = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(in_channels, hidden, 3, padding=1, rng=rng, dtype=dtype)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(hidden, channels, 3, padding=1, rng=rng, dtype=dtype)),
        ("relu2", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(channels * side * side, classes, rng=rng, dtype=dtype)),
    ]))
    return model.eval()


def bn_net(rng, dtype=np.float64):
    """A GAP net with a batch-norm layer whose running statistics are not the defaults
    (so that a capture run in train mode would change the maps and the statistics)."""
    model = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 4, 3, padding=1, rng=rng, dtype=dtype)),
        ("bn1", nn.BatchNorm2d(4, dtype=dtype)),
        ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(4, 5, 3, padding=1, rng=rng, dtype=dtype)),
        ("relu2", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(5, 3, rng=rng, dtype=dtype)),
    ]))
    model.bn1.running_mean[:] = rng.standard_normal(4) * 0.3
    model.bn1.running_var[:] = rng.uniform(0.5, 2, 4)
    return model


def torch_twin(model):
    """A torch.nn.Sequential with the same layers, names and weights (float64, eval mode)."""
    import torch

    layers = OrderedDict()
    for name, m in model.named_children():
        kind = type(m).__name__
        if kind == "Conv2d":
            t = torch.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
                                dilation=m.dilation, bias=m.bias is not None)
        elif kind == "Linear":
            t = torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        elif kind == "ReLU":
            t = torch.nn.ReLU()
        elif kind == "MaxPool2d":
            t = torch.nn.MaxPool2d(m.kernel_size, m.stride, m.padding)
        elif kind == "AdaptiveAvgPool2d":
            t = torch.nn.AdaptiveAvgPool2d(m.output_size)
        elif kind == "Flatten":
            t = torch.nn.Flatten()
        else:
            raise NotImplementedError(f"torch_twin: no twin for {kind}")
        layers[name] = t
    twin = torch.nn.Sequential(layers).double().eval()
    twin.load_state_dict({k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in model.state_dict().items()})
    return twin


def images(rng, n=2, channels=3, size=8, dtype=np.float64):
    return rng.standard_normal((n, channels, size, size)).astype(dtype)


# ----------------------------------------------------------------------------
# Helpers shared by the CAM test modules
# ----------------------------------------------------------------------------

NETS = {"gap": gap_net, "flatten": flatten_net}


def setup(net, seed=0, n=3, dtype=np.float64):
    """A seeded net from NETS and n images for it."""
    rng = np.random.default_rng(seed)
    model = NETS[net](rng, dtype=dtype)
    return model, images(rng, n, dtype=dtype)


def classes_for(model, x, target):
    """Each image's class as minicam resolves `target` (None: the argmax)."""
    from minicam import Tensor, no_grad

    with no_grad():
        out = model(Tensor(x)).data
    if target is None:
        return out.argmax(axis=1)
    return np.broadcast_to(np.asarray(target), (len(x),)).astype(np.int64)


def assert_close(actual, expected, rtol=1e-10):
    """Element-wise rtol, with an absolute floor of rtol * max(1, max|expected|)."""
    expected = np.asarray(expected)
    atol = rtol * max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def record(what, dtype, error):
    """Keep the worst error per check in opcheck.WORST_ERRORS (written out by conftest.py
    when MINICAM_ERROR_REPORT is set), next to the ops' errors against torch."""
    from opcheck import WORST_ERRORS

    key = (f"cam {what}", np.dtype(dtype).name)
    WORST_ERRORS[key] = max(WORST_ERRORS.get(key, 0.0), float(error))


def relu(x):
    return np.maximum(x, 0)
