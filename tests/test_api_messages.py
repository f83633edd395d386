"""Every API message says what was wrong and what to do: the cases a careful user and a hostile
input met (wrong types for method, target, eps and options; NaN weights; shapes; kernels of
size zero; state dicts that are not mappings; weight files that are not npz archives)."""
import numpy as np
import pytest
from cam_nets import gap_net, images

import minicam
from minicam import Tensor, ops
from minicam.cam import explain
from minicam.cam.ablation import ablationcam
from minicam.cam.scorecam import scorecam
from minicam.errors import NonFiniteError
from minicam.models import LessonCNN, load_weights


@pytest.fixture
def net():
    rng = np.random.default_rng(0)
    return gap_net(rng), images(rng, 2)


def test_a_method_given_as_a_list_or_an_unknown_name(net):
    model, x = net
    with pytest.raises(TypeError, match=r"method must be one name, a string such as 'gradcam', got \['gradcam'\]"):
        explain(model, x, ["gradcam"], "relu2")
    with pytest.raises(ValueError, match=r"unknown method 'grad-cam'; choose one of \['ablationcam'"):
        explain(model, x, "grad-cam", "relu2")


def test_eps_and_other_options_of_the_wrong_kind(net):
    model, x = net
    with pytest.raises(TypeError, match=r"eps must be a number \(or None, or 'exact' in explain\), got '1e-7'"):
        explain(model, x, "gradcam", "relu2", eps="1e-7")
    with pytest.raises(ValueError, match=r"eps must be None or a finite non-negative number, got -1"):
        explain(model, x, "gradcam", "relu2", eps=-1.0)
    with pytest.raises(ValueError, match=r"unknown convention \['minicam'\]"):
        explain(model, x, "gradcam", "relu2", convention=["minicam"])


@pytest.mark.parametrize("method", ["cam", "eigencam", "gradcam", "scorecam"])
def test_a_nan_weight_is_named_by_cam_and_eigen_cam_too(net, method):
    """CAM used to blame the head ('something comes after the final Linear'), Eigen-CAM the SVD."""
    model, x = net
    model.fc.weight.data[0, 0] = np.nan
    with pytest.raises(NonFiniteError, match=r"fc\.weight \(1 NaN value\); load finite weights"):
        explain(model, x, method, "relu2")


def test_score_cam_with_a_callable_target_uses_the_callables_own_score(net):
    model, x = net
    maps = scorecam(model, x, "relu2", lambda out: out[:, 1])
    assert np.array_equal(maps, scorecam(model, x, "relu2", lambda out: out[:, 1], score="logit"))
    with pytest.raises(ValueError, match="a callable target defines the score itself; leave score unset"):
        scorecam(model, x, "relu2", lambda out: out[:, 1], score="softmax")


def test_ablation_cam_on_a_layer_the_output_does_not_use_says_so(net):
    model, x = net

    class Dead(minicam.nn.Module):  # computes a feature map and throws it away
        def __init__(self):
            super().__init__()
            self.net, self.side = model, minicam.nn.Conv2d(3, 2, 3)

        def forward(self, x):
            self.side(x)
            return self.net(x)

    with pytest.raises(ValueError, match=r"the model's output does not depend on that layer"):
        ablationcam(Dead(), x, "side", [0, 1])


def test_tensor_of_none_and_grad_outputs_as_one_array():
    with pytest.raises(TypeError, match="dtype object are not supported .* a None"):
        Tensor(np.array([None]), dtype=np.float64)
    w = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    (g,) = minicam.grad(w * 2, [w], grad_outputs=np.array([1.0, 10.0, 100.0]))  # one covector, not three
    np.testing.assert_array_equal(g.data, [2.0, 20.0, 200.0])


def test_a_kernel_of_size_zero():
    with pytest.raises(ValueError, match=r"the weight .* = \(1, 1, 0, 3\) has a dimension of size 0"):
        ops.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 0, 3)))


def test_state_dicts_that_are_not_mappings_and_weight_files_that_are_not_npz(tmp_path):
    with pytest.raises(TypeError, match="expected a mapping of names to arrays .* got a list"):
        LessonCNN().load_state_dict([1, 2])
    text = tmp_path / "weights.npz"
    text.write_text("not weights")
    with pytest.raises(ValueError, match="is not a weights file minicam can read") as info:
        load_weights(LessonCNN(), text)
    assert "allow_pickle=True" not in str(info.value)  # never the advice to unpickle
    single = tmp_path / "one.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match=r"holds one array of shape \(3,\), not named weights"):
        load_weights(LessonCNN(), single)
