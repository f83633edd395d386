"""A property-based fuzz test of the public API: explain() on random nets, shapes, dtypes,
layers, targets, conventions and options.

Every call either returns maps that are finite, (N, H, W), in [0, 1] for a normalising
convention, equal to the maps of each image alone, and zero only where the method's raw
map has no range; or it raises one of minicam's documented errors (ValueError, with
NonFiniteError among them; TypeError; KeyError) with a message of minicam's own (not,
say, NumPy's "SVD did not converge"). Never a NaN, never a silent zero map, never an
internal exception type (IndexError, ZeroDivisionError, AttributeError, ...).
"""
import numpy as np
import pytest
from cam_nets import bn_net, flatten_net, gap_net
from hypothesis import given, settings
from hypothesis import strategies as st

from minicam.cam import PRESETS, REGISTRY, explain

DOCUMENTED = (ValueError, TypeError, KeyError)
NORMALISING = tuple(name for name, preset in PRESETS.items() if preset.normalize != "none")
OPTIONS = {"smoothgradcam++": {"n_samples": 2}}


@st.composite
def nets(draw):
    kind = draw(st.sampled_from(["gap", "flatten", "bn"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    size = draw(st.sampled_from([4, 6, 8])) if kind == "flatten" else draw(st.integers(3, 9))
    classes = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "gap":
        model = gap_net(rng, in_channels=draw(st.integers(1, 3)), hidden=draw(st.integers(1, 4)),
                        channels=draw(st.integers(1, 5)), classes=classes, dtype=dtype)
    elif kind == "flatten":
        model = flatten_net(rng, in_channels=draw(st.integers(1, 3)), size=size, hidden=draw(st.integers(1, 4)),
                            channels=draw(st.integers(1, 5)), classes=classes, dtype=dtype)
    else:
        model = bn_net(rng, dtype=dtype)
        classes = 3
    channels = model.conv1.in_channels
    n = draw(st.integers(1, 3))
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0]))
    x = (scale * rng.standard_normal((n, channels, size, size))).astype(dtype)
    return model, x, classes


@st.composite
def calls(draw):
    model, x, classes = draw(nets())
    mostly_valid = st.integers(0, 9).map(lambda k: k > 0)  # a bad argument in one draw of ten
    method = draw(st.sampled_from(sorted(REGISTRY))) if draw(mostly_valid) else draw(
        st.sampled_from(["grad-cam", ["gradcam"], 3]))
    layer = draw(st.sampled_from(["conv1", "relu1", "conv2", "relu2"])) if draw(mostly_valid) else draw(
        st.sampled_from(["fc", "nope", ""]))
    n = len(x)
    target = draw(st.one_of(
        st.none(),
        st.integers(0, classes - 1),
        st.lists(st.integers(0, classes - 1), min_size=n, max_size=n).map(np.array),
    )) if draw(mostly_valid) else draw(st.one_of(
        st.sampled_from([-1, classes]),  # out of range
        st.lists(st.integers(0, classes - 1), min_size=n + 1, max_size=n + 1),  # one too many
    ))
    convention = draw(st.sampled_from(sorted(PRESETS)))
    extra = draw(st.sampled_from([{}, {"eps": 1e-6}, {"eps": "exact"}, {"interpolation": "bicubic"}, {"relu": "always"},
                                  {"normalize": "max"}])) if draw(mostly_valid) else draw(
        st.sampled_from([{"eps": "1e-7"}, {"eps": -1.0}, {"order": "backwards"}]))
    return model, x, method, layer, target, convention, extra


def explained(model, x, method, layer, target, convention, extra):
    options = dict(extra, **OPTIONS.get(method, {}) if isinstance(method, str) else {})
    return explain(model, x, method, layer, target, convention=convention, **options)


@settings(deadline=None, max_examples=300)
@given(calls())
def test_explain_gives_a_right_map_or_a_documented_error(call):
    model, x, method, layer, target, convention, extra = call
    try:
        maps = explained(*call)
    except DOCUMENTED as error:
        assert not isinstance(error, np.linalg.LinAlgError), f"NumPy's error escaped: {error}"
        assert str(error), "an error without a message"
        return
    assert maps.shape == (len(x),) + x.shape[2:]
    assert np.all(np.isfinite(maps)), "a NaN or an infinity in a map"
    normalising = convention in NORMALISING and extra.get("normalize", "minmax") != "none"
    if normalising and extra.get("normalize") != "max":
        assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    tolerance = 1e-4 if x.dtype == np.float32 or convention == "pytorch-grad-cam" else 1e-9
    for i in range(len(x)):  # the same maps, one image at a time
        single_target = target if target is None or np.isscalar(target) else np.asarray(target)[i : i + 1]
        alone = explained(model, x[i : i + 1], method, layer, single_target, convention, extra)
        np.testing.assert_allclose(alone[0], maps[i], rtol=0, atol=tolerance * max(1.0, np.abs(maps[i]).max()))
    if normalising and extra.get("eps") is None:  # exact min-max: a zero map only for a raw map with no range
        record = REGISTRY[method]
        raw = record.function(model, x, layer, target, relu=record.final_relu or extra.get("relu") == "always",
                              **OPTIONS.get(method, {}))
        for i in np.flatnonzero(np.all(maps.reshape(len(x), -1) == 0, axis=1)):
            assert np.ptp(raw[i]) == 0, f"image {i}: a zero map for a raw map with range {np.ptp(raw[i])}"


@pytest.mark.parametrize("bad, error", [(["gradcam"], TypeError), (3, TypeError), ("grad-cam", ValueError)])
def test_a_method_that_is_not_a_name_is_refused_with_the_list_of_names(bad, error):
    model, x = gap_net(np.random.default_rng(0)), np.zeros((1, 3, 5, 5))
    with pytest.raises(error, match="gradcam"):
        explain(model, x, bad, "relu2")
