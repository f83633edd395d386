"""The conformance suite: small nets, inputs, targets and layers, and minicam's maps for them.

Every case is deterministic (seeded weights and inputs, fixed targets) and small
enough to rebuild anywhere: a torch-style Sequential of named layers
(architecture.py), a batch of 2-3 images (N, C, H, W) in float64, one target
class per image, and one layer to explain. Between them the cases cover every
method in minicam.cam.METHODS and the situations where implementations drift
apart (docs/peers.md, each method's section, and its silent disagreements):

  captum_toy   captum's BasicModel_ConvNet_One_Conv (docs/peers.md, Grad-CAM), explained at the
               conv layer BEFORE its ReLU (signed activations), with captum's published
               Grad-CAM map [[11.25, 13.5], [20.25, 22.5]] for image 0; 2x2 maps -> 4x4.
  gap_net      conv-relu-conv-relu-GAP-Linear: CAM applies (and equals h*w Grad-CAM);
               the layer has the input's size, so no resizing; a negative target logit.
  flatten_net  conv-relu-maxpool-conv-relu-flatten-Linear: CAM does not apply, HiResCAM
               and Grad-CAM differ; 4x4 maps upsampled to 8x8.
  bn_net       conv-BatchNorm-relu-maxpool-conv-BatchNorm-relu-GAP-Linear with seeded
               running statistics, in eval mode (train mode would mix the images).
  tiny_maps    a bias-free flatten-head net on inputs scaled by 1e-3: maps of order 1e-4,
               where an eps of 1e-7 or 1e-8 added by a normalisation is measurable.
  signed_net   explained at a conv layer followed by a tanh (not a ReLU), with gradients of both
               signs where the activations are negative, through a max pool and a flatten head: signed activations whose channels are not offsets of
               one another (captum_toy's are), so that LayerCAM (ReLU(g) A) and Grad-CAM
               element-wise (ReLU(g A)) differ, and so do the variants that coincide on
               non-negative activations.

The meaning of a map (the keys of the expected files and of a results file):

  <method>/raw       the method's map at the layer's resolution (N, h, w): the method's
                     formula with its own final ReLU where its paper has one
                     (minicam.cam.REGISTRY[method].final_relu), nothing else. Guided
                     backpropagation and Guided Grad-CAM are at the input's size.
  <method>/<preset>  explain(..., convention=<preset>): the raw map (before its ReLU),
                     then the preset's ReLU, resizing to (H, W) and normalisation
                     (minicam.cam.conventions.PRESETS), computed in float64.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from minicam import nn
from minicam.cam.capture import predict
from minicam.cam import gradcampp
from minicam.cam.conventions import PRESETS, postprocess
from minicam.cam.maps import final_relu
from minicam.cam.registry import METHODS, REGISTRY
from minicam.conformance.format import STAGES


@dataclass
class Case:
    """One conformance case. `options` holds, per method, what the method is called
    with beyond (model, x, layer, targets); "seed" there stands for
    rng=np.random.default_rng(seed). `published` holds values published elsewhere,
    keyed like the expected maps, for the tests."""

    name: str
    description: str
    model: nn.Sequential
    x: np.ndarray
    targets: np.ndarray
    layer: str
    methods: tuple = ()
    options: dict = field(default_factory=dict)
    published: dict = field(default_factory=dict)
    sources: str = ""

    @property
    def size(self):
        return tuple(self.x.shape[2:])

    def call_options(self, method: str) -> dict:
        options = dict(self.options.get(method, {}))
        if "seed" in options:
            options["rng"] = np.random.default_rng(options.pop("seed"))
        return options


# ----------------------------------------------------------------------------
# The nets
# ----------------------------------------------------------------------------


def _sequential(layers):
    return nn.Sequential(OrderedDict(layers)).eval()


def captum_toy() -> Case:
    """captum's BasicModel_ConvNet_One_Conv (captum/testing/helpers/basic_models.py) with the
    weights of its Grad-CAM test (tests/attr/layer/test_grad_cam.py): conv 1 -> 2 with 3x3 kernels
    of ones and bias [-50, -75]; ReLU; flatten; Linear 8 -> 4 with weight [ones(4, 5), -ones(4, 3)]
    and bias 0; ReLU. Image 0 is captum's input arange(16); image 1 is it reversed."""
    rng = np.random.default_rng(0)  # overwritten below
    model = _sequential([
        ("conv1", nn.Conv2d(1, 2, 3, rng=rng)),
        ("relu1", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(8, 4, rng=rng)),
        ("relu2", nn.ReLU()),
    ])
    model.load_state_dict({
        "conv1.weight": np.ones((2, 1, 3, 3)),
        "conv1.bias": np.array([-50.0, -75.0]),
        "fc1.weight": np.concatenate([np.ones((4, 5)), -np.ones((4, 3))], axis=1),
        "fc1.bias": np.zeros(4),
    })
    image = np.arange(16, dtype=np.float64).reshape(1, 4, 4)
    x = np.stack([image, image[:, ::-1, ::-1]])
    return Case(
        "captum_toy", "captum's toy conv net, explained at the conv layer before its ReLU (signed activations)",
        model, x, np.array([0, 0]), "conv1",
        published={"gradcam/raw": np.array([[11.25, 13.5], [20.25, 22.5]])},  # image 0; all positive, so = ReLU'd
        sources="captum tests/attr/layer/test_grad_cam.py (test_simple_input_conv); docs/peers.md, Grad-CAM",
    )


def gap_net() -> Case:
    """conv(3->4) relu conv(4->5) relu GAP flatten Linear(5->3) on 8x8 images, layer relu2 (8x8)."""
    rng = np.random.default_rng(101)
    model = _sequential([
        ("conv1", nn.Conv2d(3, 4, 3, padding=1, rng=rng)),
        ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(4, 5, 3, padding=1, rng=rng)),
        ("relu2", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(5, 3, rng=rng)),
    ])
    x = rng.standard_normal((3, 3, 8, 8))
    return Case("gap_net", "conv-relu-conv-relu-GAP-Linear: CAM applies; the layer has the input's size",
                model, x, _mixed_targets(model, x), "relu2",
                sources="CAM = h w Grad-CAM = HiResCAM on a GAP head (docs/peers.md, CAM; HiResCAM and Grad-CAM element-wise)")


def _flatten_head_net(rng, bias):
    """conv(3->4) relu maxpool conv(4->5) relu flatten Linear(80->3) for 8x8 images."""
    return _sequential([
        ("conv1", nn.Conv2d(3, 4, 3, padding=1, bias=bias, rng=rng)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(4, 5, 3, padding=1, bias=bias, rng=rng)),
        ("relu2", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(5 * 4 * 4, 3, bias=bias, rng=rng)),
    ])


def flatten_net() -> Case:
    """conv(3->4) relu maxpool conv(4->5) relu flatten Linear(80->3), layer relu2 (4x4 -> 8x8)."""
    rng = np.random.default_rng(202)
    model = _flatten_head_net(rng, bias=True)
    x = rng.standard_normal((2, 3, 8, 8))
    return Case("flatten_net", "conv-relu-maxpool-conv-relu-flatten-Linear: CAM does not apply; 4x4 maps -> 8x8",
                model, x, _mixed_targets(model, x), "relu2",
                sources="HiResCAM sums to the logit minus the bias on a flatten head (Draelos & Carin 2020)")


def bn_net() -> Case:
    """conv bn relu maxpool conv bn relu GAP flatten Linear, seeded running statistics; layer relu2 (4x4)."""
    rng = np.random.default_rng(303)
    model = _sequential([
        ("conv1", nn.Conv2d(3, 4, 3, padding=1, bias=False, rng=rng)),
        ("bn1", nn.BatchNorm2d(4)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(4, 6, 3, padding=1, bias=False, rng=rng)),
        ("bn2", nn.BatchNorm2d(6)),
        ("relu2", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(6, 4, rng=rng)),
    ])
    state = model.state_dict()
    for bn, k in (("bn1", 4), ("bn2", 6)):
        state[f"{bn}.weight"] = rng.uniform(0.5, 1.5, k)
        state[f"{bn}.bias"] = rng.normal(0.0, 0.2, k)
        state[f"{bn}.running_mean"] = rng.normal(0.0, 0.3, k)
        state[f"{bn}.running_var"] = rng.uniform(0.5, 2.0, k)
        state[f"{bn}.num_batches_tracked"] = np.array(10, dtype=np.int64)
    model.load_state_dict(state)
    x = rng.standard_normal((3, 3, 8, 8))
    return Case("bn_net", "conv-BatchNorm-relu blocks, GAP head, BatchNorm in eval mode; 4x4 maps -> 8x8",
                model, x, _mixed_targets(model, x), "relu2",
                sources="torchvision-style conv-bn-relu blocks; eval mode, as pytorch-grad-cam sets it (docs/peers.md, Shared plumbing)")


def tiny_maps() -> Case:
    """A bias-free flatten-head net (so maps scale with the input) on inputs of order 1e-3:
    maps of order 1e-4, where the eps of a normalisation (1e-7, 1e-8) shows."""
    rng = np.random.default_rng(404)
    model = _flatten_head_net(rng, bias=False)
    x = 1e-3 * rng.standard_normal((2, 3, 8, 8))
    return Case("tiny_maps", "a bias-free net on inputs of order 1e-3: maps of order 1e-4, where an eps shows",
                model, x, _mixed_targets(model, x), "relu2",
                sources="the normalisation eps of each peer (docs/peers.md, silent disagreements 5)")


def signed_net() -> Case:
    """conv(3->4) relu maxpool conv(4->3) [layer] tanh maxpool flatten Linear(12->3) on 8x8 images;
    the layer conv2 (4x4) is signed, and a tanh (not a ReLU) after it passes gradients where A < 0."""
    rng = np.random.default_rng(505)
    model = _sequential([
        ("conv1", nn.Conv2d(3, 4, 3, padding=1, rng=rng)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(4, 3, 3, padding=1, rng=rng)),
        ("tanh2", nn.Tanh()),
        ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(3 * 2 * 2, 3, rng=rng)),
    ])
    x = rng.standard_normal((2, 3, 8, 8))
    return Case("signed_net", "a conv layer before its ReLU: signed activations and gradients of both signs; 4x4 -> 8x8",
                model, x, _mixed_targets(model, x), "conv2",
                sources="LayerCAM (Jiang et al. 2021) = Grad-CAM element-wise only where A >= 0")


def _mixed_targets(model, x):
    """Image 0 explains its predicted class, image 1 its LEAST likely class (a negative logit
    here, which flips Ablation-CAM's weights when divided by y), image 2 the class in between."""
    order = np.argsort(predict(model, x), axis=1)
    picks = [order[0, -1], order[1, 0]] + [order[i, len(order[i]) // 2] for i in range(2, len(x))]
    return np.array(picks, dtype=np.int64)


BUILDERS = OrderedDict([
    ("captum_toy", captum_toy),
    ("gap_net", gap_net),
    ("flatten_net", flatten_net),
    ("bn_net", bn_net),
    ("tiny_maps", tiny_maps),
    ("signed_net", signed_net),
])

# Options every case passes to a method (beyond its defaults). Smooth Grad-CAM++ is random:
# its noise comes from np.random.default_rng(seed) (exported too, see smoothgrad_noise).
DEFAULT_OPTIONS = {"smoothgradcam++": {"n_samples": 4, "noise_std": 0.15, "seed": 0}}


def build_case(name: str) -> Case:
    """The case `name`, with the methods that apply to it (CAM needs a GAP head)."""
    if name not in BUILDERS:
        raise KeyError(f"no case {name!r}; the cases are {', '.join(BUILDERS)}")
    case = BUILDERS[name]()
    case.options = {method: dict(options) for method, options in DEFAULT_OPTIONS.items()}
    case.methods = tuple(method for method in METHODS if _applies(case, method))
    return case


@lru_cache(maxsize=None)
def suite() -> "OrderedDict[str, Case]":
    """Every case, built once per process (treat them as read-only)."""
    return OrderedDict((name, build_case(name)) for name in BUILDERS)


def _applies(case, method):
    if method != "cam":
        return True
    try:
        METHODS["cam"](case.model, case.x, case.layer, case.targets)
    except ValueError:  # not layer -> GAP -> Linear
        return False
    return True


# ----------------------------------------------------------------------------
# The maps
# ----------------------------------------------------------------------------


def method_map(case: Case, method: str, final_relu: bool = True, model=None, targets=None, **overrides) -> np.ndarray:
    """The method's map (N, h, w) for the case, with or without the method's final ReLU.
    `overrides` replace the case's options (e.g. score="softmax"); `model` and `targets`
    replace the case's net and classes (variants use them)."""
    options = {**case.call_options(method), **overrides}
    function = METHODS[method]
    model = case.model if model is None else model
    targets = case.targets if targets is None else targets
    return function(model, case.x, case.layer, targets, relu=final_relu and REGISTRY[method].final_relu, **options)


def finish(pre_relu: np.ndarray, case: Case, stage: str, has_relu: bool) -> np.ndarray:
    """What a key's stage does to the method's map before its final ReLU:
    "raw": the final ReLU (if the method has one); a preset: explain()'s steps in float64;
    "<preset>/after-<step>": the preset's steps up to that one (stages.py)."""
    if "/" in stage:
        from minicam.conformance.stages import step_values

        preset, label = stage.split("/")
        return step_values(pre_relu, case, _method_with_relu(has_relu), preset)[label]
    if stage == "raw":
        return final_relu(pre_relu, has_relu)
    return postprocess(pre_relu, case.size, replace(PRESETS[stage], dtype=None), has_relu)


def _method_with_relu(has_relu):
    """A method name whose final_relu is has_relu (step_values needs one to know the ReLU step)."""
    return next(name for name, m in REGISTRY.items() if m.final_relu == has_relu)


def expected_maps(case: Case, premaps: dict | None = None) -> "OrderedDict[str, np.ndarray]":
    """Every expected map of the case, keyed "<method>/<stage>". A preset that implies options
    for the method (PRESETS[stage].method_options: the library's own formula) gets its map
    computed with them, as explain() does. `premaps`, if given, receives each
    (method, stage) -> the map before the method's final ReLU."""
    maps = OrderedDict()
    for method in case.methods:
        pre = method_map(case, method, final_relu=False)
        for stage in STAGES:
            implied = PRESETS[stage].options_for(method) if stage in PRESETS else {}
            implied = {k: v for k, v in implied.items() if k not in case.options.get(method, {})}  # the case's win
            stage_pre = method_map(case, method, final_relu=False, **implied) if implied else pre
            if premaps is not None:
                premaps[(method, stage)] = stage_pre
            maps[f"{method}/{stage}"] = finish(stage_pre, case, stage, REGISTRY[method].final_relu)
    return maps


def expected_values(case: Case) -> "OrderedDict[str, np.ndarray]":
    """The expected maps and the values of every other stage (stages.stage_values): what an export
    writes to expected.npz and what verify compares with."""
    from minicam.conformance.stages import stage_values

    premaps = {}
    maps = expected_maps(case, premaps)
    return OrderedDict(list(stage_values(case, premaps).items()) + list(maps.items()))


def smoothgrad_noise(case: Case) -> np.ndarray:
    """The noise Smooth Grad-CAM++ adds, (n_samples, N, C, H, W): sample s explains x + noise[s].
    minicam.cam.gradcampp.smoothgradcampp's draws with rng=np.random.default_rng(seed): the same
    noise for every image, repeated along N so that the file says exactly what each image gets."""
    options = case.options["smoothgradcam++"]
    noise = gradcampp.smoothgrad_noise(np.random.default_rng(options["seed"]), options["n_samples"],
                                       options["noise_std"], case.x.shape[1:], case.x.dtype)
    return np.repeat(noise[:, None], len(case.x), axis=1)
