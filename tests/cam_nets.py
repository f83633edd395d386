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
