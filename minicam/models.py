"""The course's networks, with layer names that read well in named_modules().

LessonCNN      three conv blocks -> global average pooling -> Linear. The last
               convolution feeds GAP -> Linear, so CAM applies; its layers are
               "features.conv1" ... "features.relu3", then "pool", "flatten", "fc".
FlattenHeadCNN the same features, then flatten -> Linear: CAM does not apply,
               and HiResCAM and Grad-CAM differ.
TinyResNet     a small residual net with BatchNorm, named like torchvision's
               ResNets ("conv1", "bn1", "layer1.0.conv1", ..., "fc").
ResNet         torchvision's ResNet (BasicBlock or Bottleneck), with exactly its
               module names and state_dict keys, so torchvision weights load
               unchanged; `resnet18`, `resnet34`, `resnet50` build the standard
               depths, at any `width` (64 is torchvision's).

`lesson_cnn(pretrained=True)` loads the weights shipped in minicam/weights/
(trained by `python -m minicam.train`, see minicam/train.py for the command).
"""
from __future__ import annotations

from collections import OrderedDict
from importlib import resources

import numpy as np

from minicam import files, nn, ops
from minicam.nn.module import random_generator


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
# torchvision's ResNets
# ----------------------------------------------------------------------------
#
# Structure, names and order follow torchvision/models/resnet.py (He et al. 2016,
# "Deep Residual Learning for Image Recognition", Table 1; torchvision's Bottleneck
# is "ResNet v1.5": the stride sits on the 3x3 convolution, not on the first 1x1).
# Modules are registered in torchvision's order, so named_modules() and
# state_dict() list the same names in the same order:
#
#   conv1 bn1 relu maxpool layer1..layer4 avgpool fc          (no "flatten":
#   torchvision flattens with a function call in forward, and so does ResNet here)
#
# and torchvision's weights load unchanged:
#
#   model = resnet50()
#   model.load_state_dict(state_dict_from_torch(torch.load("resnet50-0676ba61.pth")))
#
# (minicam.interop.state_dict_from_torch turns the tensors into NumPy arrays).


class Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck block (ResNet-50/101/152).

    1x1 conv (channels) - bn - relu - 3x3 conv (channels, `stride`) - bn - relu -
    1x1 conv (4 * channels) - bn, plus the input (through `downsample`, a strided
    1x1 conv and a bn, when the shape changes), then relu.

    x (N, in_channels, H, W) -> (N, 4 * channels, H / stride, W / stride)
    """

    expansion = 4

    def __init__(self, in_channels, channels, stride=1, dtype=None, rng=None):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False, rng=rng, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(channels, dtype=dtype)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False, rng=rng, dtype=dtype)
        self.bn2 = nn.BatchNorm2d(channels, dtype=dtype)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False, rng=rng, dtype=dtype)
        self.bn3 = nn.BatchNorm2d(out_channels, dtype=dtype)
        self.relu = nn.ReLU()  # registered after bn3, as in torchvision (named_modules order)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, rng=rng, dtype=dtype),
                nn.BatchNorm2d(out_channels, dtype=dtype),
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        # the same ReLU module runs three times: a hook on "...relu" keeps the last call
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet: stem, four stages of residual blocks, GAP, Linear.

    block    BasicBlock (ResNet-18/34) or Bottleneck (ResNet-50/101/152)
    layers   blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18
    width    channels of the stem and of stage 1 (torchvision: 64); stages 1-4
             have width, 2w, 4w, 8w channels (times 4 after a Bottleneck)

    x (N, in_channels, H, W)
      conv1 7x7 stride 2 pad 3 (no bias) - bn1 - relu    (N, w, H/2, W/2)
      maxpool 3x3 stride 2 pad 1                          (N, w, H/4, W/4)
      layer1 (stride 1) layer2, layer3, layer4 (stride 2) (N, 8w * expansion, H/32, W/32)
      avgpool (GAP) - flatten (a function call) - fc      (N, num_classes)
    (sizes rounded as the convolution formula says: 224 -> 112 -> 56 -> 28 -> 14 -> 7.)

    Initial weights follow torchvision's distributions (not its random stream):
    convolutions N(0, 2 / fan_out) (kaiming_normal_, mode="fan_out"), batch norm
    weight 1 and bias 0, fc torch's default uniform. The Grad-CAM layer of the
    papers is "layer4" (the last stage's output).
    """

    def __init__(self, block, layers, num_classes=1000, width=64, in_channels=3, dtype=None, rng=None):
        super().__init__()
        if block not in (BasicBlock, Bottleneck):
            raise TypeError(f"ResNet: block must be BasicBlock or Bottleneck, got {block!r}")
        layers = tuple(layers)
        if len(layers) != 4 or not all(isinstance(n, int) and n >= 1 for n in layers):
            raise ValueError(f"ResNet: layers must be four positive ints (blocks per stage), got {layers!r}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"ResNet: width must be a positive int (torchvision: 64), got {width!r}")
        rng = random_generator(rng, "ResNet")  # the default generator (nn.manual_seed) when None
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False, rng=rng, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(width, dtype=dtype)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        previous = width
        for stage, count in enumerate(layers, start=1):
            channels = width * 2 ** (stage - 1)
            blocks = []
            for b in range(count):
                stride = 2 if (stage > 1 and b == 0) else 1
                blocks.append(block(previous, channels, stride, dtype=dtype, rng=rng))
                previous = channels * block.expansion
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(previous, num_classes, rng=rng, dtype=dtype)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _kaiming_normal_fan_out(module.weight.data, rng)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        x = ops.flatten(x, 1)  # torchvision: torch.flatten(x, 1), a function, so no "flatten" module
        return self.fc(x)


def _kaiming_normal_fan_out(weight, rng) -> None:
    """torch.nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu"), in place:
    N(0, std^2) with std = gain / sqrt(fan_out), gain = sqrt(2), fan_out = K * kh * kw
    (He et al. 2015, "Delving Deep into Rectifiers", eq. 10 applied to the backward pass)."""
    fan_out = weight.shape[0] * weight.shape[2] * weight.shape[3]
    weight[...] = rng.standard_normal(weight.shape) * (np.sqrt(2.0) / np.sqrt(fan_out))


def resnet18(num_classes=1000, width=64, in_channels=3, dtype=None, rng=None) -> ResNet:
    """ResNet-18: BasicBlocks (2, 2, 2, 2). At width 64: 11,689,512 parameters, 122 state_dict keys."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, width, in_channels, dtype, rng)


def resnet34(num_classes=1000, width=64, in_channels=3, dtype=None, rng=None) -> ResNet:
    """ResNet-34: BasicBlocks (3, 4, 6, 3). At width 64: 21,797,672 parameters, 218 state_dict keys."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, width, in_channels, dtype, rng)


def resnet50(num_classes=1000, width=64, in_channels=3, dtype=None, rng=None) -> ResNet:
    """ResNet-50: Bottlenecks (3, 4, 6, 3). At width 64: 25,557,032 parameters, 320 state_dict keys."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, width, in_channels, dtype, rng)


# ----------------------------------------------------------------------------
# Shipped weights
# ----------------------------------------------------------------------------

WEIGHTS_FILE = "lesson_cnn.npz"


def load_weights(model, path) -> None:
    """Load an .npz state_dict into `model` (no pickle: allow_pickle=False). The entry
    minicam.files.MARK_KEY is the mark of a file minicam wrote, not a weight."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:  # NumPy's own message would suggest allow_pickle=True: never
        raise ValueError(f"{path} is not a weights file minicam can read: expected an .npz archive of named arrays "
                         "(np.savez(path, **model.state_dict())), which is loaded without pickle") from error
    if isinstance(archive, np.ndarray):
        raise ValueError(f"{path} holds one array of shape {archive.shape}, not named weights: expected an .npz "
                         "archive of a state_dict (np.savez(path, **model.state_dict()))")
    with archive:
        model.load_state_dict({key: archive[key] for key in archive.files if key != files.MARK_KEY})


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
