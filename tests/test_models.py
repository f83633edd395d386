"""The course's models, the shipped weights, the data generators and the main command."""
import os
import subprocess
import sys

import numpy as np
import pytest

from minicam import Tensor, data, files
from minicam.cam.capture import predict
from minicam.models import FlattenHeadCNN, LessonCNN, TinyResNet, lesson_cnn
from minicam.train import accuracy, one_vs_rest_loss


def test_shipped_weights_reach_95_percent_on_a_fresh_test_set():
    model = lesson_cnn()
    fresh = data.single_instance(np.random.default_rng(20261126), 400)  # never seen in training (seed 0)
    assert accuracy(model, fresh.images, fresh.labels) >= 0.95


def test_shipped_weights_load_without_pickle_and_are_small():
    from importlib import resources

    path = resources.files("minicam") / "weights" / "lesson_cnn.npz"
    assert path.is_file() and os.path.getsize(str(path)) < 300_000
    with np.load(str(path), allow_pickle=False) as archive:
        assert set(archive.files) == set(LessonCNN().state_dict()) | {files.MARK_KEY}  # + the mark of minicam's files
        assert str(archive[files.MARK_KEY]) == files.MARK


def test_layer_names_read_well():
    names = [name for name, _ in LessonCNN().named_modules()]
    assert names == ["", "features", "features.conv1", "features.relu1", "features.pool1", "features.conv2",
                     "features.relu2", "features.pool2", "features.conv3", "features.relu3", "pool", "flatten", "fc"]
    resnet_names = dict(TinyResNet().named_modules())
    assert {"conv1", "bn1", "layer1.0.conv1", "layer1.0.bn2", "layer2.0.downsample.0", "fc"} <= set(resnet_names)


def test_models_compute_what_their_layers_say():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 32, 32))
    flat = FlattenHeadCNN(rng=rng)
    features = flat.features(x).data
    np.testing.assert_allclose(predict(flat, x), features.reshape(2, -1) @ flat.fc.weight.data.T + flat.fc.bias.data,
                               rtol=1e-12)
    resnet = TinyResNet(rng=rng).eval()
    assert predict(resnet, x).shape == (2, 3)
    with pytest.raises(ValueError, match="divisible by 4"):
        FlattenHeadCNN(size=30)


def test_one_vs_rest_loss_is_binary_cross_entropy_per_class():
    logits = np.array([[2.0, -1.0, 0.5], [-0.3, 0.2, 1.5]])
    labels = np.array([0, 2])
    targets = np.eye(3)[labels]
    p = 1 / (1 + np.exp(-logits))
    expected = -np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p))
    assert abs(one_vs_rest_loss(Tensor(logits), labels).item() - expected) < 1e-14


def test_data_is_deterministic_and_masks_match_the_objects():
    a = data.single_instance(np.random.default_rng(3), 5)
    b = data.single_instance(np.random.default_rng(3), 5)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == (5, 3, 32, 32) and set(a.labels) <= {0, 1, 2}
    for image, mask in zip(a.images, a.masks):
        assert mask.shape == (1, 32, 32) and mask.sum() >= 6
        inside, outside = image[:, mask[0]], image[:, ~mask[0]]
        # an object is painted in one colour: far less spread inside the mask than outside
        assert inside.std(axis=1).max() < 0.05 < outside.std(axis=1).min()


def test_multi_instance_counts_and_no_overlap():
    ds = data.multi_instance(np.random.default_rng(4), 20)
    for own, other in zip(ds.masks, ds.distractor_masks):
        assert 1 <= len(own) <= 4 and len(other) <= 2
        everything = np.concatenate([own, other])
        assert everything.sum(axis=0).max() == 1  # no pixel belongs to two objects


def test_shape_masks_by_hand():
    disk = data.shape_mask("disk", 16, (8.0, 8.0), 4 / 0.85, 0.0)
    assert disk.sum() == 52  # pixel centres within radius 4 of (8, 8)
    square = data.shape_mask("square", 16, (8.0, 8.0), 3 * np.sqrt(2), 0.0)
    assert square.sum() == 36  # |u|, |v| <= 3 around the centre: 6 x 6 pixel centres
    with pytest.raises(ValueError, match="unknown shape"):
        data.shape_mask("hexagon", 16, (8, 8), 3, 0)


def test_main_command_writes_the_figure(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, "-m", "minicam", "--out", str(tmp_path), "--images", "3"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figure = tmp_path / "cam_comparison.png"
    assert figure.is_file() and figure.read_bytes()[:4] == b"\x89PNG"
    assert str(figure.resolve()) in result.stdout
    bad = subprocess.run([sys.executable, "-m", "minicam", "--methods", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown method" in bad.stderr
