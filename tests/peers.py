"""The real peer libraries, run on the same nets as minicam, for tests/test_peers_parity.py.

    require_peer(module)   import pytorch_grad_cam, torchcam, captum or tf_keras_vis at the version the
                           presets describe; skip the test without it, or FAIL under
                           MINICAM_REQUIRE_PEERS=1 (set by .ci/run, which installs them)
    subjects()             the nets: every exported conformance case (rebuilt from the exported
                           files, as a third party would) and a width-16 ResNet-18 at 112 x 112
    PEER_METHODS           library -> {minicam method: runner}; runner(subject, method, dtype) -> the
                           library's map (N, H, W) at the input's size, as the preset describes its output

pytorch-grad-cam imports torchvision, which does not import beside this torch; tests/stand_ins/
holds a stand-in with just the names it imports (tests/stand_ins/README.md), put first on sys.path
here and only here.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

STAND_INS = Path(__file__).resolve().parent / "stand_ins"
VERSIONS = {  # module -> (distribution, version): the versions docs/peers.md and the presets describe
    "pytorch_grad_cam": ("grad-cam", "1.5.7"),
    "torchcam": ("torchcam", "0.5.0"),
    "captum": ("captum", "0.9.0"),
    "tf_keras_vis": ("tf-keras-vis", "0.8.7"),
}
INSTALL = ('pip install -e ".[test,peers]" && pip install --no-deps grad-cam==1.5.7 (as .ci/run does; '
           "grad-cam needs --no-deps, or pip replaces torch by a CUDA build to satisfy its torchvision)")


def require_peer(module: str):
    """The peer library `module`, imported; a skip without it (a failure under MINICAM_REQUIRE_PEERS=1),
    and a skip (or failure) at another version than the one the presets reproduce."""
    required = os.environ.get("MINICAM_REQUIRE_PEERS") == "1"
    if module == "pytorch_grad_cam" and str(STAND_INS) not in sys.path:
        sys.path.insert(0, str(STAND_INS))  # the torchvision stand-in, ahead of any real one
    distribution, version = VERSIONS[module]
    try:
        imported = importlib.import_module(module)
        installed = metadata.version(distribution)
    except ImportError as error:
        if required:
            raise ImportError(f"{module} is required (MINICAM_REQUIRE_PEERS=1) but does not import: {error}; "
                              f"install it: {INSTALL}") from error
        pytest.skip(f"{module} is not installed ({error}); the peer tests need: {INSTALL}")
    if installed != version:
        message = f"{distribution} {installed} is installed; the presets reproduce {distribution} {version}"
        if required:
            raise AssertionError(message)
        pytest.skip(message)
    return imported


# ----------------------------------------------------------------------------
# The nets: the exported cases, and a ResNet-18
# ----------------------------------------------------------------------------

RESNET_WIDTH, RESNET_SIZE, RESNET_CLASSES = 16, 112, 5


@dataclass
class Subject:
    """One net and its inputs, in minicam, torch and Keras, in float64 and float32 (built lazily)."""

    name: str
    x: np.ndarray                 # (N, C, H, W) float64
    targets: np.ndarray           # (N,) int64
    layer: str
    methods: tuple                # the minicam methods that apply to it
    builders: dict                # "minicam" / "torch" / "keras" -> f(dtype) -> model
    made: dict = field(default_factory=dict)

    def net(self, kind: str, dtype: str):
        key = (kind, dtype)
        if key not in self.made:
            self.made[key] = self.builders[kind](dtype)
        return self.made[key]

    def images(self, dtype: str) -> np.ndarray:
        return self.x.astype(dtype)

    def first_image(self) -> "Subject":
        """The same nets (built once) on the first image alone."""
        return Subject(self.name, self.x[:1], self.targets[:1], self.layer, self.methods, self.builders, self.made)


def case_subjects(folder):
    """Every exported case, rebuilt from its files (minicam.conformance.adapters reads them)."""
    from minicam.conformance import adapters
    from minicam.conformance.architecture import build

    for name, case in adapters.cases_in(folder):
        layers, weights, x = case["layers"], case["weights"], case["x"]
        yield Subject(name, x, case["target_array"], case["layer"], tuple(case["methods"]), {
            "minicam": lambda dtype, l=layers, w=weights: build(l, w, dtype=np.dtype(dtype)),
            "torch": lambda dtype, l=layers, w=weights: _torch_dtype(adapters.torch_net(l, w), dtype),
            "keras": lambda dtype, l=layers, w=weights, s=x.shape[1:]: adapters.keras_net(l, w, s, dtype),
        })


def resnet_subject():
    """minicam.models.resnet18(width=16), 5 classes, random batch-norm statistics, at 112 x 112; image 0
    explains its predicted class, image 1 its least likely one (a negative logit)."""
    from torch_resnet import twin_pair

    from minicam.cam.capture import predict
    from minicam.interop import state_dict_from_torch
    from minicam.models import resnet18

    model, twin = twin_pair("resnet18", width=RESNET_WIDTH, num_classes=RESNET_CLASSES, seed=0)
    state = state_dict_from_torch(twin.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 3, RESNET_SIZE, RESNET_SIZE))
    order = np.argsort(predict(model, x), axis=1)
    targets = np.array([order[0, -1], order[1, 0]], dtype=np.int64)

    def minicam_net(dtype):
        net = resnet18(num_classes=RESNET_CLASSES, width=RESNET_WIDTH, dtype=np.dtype(dtype),
                       rng=np.random.default_rng(0))
        net.load_state_dict({k: (v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in state.items()})
        return net.eval()

    methods = tuple(m for m in _all_methods() if m not in ("guided-backprop", "guided-gradcam"))
    return Subject("resnet18", x, targets, "layer4", methods, {
        "minicam": minicam_net,
        "torch": lambda dtype: _torch_dtype(twin, dtype),
        "keras": lambda dtype: keras_resnet18(state, dtype),
    })


def _all_methods():
    from minicam.cam import REGISTRY

    return tuple(REGISTRY)


def _torch_dtype(net, dtype):
    import copy

    return (copy.deepcopy(net).float() if dtype == "float32" else net.double()).eval()


def keras_resnet18(state, dtype):
    """torchvision's ResNet-18 as a Keras 3 functional model (channels-last), with minicam's weights.
    A torch padding p becomes ZeroPadding2D(p) before a valid convolution; the stem's max pool pads with 0,
    which equals torch's -inf padding there because its input follows a ReLU (>= 0). The output of
    stage 4 is the layer called "layer4", as in torch."""
    import keras

    def conv(x, key, channels, kernel, stride, padding):
        if padding:
            x = keras.layers.ZeroPadding2D(padding, dtype=dtype)(x)
        layer = keras.layers.Conv2D(channels, kernel, strides=stride, use_bias=False, dtype=dtype)
        x = layer(x)
        layer.set_weights([state[f"{key}.weight"].transpose(2, 3, 1, 0)])
        return x

    def norm(x, key):
        layer = keras.layers.BatchNormalization(epsilon=1e-5, dtype=dtype)
        x = layer(x)
        layer.set_weights([state[f"{key}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")])
        return x

    def block(x, key, channels, stride, name=None):
        out = keras.layers.ReLU(dtype=dtype)(norm(conv(x, f"{key}.conv1", channels, 3, stride, 1), f"{key}.bn1"))
        out = norm(conv(out, f"{key}.conv2", channels, 3, 1, 1), f"{key}.bn2")
        if f"{key}.downsample.0.weight" in state:
            x = norm(conv(x, f"{key}.downsample.0", channels, 1, stride, 0), f"{key}.downsample.1")
        return keras.layers.ReLU(dtype=dtype, name=name)(keras.layers.Add(dtype=dtype)([out, x]))

    inputs = keras.Input(shape=(RESNET_SIZE, RESNET_SIZE, 3), dtype=dtype)
    x = keras.layers.ReLU(dtype=dtype)(norm(conv(inputs, "conv1", RESNET_WIDTH, 7, 2, 3), "bn1"))
    x = keras.layers.MaxPooling2D(3, strides=2, dtype=dtype)(keras.layers.ZeroPadding2D(1, dtype=dtype)(x))
    for stage in range(1, 5):
        channels = RESNET_WIDTH * 2 ** (stage - 1)
        x = block(x, f"layer{stage}.0", channels, 1 if stage == 1 else 2)
        x = block(x, f"layer{stage}.1", channels, 1, name=f"layer{stage}")
    x = keras.layers.GlobalAveragePooling2D(dtype=dtype)(x)
    fc = keras.layers.Dense(RESNET_CLASSES, dtype=dtype, name="fc")
    outputs = fc(x)
    fc.set_weights([state["fc.weight"].T, state["fc.bias"]])
    return keras.Model(inputs, outputs)


# ----------------------------------------------------------------------------
# The libraries' maps, each as its preset describes the library's output
# ----------------------------------------------------------------------------

SEED = 7  # torch's generator, for the noise of torchcam's SmoothGradCAMpp and SSCAM (replayed for minicam)
SSCAM_SAMPLES = 2  # fewer than torchcam's 35, to keep the suite fast (the same number on both sides)
ISCAM_SAMPLES = 3  # fewer than torchcam's 10, likewise (the coefficients i (i + 1) / (2N) depend on N)


def _upsample_half_pixel(maps, size):
    """torch bilinear, align_corners=False (the torchcam preset's upsampling, as its fuse_cams)."""
    import torch

    if tuple(maps.shape[1:]) == tuple(size):
        return maps
    return torch.nn.functional.interpolate(maps[:, None], size=tuple(size), mode="bilinear",
                                           align_corners=False)[:, 0]


def pytorch_grad_cam_map(subject, method, dtype):
    import torch

    pgc = require_peer("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    classes = {"gradcam": pgc.GradCAM, "hirescam": pgc.HiResCAM, "gradcam-elementwise": pgc.GradCAMElementWise,
               "gradcam++": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM, "layercam": pgc.LayerCAM,
               "scorecam": pgc.ScoreCAM, "ablationcam": pgc.AblationCAM, "eigencam": pgc.EigenCAM,
               "eigengradcam": pgc.EigenGradCAM, "kpcacam": pgc.KPCA_CAM}
    net = subject.net("torch", dtype)
    layer = net.get_submodule(subject.layer)
    targets = [ClassifierOutputTarget(int(c)) for c in subject.targets]
    with classes[method](model=net, target_layers=[layer]) as cam:
        return cam(input_tensor=torch.from_numpy(subject.images(dtype)), targets=targets)


def torchcam_map(subject, method, dtype):
    import torch

    methods = require_peer("torchcam").methods
    classes = {"cam": methods.CAM, "gradcam": methods.GradCAM, "gradcam++": methods.GradCAMpp,
               "smoothgradcam++": methods.SmoothGradCAMpp, "xgradcam": methods.XGradCAM,
               "layercam": methods.LayerCAM, "scorecam": methods.ScoreCAM, "sscam": methods.SSCAM,
               "iscam": methods.ISCAM}
    net = subject.net("torch", dtype)
    x = torch.from_numpy(subject.images(dtype))
    options = {}
    if method == "cam":
        options["fc_layer"] = [n for n, m in net.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    if method in ("sscam", "iscam"):
        options["num_samples"] = SSCAM_SAMPLES if method == "sscam" else ISCAM_SAMPLES
    classes_of = [int(c) for c in subject.targets]
    with classes[method](net, subject.layer, input_shape=tuple(x.shape[1:]), **options) as extractor:
        if method in ("gradcam", "gradcam++", "xgradcam", "layercam"):
            maps = extractor(class_idx=classes_of, scores=net(x))
        else:
            with torch.no_grad():
                net(x)  # the hooks keep the input and the activations
            torch.manual_seed(SEED)
            maps = extractor(class_idx=classes_of)
    return _upsample_half_pixel(maps[0].detach(), x.shape[2:]).numpy()


def torchcam_noise(subject, method, dtype):
    """The noise torchcam draws after torch.manual_seed(SEED), replayed: (samples, N, C, H, W) for
    SmoothGradCAMpp (std 0.3, added to the input), (samples, N, K, H, W) for SSCAM (std 2.0, added
    to the upsampled masks). torch.distributions' Normal(0, std) samples float32."""
    import torch

    if method == "smoothgradcam++":
        samples, std, shape = 4, 0.3, subject.x.shape
    else:
        A = _layer_shape(subject, dtype)
        samples, std, shape = SSCAM_SAMPLES, 2.0, (A[0], A[1], *subject.x.shape[2:])
    torch.manual_seed(SEED)
    normal = torch.distributions.normal.Normal(0, std)
    return np.stack([normal.sample(shape).numpy() for _ in range(samples)])


def _layer_shape(subject, dtype):
    from minicam.cam.eigen import layer_activations

    return layer_activations(subject.net("minicam", dtype), subject.images(dtype), subject.layer).shape


def captum_map(subject, method, dtype):
    import torch

    attr = require_peer("captum").attr
    net = subject.net("torch", dtype)
    for module in net.modules():  # guided backprop hooks every ReLU; an in-place one cannot be hooked
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    x = torch.from_numpy(subject.images(dtype))
    targets = [int(c) for c in subject.targets]
    layer = net.get_submodule(subject.layer)
    if method == "gradcam":
        signed = attr.LayerGradCam(net, layer).attribute(x, target=targets, relu_attributions=False)
        return attr.LayerAttribution.interpolate(signed, tuple(x.shape[2:]))[:, 0].detach().numpy()
    explainer = attr.GuidedBackprop(net) if method == "guided-backprop" else attr.GuidedGradCam(net, layer)
    return explainer.attribute(x, target=targets).abs().amax(dim=1).detach().numpy()


def tf_keras_vis_map(subject, method, dtype):
    require_peer("tf_keras_vis")
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.scores import CategoricalScore

    classes = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "layercam": Layercam, "scorecam": Scorecam}
    model = subject.net("keras", dtype)
    explainer = classes[method](model, clone=False)
    score = CategoricalScore([int(c) for c in subject.targets])
    x = subject.images(dtype).transpose(0, 2, 3, 1)
    options = {"batch_size": 32} if method == "scorecam" else {}
    return np.asarray(explainer(score, x, penultimate_layer=subject.layer, seek_penultimate_conv_layer=False,
                                **options))


PEER_METHODS = {
    "pytorch-grad-cam": {m: pytorch_grad_cam_map for m in (
        "gradcam", "hirescam", "gradcam-elementwise", "gradcam++", "xgradcam", "layercam", "scorecam",
        "ablationcam", "eigencam", "eigengradcam", "kpcacam")},
    "torchcam": {m: torchcam_map for m in (
        "cam", "gradcam", "gradcam++", "smoothgradcam++", "xgradcam", "layercam", "scorecam", "sscam", "iscam")},
    "captum": {m: captum_map for m in ("gradcam", "guided-backprop", "guided-gradcam")},
    "tf-keras-vis": {m: tf_keras_vis_map for m in ("gradcam", "gradcam++", "layercam", "scorecam")},
}
MODULES = {"pytorch-grad-cam": "pytorch_grad_cam", "torchcam": "torchcam", "captum": "captum",
           "tf-keras-vis": "tf_keras_vis"}
# The library's output dtype when run in float64: pytorch-grad-cam always returns float32 maps.
FLOAT64_OUTPUT = {"pytorch-grad-cam": False, "torchcam": True, "captum": True, "tf-keras-vis": True}


def torch_tensors(subject, dtype):
    """A and g = d(sum of the target logits)/dA at the subject's layer of the torch twin, as NumPy:
    the very numbers the torch libraries compute their maps from."""
    import torch

    net, seen = subject.net("torch", dtype), {}

    def keep(module, inputs, output):
        seen["A"] = output

    handle = net.get_submodule(subject.layer).register_forward_hook(keep)
    try:
        logits = net(torch.from_numpy(subject.images(dtype)))
    finally:
        handle.remove()
    y = logits[torch.arange(len(subject.targets)), torch.from_numpy(subject.targets)]
    (g,) = torch.autograd.grad(y.sum(), seen["A"])
    return seen["A"].detach().numpy().copy(), g.numpy().copy()


def minicam_options(library, method, subject, dtype):
    """Options explain() needs beyond the preset to run the same experiment as the library: the noise
    torchcam drew (replayed), and SS-CAM's and IS-CAM's numbers of samples."""
    if library == "torchcam" and method == "iscam":
        return {"n_samples": ISCAM_SAMPLES}
    if library == "torchcam" and method in ("smoothgradcam++", "sscam"):
        options = {"noise": torchcam_noise(subject, method, dtype)}
        if method == "sscam":
            options["n_samples"] = SSCAM_SAMPLES
        return options
    return {}
