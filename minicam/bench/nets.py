"""The benchmarked nets, their torch twins, and hand-written torch CAM pipelines."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from minicam import models, nn



# ----------------------------------------------------------------------------
# The nets
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NetSpec:
    name: str
    description: str
    build: Callable  # (dtype) -> model in eval mode, the same weights on every call
    layer: str       # the layer the CAM methods explain: the last convolutional stage
    size: int        # input height = width


def _lesson(dtype):
    return models.lesson_cnn(pretrained=True).to(dtype)


def _tinyresnet(dtype):
    return models.TinyResNet(dtype=dtype, rng=np.random.default_rng(0)).eval()


def _resnet18(dtype):
    return models.resnet18(num_classes=10, width=16, dtype=dtype, rng=np.random.default_rng(0)).eval()


NETS = {
    "lesson": NetSpec("lesson", "LessonCNN: channels (8, 16, 32), shipped weights, 3 classes, 32x32 input",
                      _lesson, "features.relu3", 32),
    "tinyresnet": NetSpec("tinyresnet", "TinyResNet: widths (8, 16), one BasicBlock each, 3 classes, 32x32 input",
                          _tinyresnet, "layer2", 32),
}
if hasattr(models, "resnet18"):
    NETS["resnet18"] = NetSpec("resnet18", "resnet18 at width 16 (torchvision: 64), 10 classes, 112x112 input "
                               "(layer4 is 4x4)", _resnet18, "layer4", 112)
DEFAULT_NETS = ("lesson", "resnet18" if "resnet18" in NETS else "tinyresnet")


# ----------------------------------------------------------------------------
# The same nets in torch
# ----------------------------------------------------------------------------


def torch_twin(model, torch):
    """The same network in torch, in eval mode, with the same weights.

    Each minicam layer becomes its torch namesake with the same arguments. A
    container (LessonCNN, BasicBlock, ...) becomes a torch Module that runs
    minicam's own forward method: those call only their sub-modules and `+`,
    which work on torch tensors too. ResNet flattens with minicam.ops.flatten
    (torchvision with torch.flatten), so it gets a torch forward of its own.
    The weights are copied by load_state_dict (both use torch's keys); run()
    checks that the logits agree.
    """
    dtype = torch.float32 if model_dtype(model) == np.float32 else torch.float64
    twin = _torch_module(model, torch).to(dtype)  # first: loading float64 weights into float32 would round them
    state = {key: torch.from_numpy(np.array(value)) for key, value in model.state_dict().items()}
    twin.load_state_dict(state)
    return twin.eval()


def _torch_module(module, torch):
    tnn = torch.nn
    if isinstance(module, nn.Conv2d):
        return tnn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                          module.dilation, module.groups, bias=module.bias is not None)
    if isinstance(module, nn.BatchNorm2d):
        return tnn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
    if isinstance(module, nn.Linear):
        return tnn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    if isinstance(module, nn.MaxPool2d):
        return tnn.MaxPool2d(module.kernel_size, module.stride, module.padding, module.dilation,
                             ceil_mode=module.ceil_mode)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return tnn.AdaptiveAvgPool2d(module.output_size)
    if isinstance(module, nn.Flatten):
        return tnn.Flatten(module.start_dim, module.end_dim)
    simple = {nn.ReLU: tnn.ReLU, nn.Identity: tnn.Identity, nn.Sigmoid: tnn.Sigmoid, nn.Tanh: tnn.Tanh}
    if type(module) in simple:
        return simple[type(module)]()
    if isinstance(module, nn.Sequential):
        return tnn.Sequential(_torch_children(module, torch))
    if type(module).__name__ == "ResNet":
        forward = _torch_resnet_forward
    else:
        forward = type(module).forward
    twin_class = type(f"Torch{type(module).__name__}", (tnn.Module,), {"forward": forward})
    twin = twin_class()
    for name, child in _torch_children(module, torch).items():
        twin.add_module(name, child)
    private = {"training", "_parameters", "_buffers", "_non_persistent_buffers", "_modules", "_forward_hooks"}
    for name, value in vars(module).items():  # plain settings such as TinyResNet.stages
        if name not in private and not name.startswith("_"):
            setattr(twin, name, value)
    return twin


def _torch_children(module, torch):
    from collections import OrderedDict

    return OrderedDict((name, _torch_module(child, torch)) for name, child in module._modules.items()
                       if child is not None)


def _torch_resnet_forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(self.avgpool(x).flatten(1))


def model_dtype(model):
    return next(iter(model.parameters())).dtype


# ----------------------------------------------------------------------------
# Hand-written torch CAM pipelines for the gradient methods
# ----------------------------------------------------------------------------


def torch_maps(torch):
    """{method: (A, g) -> the method's map at the layer's resolution (N, h, w), with its own ReLU}.

    The formulas of minicam.cam.gradient and gradcampp (variant "paper"), in torch.
    A: (N, K, h, w) activations, g = dy/dA.
    """
    relu = torch.relu

    def weighted(w, A):  # sum_k w_k A_k per image
        return (w[:, :, None, None] * A).sum(dim=1)

    def gradcampp(A, g):  # eq. 19: alpha = 1 / (2 + g sum(A)) where g > 0 (and the denominator is > 0)
        denominator = 2 + g * A.sum(dim=(2, 3), keepdim=True)
        usable = (g > 0) & (denominator > 0)
        alpha = torch.where(usable, 1 / torch.where(usable, denominator, 1.0), 0.0)
        return relu(weighted((alpha * relu(g)).sum(dim=(2, 3)), A))

    def xgradcam(A, g):  # w_k = sum_ij A_kij g_kij / sum_ab A_kab, 0 where that sum is <= 0
        total = A.sum(dim=(2, 3))
        usable = total > 0
        w = torch.where(usable, (g * A).sum(dim=(2, 3)) / torch.where(usable, total, 1.0), 0.0)
        return relu(weighted(w, A))

    return {
        "gradcam": lambda A, g: relu(weighted(g.mean(dim=(2, 3)), A)),
        "gradcam++": gradcampp,
        "gradcam+": lambda A, g: relu(weighted(relu(g).mean(dim=(2, 3)), A)),
        "hirescam": lambda A, g: relu((g * A).sum(dim=1)),
        "gradcam-elementwise": lambda A, g: relu(g * A).sum(dim=1),
        "xgradcam": xgradcam,
        "layercam": lambda A, g: relu((relu(g) * A).sum(dim=1)),
    }


def torch_explain(torch, model, x, layer, formula):
    """Grad-CAM-style map in torch, end to end, with minicam's convention: the predicted
    class's logit, the map, bilinear (half-pixel) upsampling, exact per-image min-max."""
    kept = []
    handle = model.get_submodule(layer).register_forward_hook(lambda module, inputs, output: kept.append(output))
    try:
        logits = model(x)
    finally:
        handle.remove()
    A = kept[-1]  # a module called twice (a block's ReLU) gives its last output, as in minicam
    score = logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum()  # images are independent
    (g,) = torch.autograd.grad(score, A)
    maps = formula(A.detach(), g)
    maps = torch.nn.functional.interpolate(maps[:, None], size=tuple(x.shape[2:]), mode="bilinear",
                                           align_corners=False)[:, 0]
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / torch.where(span > 0, span, 1.0), 0.0)
