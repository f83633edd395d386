"""The conformance suite (minicam.conformance.cases), its export, and the pieces verify builds on.

The expected maps are minicam's, so these tests check them against what minicam
cannot get wrong by construction: published values (captum's toy net), exact
identities (CAM = h w Grad-CAM on a GAP head; HiResCAM sums to the logit minus
the bias on a flatten head), explain() itself, and round trips through the files.
"""
import json

import numpy as np
import pytest

from minicam.cam import METHODS, explain
from minicam.cam.capture import capture, predict
from minicam.cam.conventions import PRESETS
from minicam.conformance import architecture
from minicam.conformance.cases import (STAGES, build_case, expected_maps, expected_values, finish, method_map,
                                      smoothgrad_noise, suite)
from minicam.conformance.export import CaseDataError, export_cases, load_cases
from minicam.cam.gradcampp import smoothgradcampp_map

CASES = suite()


def close(actual, expected, rtol=1e-12):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(np.abs(expected).max(), 1e-300)
    error = np.abs(actual - expected).max() / scale
    assert error <= rtol, f"relative error {error:.2e} > {rtol:.0e}"


@pytest.fixture(scope="module")
def expected():
    return {name: expected_maps(case) for name, case in CASES.items()}


# ----------------------------------------------------------------------------
# The suite: coverage, determinism, hand-derivable values
# ----------------------------------------------------------------------------


def test_every_method_is_covered_and_cam_only_on_gap_heads():
    covered = set().union(*(case.methods for case in CASES.values()))
    assert covered == set(METHODS)
    with_cam = sorted(name for name, case in CASES.items() if "cam" in case.methods)
    assert with_cam == ["bn_net", "gap_net"]
    for case in CASES.values():
        assert set(case.methods) | {"cam"} == set(METHODS)


def test_cases_are_small_batches_with_one_target_per_image():
    for case in CASES.values():
        assert case.x.dtype == np.float64 and case.x.ndim == 4 and 2 <= len(case.x) <= 3
        assert case.targets.dtype == np.int64 and case.targets.shape == (len(case.x),)
        assert case.layer in dict(case.model.named_modules())


def test_mixed_targets_include_a_negative_logit():
    """Image 1 explains its least likely class: a negative logit on every random net (this is
    what makes Ablation-CAM's division by y, instead of |y|, visible)."""
    for name in ("gap_net", "flatten_net", "bn_net", "tiny_maps"):
        case = CASES[name]
        logits = predict(case.model, case.x)
        assert case.targets[0] == np.argmax(logits[0]) and case.targets[1] == np.argmin(logits[1])
        assert logits[1, case.targets[1]] < 0


def test_the_suite_is_deterministic(expected):
    again = expected_maps(build_case("bn_net"))
    for key, value in expected["bn_net"].items():
        np.testing.assert_array_equal(again[key], value)


def test_captum_toy_reproduces_captums_published_gradcam():
    """captum tests/attr/layer/test_grad_cam.py: [[11.25, 13.5], [20.25, 22.5]] at conv1 for
    arange(16); image 1 (the reversed image) by hand: gradient means 0.75 and 0 (docs/peers.md, Grad-CAM)."""
    case = CASES["captum_toy"]
    signed = method_map(case, "gradcam", final_relu=False)
    np.testing.assert_allclose(signed[0], case.published["gradcam/raw"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(signed[1], 0.75 * np.array([[40.0, 31.0], [4.0, -5.0]]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(expected_maps(case)["gradcam/raw"][1], [[30.0, 23.25], [3.0, 0.0]], rtol=0, atol=1e-12)


def test_cam_is_hw_times_gradcam_on_the_gap_heads(expected):
    for name in ("gap_net", "bn_net"):
        cam, gradcam = expected[name]["cam/raw"], expected[name]["gradcam/raw"]
        z = cam.shape[1] * cam.shape[2]
        close(np.maximum(cam, 0) / z, gradcam)
        close(expected[name]["hirescam/raw"], gradcam)  # and HiResCAM = Grad-CAM there


def test_hirescam_sums_to_the_logit_minus_the_bias_on_the_flatten_head():
    case = CASES["flatten_net"]
    signed = method_map(case, "hirescam", final_relu=False)
    logits = predict(case.model, case.x)[np.arange(len(case.x)), case.targets]
    bias = case.model.fc.bias.data[case.targets]
    close(signed.sum(axis=(1, 2)), logits - bias)


def test_tiny_maps_has_maps_where_an_eps_shows(expected):
    raw = expected["tiny_maps"]["gradcam/raw"]
    assert 1e-6 < raw.max() < 1e-3  # so 1e-8 added to the range moves a normalised map by > 1e-5


# ----------------------------------------------------------------------------
# What the keys mean: raw = the method with its ReLU; presets = explain()
# ----------------------------------------------------------------------------


def test_raw_is_the_method_with_its_own_relu(expected):
    for name, case in CASES.items():
        for method in case.methods:
            default = METHODS[method](case.model, case.x, case.layer, case.targets, **case.call_options(method))
            close(expected[name][f"{method}/raw"], default, rtol=0)


@pytest.mark.parametrize("name", ["gap_net", "flatten_net"])
def test_presets_are_explain(name, expected):
    case = CASES[name]
    for method in case.methods:
        for preset in PRESETS:
            ours = explain(case.model, case.x, method, case.layer, case.targets, convention=preset,
                           **case.call_options(method))
            # explain casts pytorch-grad-cam's maps to float32; the expected maps stay float64
            close(expected[name][f"{method}/{preset}"], ours, rtol=1e-6 if ours.dtype == np.float32 else 0)


def test_exported_noise_reproduces_smooth_gradcampp():
    """Smooth Grad-CAM++'s formula on the captures of the exported noisy inputs = the expected map."""
    case = CASES["gap_net"]
    noise = smoothgrad_noise(case)
    assert noise.shape == (4,) + case.x.shape
    clean = capture(case.model, case.x, case.layer, case.targets)
    caps = [capture(case.model, case.x + n, case.layer, case.targets) for n in noise]
    S = np.stack([c.scores.data for c in caps])
    G = np.stack([c.gradients().data for c in caps])
    close(expected_maps(case)["smoothgradcam++/raw"], smoothgradcampp_map(clean.A, S, G))


# ----------------------------------------------------------------------------
# Architecture as data
# ----------------------------------------------------------------------------


def test_architecture_round_trip():
    for case in CASES.values():
        layers = architecture.describe(case.model)
        assert json.loads(json.dumps(layers)) == layers
        rebuilt = architecture.build(layers, case.model.state_dict())
        assert [n for n, _ in rebuilt.named_children()] == [n for n, _ in case.model.named_children()]
        np.testing.assert_array_equal(predict(rebuilt, case.x), predict(case.model, case.x))
    conv = architecture.describe(CASES["bn_net"].model)[0]
    assert conv == {"name": "conv1", "type": "Conv2d", "args": {
        "in_channels": 3, "out_channels": 4, "kernel_size": [3, 3], "stride": [1, 1], "padding": [1, 1],
        "dilation": [1, 1], "groups": 1, "bias": False}}


@pytest.mark.parametrize("layers, message", [
    ([{"name": "a", "type": "LSTM", "args": {}}], "unknown type 'LSTM'"),
    ([{"name": "a", "type": "ReLU", "args": {"inplace": True}}], "unknown arguments ['inplace']"),
    ([{"type": "ReLU", "args": {}}], "a name without dots is required"),
])
def test_architecture_errors(layers, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        architecture.build(layers)


# ----------------------------------------------------------------------------
# Export and load
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_cases(tmp_path_factory.mktemp("cases"))


def test_export_writes_every_file(exported, expected):
    index = json.loads((exported / "index.json").read_text())
    assert index["cases"] == list(CASES) and index["key"] == "<case>/<method>/<stage>"
    assert list(index["stages"])[:len(STAGES)] == list(STAGES)
    assert {"logits", "score", "A", "g", "weights", "<preset>/after-<step>"} <= set(index["stages"])
    assert "<case>/<method>/<preset>/after-<step>" in index["keys"] and index["version"] == 2
    for name, case in CASES.items():
        info = json.loads((exported / name / "case.json").read_text())
        assert info["layer"] == case.layer and info["targets"] == case.targets.tolist()
        assert info["methods"] == list(case.methods) and info["score"] == "logit"
        with np.load(exported / name / "expected.npz") as stored:
            values = expected_values(case)
            assert sorted(stored.files) == sorted(values) and set(expected[name]) <= set(values)
            for key in stored.files:
                np.testing.assert_array_equal(stored[key], values[key])
                assert stored[key].dtype == np.float64
        with np.load(exported / name / "weights.npz") as weights:
            assert list(weights.files) == list(case.model.state_dict())
        with np.load(exported / name / "inputs.npz") as inputs:
            np.testing.assert_array_equal(inputs["x"], case.x)
            np.testing.assert_array_equal(inputs["smoothgradcam++/noise"], smoothgrad_noise(case))
    assert json.loads((exported / "captum_toy" / "case.json").read_text())["published"]["gradcam/raw"] == \
        [[11.25, 13.5], [20.25, 22.5]]


def test_readme_explains_the_format(exported):
    text = (exported / "README.md").read_text()
    for phrase in ("<case>/<method>/raw", "<case>/logits", "<case>/<method>/<preset>/after-<step>", "NCHW",
                   "Keras", "tf.GradientTape", "flatten_dense_to_keras", "logit", "float32", "float64", "(N, h, w)", "(N, H, W)",
                   "torch.autograd.grad", "np.savez", "torchcam-0.5.0-gradcampp", "corner-aligned"):
        assert phrase in text, phrase
    for name in CASES:
        assert f"`{name}`" in text
    for preset in PRESETS:
        assert f"`{preset}`" in text


def test_load_cases_rebuilds_the_nets(exported, expected):
    loaded = load_cases(exported)
    assert list(loaded) == list(CASES)
    for name, (case, stored) in loaded.items():
        np.testing.assert_array_equal(predict(case.model, case.x), predict(CASES[name].model, CASES[name].x))
        assert case.methods == CASES[name].methods and case.options == CASES[name].options
        again = expected_maps(case)  # minicam on the rebuilt net = the stored maps
        for key in ("gradcam/raw", "scorecam/minicam", "smoothgradcam++/raw"):
            if key.split("/")[0] in case.methods:
                np.testing.assert_array_equal(again[key], stored[key])


def test_load_cases_reports_missing_or_foreign_folders(tmp_path, exported):
    with pytest.raises(CaseDataError, match="index.json is missing"):
        load_cases(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(CaseDataError, match="not a minicam-conformance-cases index"):
        load_cases(tmp_path)


def test_load_cases_reports_missing_expected_maps(tmp_path):
    folder = export_cases(tmp_path / "cases", [CASES["captum_toy"]])
    with np.load(folder / "captum_toy" / "expected.npz") as stored:
        kept = {key: stored[key] for key in stored.files if key != "gradcam/paper"}
    np.savez(folder / "captum_toy" / "expected.npz", **kept)
    with pytest.raises(CaseDataError, match="lacks 1 maps, e.g. 'gradcam/paper'"):
        load_cases(folder)


def test_finish_raw_is_the_relu_of_the_method():
    pre = np.array([[[-1.0, 2.0]]])
    case = CASES["gap_net"]
    np.testing.assert_array_equal(finish(pre, case, "raw", True), [[[0.0, 2.0]]])
    np.testing.assert_array_equal(finish(pre, case, "raw", False), pre)
