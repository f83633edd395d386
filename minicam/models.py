"""The course's networks, with layer names that read well in named_modules().

LessonCNN      three conv blocks -> global average pooling -> Linear. The last
               convolution feeds GAP -> Linear, so CAM applies; its layers are
               "features.conv1" ... "features.relu3", then "pool", "flatten", "fc".
FlattenHeadCNN the same features, then flatten -> Linear: CAM does not apply,
               and HiResCAM and Grad-CAM differ.
TinyResNet     a small residual net with BatchNorm, named like torchvision's
               ResNets ("conv1", "bn1", "layer1.0.conv1", ..., "fc").

`lesson_cnn(pretrained=True)` loads the weights shipped in minicam/weights/
(trained by `python -m minicam.train`, see minicam/train.py for the command).
"""
from __future__ import annotations

from collections import OrderedDict
from importlib import resources

import numpy as np

from minicam import nn


def _conv_block(index, in_channels, out_channels, rng, dtype, pool):
    layers = [
        (f"conv{index}", nn.Conv2d(in_channels, out_channels, 3, padding=1, rng=rng, dtype=dtype)),
        (f"relu{index}", nn.ReLU()),
    ]
    if pool:
        layers.append((f"pool{index}", nn.MaxPool2d(2)))
    return layers


def _features(channels, in_channels, rng, dtype):
    layers, previous = [], in_channels
    for i, width in enumerate(channels, start=1):
        layers += _conv_block(i, previous, width, rng, dtype, pool=i < len(channels))
        previous = width
    return nn.Sequential(OrderedDict(layers))


class LessonCNN(nn.Module):
    """conv-relu-pool, conv-relu-pool, conv-relu -> GAP -> Linear.

    x (N, 3, H, W) -> features (N, K, H/4, W/4) -> GAP (N, K) -> logits (N, classes).
    Any input size divisible by 4 works (the head averages over positions).
    """

    def __init__(self, channels=(8, 16, 32), classes=3, in_channels=3, dtype=None, rng=None):
        super().__init__()
        self.features = _features(channels, in_channels, rng, dtype)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels[-1], classes, rng=rng, dtype=dtype)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.features(x))))


class FlattenHeadCNN(nn.Module):
    """The same features, then flatten -> Linear: every position has its own weights.

    Needs a fixed input size (`size`), because the Linear layer sees K*(size/4)^2 numbers.
    """

    def __init__(self, channels=(8, 16, 32), classes=3, in_channels=3, size=32, dtype=None, rng=None):
        super().__init__()
        if size % 4:
            raise ValueError(f"size must be divisible by 4 (two 2x2 poolings), got {size}")
        self.features = _features(channels, in_channels, rng, dtype)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels[-1] * (size // 4) ** 2, classes, rng=rng, dtype=dtype)

    def forward(self, x):
        return self.fc(self.flatten(self.features(x)))


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: conv-bn-relu-conv-bn, plus the input
    (through `downsample` when the shape changes), then relu."""

    expansion = 1

    def __init__(self, in_channels, channels, stride=1, dtype=None, rng=None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False, rng=rng, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(channels, dtype=dtype)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False, rng=rng, dtype=dtype)
        self.bn2 = nn.BatchNorm2d(channels, dtype=dtype)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False, rng=rng, dtype=dtype),
                nn.BatchNorm2d(channels, dtype=dtype),
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # torchvision calls the same ReLU module twice; a hook on "...relu" fires twice,
        # and a capture at it keeps the second call: the block's output.
        return self.relu(out + identity)


class TinyResNet(nn.Module):
    """stem conv-bn-relu, then stages of BasicBlocks, GAP, Linear (torchvision names)."""

    def __init__(self, widths=(8, 16), blocks=(1, 1), classes=3, in_channels=3, dtype=None, rng=None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False, rng=rng, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(widths[0], dtype=dtype)
        self.relu = nn.ReLU()
        previous = widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks), start=1):
            layers = []
            for b in range(count):
                stride = 2 if (stage > 1 and b == 0) else 1
                layers.append(BasicBlock(previous, width, stride, dtype=dtype, rng=rng))
                previous = width
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
        self.stages = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(previous, classes, rng=rng, dtype=dtype)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        for stage in range(1, self.stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(self.flatten(self.avgpool(x)))


# ----------------------------------------------------------------------------
# Shipped weights
# ----------------------------------------------------------------------------

WEIGHTS_FILE = "lesson_cnn.npz"


def load_weights(model, path) -> None:
    """Load an .npz state_dict into `model` (no pickle: allow_pickle=False)."""
    with np.load(path, allow_pickle=False) as archive:
        model.load_state_dict({key: archive[key] for key in archive.files})


def lesson_cnn(pretrained: bool = True) -> LessonCNN:
    """The lesson CNN in eval mode, with the shipped trained weights by default."""
    model = LessonCNN()
    if pretrained:
        weights = resources.files("minicam") / "weights" / WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"the shipped weights {WEIGHTS_FILE} are missing; retrain with `python -m minicam.train`")
        with resources.as_file(weights) as path:
            load_weights(model, path)
    return model.eval()
