"""The contract every method keeps: all of minicam.cam.REGISTRY, on the same nets and layers.

1. Per image: a batch gives each image the map it gets alone, whatever else is in the
   batch and in whatever order (Smooth Grad-CAM++ included: its noise is per image).
2. Reproducible: the same call twice gives byte-identical maps.
3. The model is left as it was: train/eval flags, hooks, parameters, running statistics,
   no .grad accumulated; and a model in train mode gives the maps of eval mode.
4. float32 in, float32 out, close to float64 on the same rounded numbers.
5. Non-finite values are errors where they appear, never a map: a NaN weight is named,
   an overflow is said to be one, in every method.
"""
import numpy as np
import pytest
from cam_nets import bn_net, flatten_net, gap_net, images

from minicam import Tensor, no_grad
from minicam.cam import REGISTRY
from minicam.errors import NonFiniteError

NETS = {"gap": gap_net, "flatten": flatten_net, "bn": bn_net}
LAYERS = ("relu2", "conv2")  # after the ReLU (non-negative maps) and before it (signed)
OPTIONS = {"smoothgradcam++": {"n_samples": 3}, "scorecam": {"batch_size": 4}, "ablationcam": {"batch_size": 2}}
# float32 against float64 (relative to the map's largest value): the maps of a few methods amplify
# rounding more than others (Score-CAM's softmax of masked scores, the SVD of Eigen-CAM, exp(S) weights)
FLOAT32 = {"eigencam": 1e-4, "eigengradcam": 1e-4, "smoothgradcam++": 1e-4, "guided-gradcam": 1e-4}


def applies(method, net, layer):
    return method != "cam" or (net != "flatten" and layer == "relu2")  # CAM needs layer -> GAP -> Linear


CALLS = [(m, n, l) for m in REGISTRY for n in NETS for l in LAYERS if applies(m, n, l)]


def run(method, model, x, layer, target):
    return REGISTRY[method].function(model, x, layer, target, **OPTIONS.get(method, {}))


def build(net, seed=3, n=3, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return NETS[net](rng, dtype=dtype).eval(), images(rng, n, dtype=dtype)


def close(actual, expected, rtol, what):
    scale = max(float(np.abs(expected).max()), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale, err_msg=what)


@pytest.mark.parametrize("method, net, layer", CALLS)
def test_a_map_depends_on_its_image_alone_and_is_reproducible(method, net, layer):
    model, x = build(net)
    targets = np.array([2, 0, 1])
    batch = run(method, model, x, layer, targets)
    assert np.array_equal(batch, run(method, model, x, layer, targets)), "the same call twice differs"
    reverse = run(method, model, x[::-1].copy(), layer, targets[::-1].copy())
    close(reverse[::-1], batch, 1e-12, f"{method}: the batch reversed")
    for i in range(len(x)):
        close(run(method, model, x[i : i + 1], layer, int(targets[i]))[0], batch[i], 1e-12,
              f"{method}: image {i} alone")


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_the_model_is_left_as_it_was_and_train_mode_gives_eval_maps(method):
    model, x = build("bn")
    reference = run(method, model, x, "relu2", [0, 1, 2])
    for mode in ("train", "mixed"):
        model.train()
        if mode == "mixed":
            model.relu1.eval()
            model.fc.eval()
        flags = [(name, m.training) for name, m in model.named_modules()]
        state = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
        maps = run(method, model, x, "relu2", [0, 1, 2])
        assert [(name, m.training) for name, m in model.named_modules()] == flags
        assert all(len(m.forward_hooks) == 0 for m in model.modules())
        assert all(np.array_equal(v, state[k]) for k, v in model.state_dict().items())
        assert all(p.grad is None for p in model.parameters())
        np.testing.assert_array_equal(maps, reference, err_msg=f"{method} in {mode} mode differs from eval mode")
    model.eval()  # and the ReLUs compute plainly again (guided backpropagation replaced them for one call)
    with no_grad():
        assert np.array_equal(model(Tensor(x)).data, model(Tensor(x)).data)


@pytest.mark.parametrize("method, net", [(m, n) for m in REGISTRY for n in ("gap", "flatten") if applies(m, n, "relu2")])
def test_float32_gives_float32_close_to_float64(method, net):
    model64, x64 = build(net)
    model32, _ = build(net, dtype=np.float32)
    model64.load_state_dict({k: np.asarray(v, np.float32).astype(np.float64) for k, v in model32.state_dict().items()})
    x32 = x64.astype(np.float32)
    maps32, maps64 = run(method, model32, x32, "relu2", [0, 1, 2]), run(method, model64, x32.astype(np.float64), "relu2", [0, 1, 2])
    assert maps32.dtype == np.float32
    close(maps32, maps64, FLOAT32.get(method, 1e-5), f"{method}: float32 against float64")


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_a_nan_weight_is_named_not_mapped(method):
    model, x = build("gap")
    model.conv2.weight.data[1, 2, 0, 0] = np.nan
    with pytest.raises(NonFiniteError, match=r"the model's weights are not finite: conv2\.weight \(1 NaN value\)"):
        run(method, model, x, "relu2", [0, 1, 2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_an_overflow_in_the_forward_pass_is_an_error_that_names_the_layer(method, dtype):
    """Finite images whose largest value is half the dtype's largest number: the sums inside the
    net overflow (here the global average pooling's, first), and the error says where and what
    to do, where the maps used to be all zeros."""
    model, x = build("gap", dtype=dtype)
    huge = (x * (np.finfo(dtype).max / 2 / np.abs(x).max())).astype(dtype)
    assert np.all(np.isfinite(huge))
    fix = "compute in float64" if dtype == np.float32 else "scale the input down"
    with pytest.raises(NonFiniteError, match=r"the output of layer 'pool' \(AdaptiveAvgPool2d\) holds .* infinite values? "
                                             rf"although its input was finite: an overflow .*: {fix}"):
        run(method, model, huge, "relu2", [0, 1, 2])


def test_a_score_that_does_not_depend_on_the_input_gives_zero_maps():
    """Every method that explains a score gives zeros when the score is a constant (the final
    Linear layer all zero): nothing in the image matters. (Eigen-CAM and KPCA-CAM explain no score.)"""
    model, x = build("gap")
    model.fc.weight.data[:] = 0.0
    for method in REGISTRY:
        if method in ("eigencam", "kpcacam"):  # no score: they explain the activations alone
            continue
        maps = run(method, model, x, "relu2", [0, 1, 2])
        assert np.all(maps == 0), method


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_bad_input_gets_a_clear_error_and_leaves_no_hook(method):
    model, x = build("gap")
    takes_a_layer, takes_a_class = method != "guided-backprop", REGISTRY[method].needs != ("A",)  # A alone: no class
    with pytest.raises(ValueError, match=r"must be a batch of images of shape \(N, C, H, W\); got shape \(3, 8, 8\)"):
        run(method, model, x[0], "relu2", None)
    for bad, kind in ((np.inf, "infinite"), (np.nan, "NaN")):
        with pytest.raises(NonFiniteError, match=f"x holds 576 {kind} values"):
            run(method, model, np.full_like(x, bad), "relu2", None)
    if takes_a_layer:
        with pytest.raises(KeyError, match="no layer named 'conv9' in Sequential; valid names: 'conv1'"):
            run(method, model, x, "conv9", None)
    if takes_a_class:
        with pytest.raises(ValueError, match=r"target class 7 is out of range: the model has 3 classes \(0 to 2\)"):
            run(method, model, x, "relu2", 7)
    assert all(len(m.forward_hooks) == 0 for m in model.modules())
