"""Channels-last frameworks: TensorFlow's resize kernels, minicam.interop's Keras conversions against
Keras 3 layers, the exported README's Keras example run as printed, and the TensorFlow adapters (the
keras-io tutorial, tf-keras-vis) through verify with their expected diagnoses.

TensorFlow and tf-keras-vis come from the peers extra; without them these tests skip, and under
MINICAM_REQUIRE_PEERS=1 (.ci/run) they fail.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("MINICAM_REQUIRE_PEERS") == "1":
    import tensorflow as tf  # noqa: F401  (required: an ImportError is a failure)
else:
    tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from minicam import interop  # noqa: E402
from minicam.conformance import adapters  # noqa: E402
from minicam.conformance.export import export_cases, load_cases  # noqa: E402
from minicam.conformance.readme import KERAS_EXAMPLE  # noqa: E402
from minicam.conformance.tfresize import tf_resize_maps  # noqa: E402
from minicam.conformance.verify import verify  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return export_cases(tmp_path_factory.mktemp("tf-cases") / "cases")


@pytest.fixture(scope="module")
def loaded(folder):
    return load_cases(folder)


@pytest.mark.parametrize("kernel", ["bilinear", "bicubic"])
@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("shapes", [((2, 2), (4, 4)), ((4, 4), (8, 8)), ((3, 5), (11, 7)), ((8, 8), (3, 5)),
                                    ((7, 4), (16, 16))])
def test_tf_resize_matrices_equal_tf_image_resize(kernel, antialias, shapes):
    """tf.image.resize computes in float32 (its antialias kernel weights too): equal to 2e-6 of the values."""
    (h, w), size = shapes
    maps = np.random.default_rng(h * 10 + w).standard_normal((2, h, w))
    theirs = tf.image.resize(maps[..., None].astype(np.float32), size, method=kernel, antialias=antialias)
    ours = tf_resize_maps(maps, size, kernel, antialias)
    assert np.abs(theirs.numpy()[..., 0] - ours).max() <= 2e-6 * np.abs(maps).max()


def test_tf_bilinear_with_antialias_is_half_pixel_bilinear_when_upsampling():
    from minicam.cam.conventions import resize_maps
    maps = np.random.default_rng(0).standard_normal((2, 3, 5))
    np.testing.assert_allclose(tf_resize_maps(maps, (9, 13), "bilinear", True), resize_maps(maps, (9, 13)),
                               rtol=0, atol=1e-14)


def test_interop_round_trips_both_ways():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 2, 3, 3))
    assert np.array_equal(interop.conv_kernel_from_hwio(interop.conv_kernel_to_hwio(w)), w)
    d = rng.standard_normal((4, 24))
    assert np.array_equal(interop.dense_kernel_from_keras(interop.dense_kernel_to_keras(d)), d)
    assert np.array_equal(interop.flatten_dense_from_keras(interop.flatten_dense_to_keras(d, 2, 3, 4), 2, 3, 4), d)
    x = rng.standard_normal((2, 3, 4, 5))
    assert np.array_equal(interop.images_from_nhwc(interop.images_to_nhwc(x)), x)
    state = {f"bn.{k}": rng.uniform(0.5, 1.5, 3) for k in ("weight", "bias", "running_mean", "running_var")}
    converted = interop.batch_norm_to_keras(state, "bn.", eps=1e-5, momentum=0.1)
    assert converted["epsilon"] == 1e-5 and converted["momentum"] == pytest.approx(0.9)
    back = interop.batch_norm_from_keras(converted["weights"], converted["epsilon"], converted["momentum"], "bn.")
    assert all(np.array_equal(back["state"][k], state[k]) for k in state)
    assert back["eps"] == 1e-5 and back["momentum"] == pytest.approx(0.1)
    assert interop.padding_to_keras(0, 3) == "valid" and interop.padding_to_keras(1, 3) == "same"
    assert interop.padding_to_keras(1, 3, stride=2, height=32, width=32) == ((1, 1), (1, 1))
    assert interop.padding_to_keras(1, 3, stride=2, height=31, width=31) == "same"


def test_interop_against_keras_layers_on_the_same_numbers():
    """minicam's conv, Linear-after-Flatten and BatchNorm equal Keras 3's layers given the converted weights."""
    from minicam import nn
    from minicam.autograd import Tensor
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 6))
    conv = nn.Conv2d(3, 4, 3, padding=1, rng=rng, dtype=np.float64)
    norm = nn.BatchNorm2d(4)
    norm.load_state_dict({"weight": rng.uniform(0.5, 1.5, 4), "bias": rng.normal(size=4),
                          "running_mean": rng.normal(size=4), "running_var": rng.uniform(0.5, 2, 4),
                          "num_batches_tracked": np.array(1)})
    norm.eval()
    fc = nn.Linear(4 * 6 * 6, 2, rng=rng)
    ours = fc(nn.Flatten()(norm(conv(Tensor(x))))).data
    inputs = keras.Input((6, 6, 3), dtype="float64")
    k_conv = keras.layers.Conv2D(4, 3, padding=interop.padding_to_keras(1, 3), dtype="float64")
    k_norm = keras.layers.BatchNormalization(epsilon=norm.eps, dtype="float64")
    k_fc = keras.layers.Dense(2, dtype="float64")
    model = keras.Model(inputs, k_fc(keras.layers.Flatten(dtype="float64")(k_norm(k_conv(inputs)))))
    k_conv.set_weights([interop.conv_kernel_to_hwio(conv.weight.data), conv.bias.data])
    k_norm.set_weights(interop.batch_norm_to_keras(norm.state_dict(), eps=norm.eps)["weights"])
    k_fc.set_weights([interop.flatten_dense_to_keras(fc.weight.data, 4, 6, 6), fc.bias.data])
    theirs = model(interop.images_to_nhwc(x), training=False).numpy()
    np.testing.assert_allclose(theirs, ours, rtol=1e-12, atol=1e-12)
    k_fc.set_weights([interop.dense_kernel_to_keras(fc.weight.data), fc.bias.data])  # the classic mistake
    assert np.abs(model(interop.images_to_nhwc(x), training=False).numpy() - ours).max() > 1e-3
    # and back: Keras's weights into minicam
    assert np.array_equal(interop.conv_kernel_from_hwio(k_conv.get_weights()[0]), conv.weight.data)


def test_the_readme_keras_example_runs_as_printed_and_passes(folder, loaded, tmp_path):
    readme = (folder / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    code = next(block for block in blocks if "import keras" in block)
    assert code.strip() == KERAS_EXAMPLE.strip()
    (tmp_path / "cases").symlink_to(folder)
    (tmp_path / "example.py").write_text(code)
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = verify(tmp_path / "results.npz", cases=loaded)
    assert report.ok and report.counts["PASS"] == 5 * len(loaded), report.to_text()


@pytest.fixture(scope="module")
def tutorial(folder, loaded):
    return verify(adapters.run_keras_tutorial(folder), cases=loaded)


def test_the_keras_tutorials_grad_cam_is_the_mean_over_channels_and_divided_by_the_max(tutorial):
    for entry in tutorial.entries:
        if entry.stage in ("logits", "A", "g", "weights"):
            assert entry.status == "PASS", entry.sentence()
    for entry in [e for e in tutorial.entries if e.method == "gradcam" and e.stage == "raw"]:
        assert entry.diagnosis[0].names == ("scale",) and "mean over channels" in entry.diagnosis[0].summary
    named = set()
    for entry in [e for e in tutorial.entries if e.method == "gradcam" and e.stage == "minicam"]:
        if entry.status == "INVALID":  # an image whose heatmap is all <= 0: the tutorial divides 0 by 0
            assert "NaN" in entry.message
            continue
        if entry.status == "PASS":  # gap_net: no resize, and min-max = max where the ReLU'd map's min is 0
            continue
        names = [m.label for m in entry.diagnosis]
        assert "keras-io-heatmap" in names, entry.sentence()
        named.update(names[:1])
    assert named  # divided by the max at the layer's resolution, before the resize
    for entry in tutorial.firsts:
        assert entry[0].stage == "raw" and entry[0].method in ("gradcam", "gradcam++")


def test_the_keras_tutorials_grad_cam_plus_plus_is_grad_cam_plus(tutorial):
    for entry in [e for e in tutorial.entries if e.method == "gradcam++" and e.stage == "raw"]:
        labels = [m.label for m in entry.diagnosis]
        assert "method-gradcam+" in labels, entry.sentence()


def test_tf_keras_vis_passes_with_its_preset(folder, loaded):
    pytest.importorskip("tf_keras_vis")
    results = adapters.run_tf_keras_vis(folder)
    report = verify(results, cases=loaded)
    assert report.ok and report.counts["PASS"] == len(results) >= 20, report.to_text()
