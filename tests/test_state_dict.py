"""state_dict and load_state_dict: torch's keys, torch's order, torch's weights.

`{k: v.numpy() for k, v in torch_model.state_dict().items()}` must load
unchanged into the minicam twin and give the same outputs; a bad state_dict
must be refused with every problem named (key and shapes) and nothing loaded;
and a state_dict must survive np.savez / np.load(allow_pickle=False).
"""
from collections import OrderedDict

import numpy as np
import pytest
from torch_required import require_torch

torch = require_torch()

from minicam import Tensor, nn  # noqa: E402
from opcheck import assert_close  # noqa: E402


def small_cnn(nn):
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3),
    )


def trained_torch_model(seed: int = 0):
    """A float64 torch model with non-trivial BatchNorm statistics (two training steps)."""
    torch.manual_seed(seed)
    model = small_cnn(torch.nn).double()
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
        for _ in range(2):
            model(torch.randn(4, 3, 6, 6, dtype=torch.float64))
    return model.eval()


def numpy_state(torch_model):
    return {key: value.numpy() for key, value in torch_model.state_dict().items()}


def test_keys_and_order_equal_torch():
    theirs = small_cnn(torch.nn).state_dict()
    mine = small_cnn(nn).state_dict()
    assert isinstance(mine, OrderedDict)
    assert list(mine) == list(theirs)
    assert list(mine)[:6] == ["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"]
    for key in theirs:
        assert mine[key].shape == tuple(theirs[key].shape), key
    assert mine["1.num_batches_tracked"].dtype == np.int64 and mine["0.weight"].dtype == np.float64


def test_torch_state_dict_loads_unchanged_and_gives_the_same_outputs():
    torch_model = trained_torch_model()
    model = small_cnn(nn).eval()
    result = model.load_state_dict(numpy_state(torch_model))
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in torch_model.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[key], value.numpy())
    assert int(model[1].num_batches_tracked) == 2
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 6))
    expected = torch_model(torch.from_numpy(x)).detach().numpy()
    assert_close(model(x).numpy(), expected, 1e-10, "logits after loading torch's weights")


def test_minicam_state_dict_loads_into_torch():
    model = small_cnn(nn)
    model(np.random.default_rng(1).normal(size=(4, 3, 6, 6)))  # move the running statistics
    model.eval()
    torch_model = small_cnn(torch.nn).double().eval()
    torch_model.load_state_dict({key: torch.from_numpy(value) for key, value in model.state_dict().items()})
    x = np.random.default_rng(2).normal(size=(2, 3, 6, 6))
    assert_close(model(x).numpy(), torch_model(torch.from_numpy(x)).detach().numpy(), 1e-10, "logits in torch")


def test_values_are_copied_and_cast_to_the_model_dtype():
    torch_model = trained_torch_model()
    state = numpy_state(torch_model)
    model = small_cnn(nn).float()
    weight = model[0].weight
    model.load_state_dict(state)  # float64 arrays into a float32 model
    assert model[0].weight is weight and weight.dtype == np.float32  # loaded in place
    expected = state["0.weight"].astype(np.float32)
    np.testing.assert_array_equal(weight.numpy(), expected)
    assert model[1].num_batches_tracked.dtype == np.int64
    state["0.weight"][...] = 0.0  # the model holds a copy, not the caller's array
    np.testing.assert_array_equal(weight.numpy(), expected)
    saved = model.state_dict()
    weight.data += 1.0  # and state_dict() returns copies, not views
    np.testing.assert_array_equal(saved["0.weight"], expected)


def test_integer_and_tensor_values_are_accepted():
    model = small_cnn(nn)
    state = model.state_dict()
    state["1.num_batches_tracked"] = 7  # a Python int, as a 0-d array
    state["0.weight"] = Tensor(np.ones((4, 3, 3, 3)))
    model.load_state_dict(state)
    assert int(model[1].num_batches_tracked) == 7
    np.testing.assert_array_equal(model[0].weight.numpy(), 1.0)


def test_older_state_dict_without_num_batches_tracked_loads():
    """torch accepts a state_dict from before num_batches_tracked existed; so does minicam."""
    state = numpy_state(trained_torch_model())
    del state["1.num_batches_tracked"]
    model = small_cnn(nn)
    assert model.load_state_dict(state).missing_keys == []
    small_cnn(torch.nn).double().load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})


def test_every_problem_is_named_in_one_message_and_nothing_is_loaded():
    model = small_cnn(nn)
    before = model.state_dict()
    state = numpy_state(trained_torch_model())
    del state["4.bias"]
    state["8.weight"] = np.zeros((3, 6))
    state["fc.weight"] = np.zeros((2, 2))
    with pytest.raises(RuntimeError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    print(message)
    assert "Error(s) in loading state_dict for Sequential (nothing was loaded)" in message
    assert "size mismatch for '8.weight': the state_dict has shape (3, 6), the model has shape (3, 5)" in message
    assert "missing key '4.bias' (the model expects shape (5,))" in message
    assert "unexpected key 'fc.weight' (shape (2, 2))" in message
    after = model.state_dict()
    assert all(np.array_equal(before[key], after[key]) for key in before)


def test_strict_false_reports_missing_and_unexpected_but_refuses_bad_shapes():
    model = small_cnn(nn)
    state = numpy_state(trained_torch_model())
    del state["4.bias"]
    state["extra"] = np.zeros(1)
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["4.bias"] and result.unexpected_keys == ["extra"]
    np.testing.assert_array_equal(model[4].weight.numpy(), state["4.weight"])
    state["4.weight"] = np.zeros((5, 4, 3))
    with pytest.raises(RuntimeError, match=r"size mismatch for '4.weight': the state_dict has shape \(5, 4, 3\), "
                                           r"the model has shape \(5, 4, 3, 3\)"):
        model.load_state_dict(state, strict=False)
    with pytest.raises(RuntimeError, match="'0.weight': a value of dtype <U"):
        model.load_state_dict({**state, "0.weight": np.array(["a"])}, strict=False)


def test_round_trip_through_npz_without_pickle(tmp_path):
    torch_model = trained_torch_model(seed=3)
    model = small_cnn(nn).eval()
    model.load_state_dict(numpy_state(torch_model))
    path = tmp_path / "weights.npz"
    np.savez(path, **model.state_dict())
    with np.load(path, allow_pickle=False) as archive:
        loaded = {key: archive[key] for key in archive.files}
    assert list(loaded) == list(model.state_dict())
    assert loaded["1.num_batches_tracked"].dtype == np.int64
    fresh = small_cnn(nn).eval()
    with np.load(path, allow_pickle=False) as archive:
        fresh.load_state_dict(archive)  # an NpzFile is a mapping: it loads directly
    x = np.random.default_rng(4).normal(size=(2, 3, 6, 6))
    np.testing.assert_array_equal(fresh(x).numpy(), model(x).numpy())


def test_shared_module_appears_under_both_names_as_in_torch():
    def shared(nn):
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(2, 2)
                self.again = self.fc

            def forward(self, x):
                return self.again(self.fc(x))

        return Net()

    assert list(shared(nn).state_dict()) == list(shared(torch.nn).state_dict())
    assert list(shared(nn).state_dict()) == ["fc.weight", "fc.bias", "again.weight", "again.bias"]


def test_non_persistent_buffer_is_left_out():
    layer = nn.Linear(1, 1)
    layer.register_buffer("cache", np.zeros(3), persistent=False)
    assert list(layer.state_dict()) == ["weight", "bias"]
    assert [name for name, _ in layer.named_buffers()] == ["cache"]
