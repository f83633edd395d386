"""The pipeline after a method's raw map, step by step, with hand-computed numbers.

normalize_maps  minmax / max, exact (eps None: a map with no range gives exact zeros, never
                NaN) or with the peers' eps: (x - min) / (max - min + eps), x / (max + eps)
resize_maps     [[0, 1], [2, 3]] 2x2 -> 4x4: bilinear half-pixel rows [0, .25, .75, 1] + 2 r,
                corner-aligned [0, 1/3, 2/3, 1] + 2 r (= scipy.ndimage.zoom(order=1), which
                tf-keras-vis uses), nearest [0, 0, 1, 1]; bicubic and the rest against torch
order           a 3x3 map with an interior peak: resize-then-normalise and
                normalise-then-resize give different numbers (1 vs 0.390625 at the peak)
presets         every preset of explain() equals its steps, written out here by hand (own
                interpolation weights, own min-max), applied to the method's raw map
"""

import numpy as np
import pytest

from cam_nets import flatten_net, gap_net, images
from minicam.cam import PRESETS, Pipeline, describe_convention, explain
from minicam.cam.cam import cam
from minicam.cam.conventions import normalize_maps, postprocess, resize_maps
from minicam.cam.gradient import gradcam, gradcam_elementwise

RAMP = np.array([[[0.0, 1.0], [2.0, 3.0]]])  # (1, 2, 2)


def no_warnings():
    """Any division by zero or invalid operation raises instead of warning."""
    return np.errstate(all="raise")


# ----------------------------------------------------------------------------
# normalize_maps
# ----------------------------------------------------------------------------


def test_minmax_and_max_by_hand():
    maps = np.array([[[1.0, 2.0], [3.0, 5.0]], [[-2.0, 0.0], [2.0, 6.0]]])
    np.testing.assert_array_equal(normalize_maps(maps, "minmax"), [[[0, 0.25], [0.5, 1]], [[0, 0.25], [0.5, 1]]])
    np.testing.assert_allclose(normalize_maps(maps, "max"), [[[0.2, 0.4], [0.6, 1]], [[-1 / 3, 0], [1 / 3, 1]]],
                               rtol=1e-15)
    assert normalize_maps(maps, "none") is maps


def test_each_map_is_normalised_on_its_own():
    small, large = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[10.0, 40.0], [20.0, 30.0]])
    together = normalize_maps(np.stack([small, large]), "minmax")
    for i, one in enumerate((small, large)):
        np.testing.assert_array_equal(together[i], normalize_maps(one[None], "minmax")[0])
    np.testing.assert_allclose(together[1], [[0, 1], [1 / 3, 2 / 3]], rtol=1e-15)


def test_no_range_gives_exact_zeros_never_nan():
    constant = np.full((1, 3, 3), 2.5)
    zero = np.zeros((1, 3, 3))
    negative = -np.arange(1.0, 10.0).reshape(1, 3, 3)
    with no_warnings():
        for maps in (constant, zero):
            out = normalize_maps(maps, "minmax")
            np.testing.assert_array_equal(out, 0.0)
        for maps in (zero, negative):  # "max" with max <= 0: nothing to scale by
            np.testing.assert_array_equal(normalize_maps(maps, "max"), 0.0)
        # a constant positive map has a max, and x / max = 1
        np.testing.assert_array_equal(normalize_maps(constant, "max"), 1.0)
        # an all-negative map still has a range for min-max: (x - min) / (max - min)
        np.testing.assert_allclose(normalize_maps(negative, "minmax")[0], (negative[0] + 9) / 8, rtol=1e-15)
        # a batch with one dead map: the other is normalised as usual
        both = normalize_maps(np.concatenate([zero, constant + np.eye(3)[None]]), "minmax")
        np.testing.assert_array_equal(both[0], 0.0)
        np.testing.assert_array_equal(both[1], np.eye(3))


def test_eps_is_the_peers_formula():
    maps = np.array([[[1.0, 2.0], [3.0, 5.0]]])
    for eps in (1e-7, 1e-8, 0.5):
        np.testing.assert_allclose(normalize_maps(maps, "minmax", eps), (maps - 1) / (4 + eps), rtol=1e-15)
        np.testing.assert_allclose(normalize_maps(maps, "max", eps), maps / (5 + eps), rtol=1e-15)
    with no_warnings():  # pytorch-grad-cam's all-zero map: 0 / (0 + eps) = 0
        np.testing.assert_array_equal(normalize_maps(np.zeros((1, 2, 2)), "minmax", 1e-7), 0.0)
    # eps makes the maximum fall short of 1, by eps / range
    assert normalize_maps(maps, "minmax", 1e-7).max() == 4 / (4 + 1e-7) < 1


def test_normalize_keeps_float32():
    maps = np.array([[[1.0, 2.0], [3.0, 5.0]]], dtype=np.float32)
    for how in ("minmax", "max"):
        for eps in (None, 1e-7):
            assert normalize_maps(maps, how, eps).dtype == np.float32


# ----------------------------------------------------------------------------
# resize_maps
# ----------------------------------------------------------------------------


def test_bilinear_half_pixel_by_hand():
    """2 -> 4 with half-pixel centres: output pixel i samples (i + 0.5) / 2 - 0.5 =
    -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to the last pixel): weights
    [1, 0], [.75, .25], [.25, .75], [0, 1]. The ramp is 2 row + column, so each output
    is 2 r_i + r_j with r = [0, .25, .75, 1]."""
    r = np.array([0, 0.25, 0.75, 1])
    out = resize_maps(RAMP, (4, 4), "bilinear")[0]
    np.testing.assert_array_equal(out[0], [0, 0.25, 0.75, 1])
    np.testing.assert_allclose(out, 2 * r[:, None] + r[None, :], rtol=0, atol=1e-15)


def test_bilinear_corner_aligned_by_hand():
    """align_corners: output i samples i (2 - 1) / (4 - 1) = i / 3."""
    r = np.arange(4) / 3
    out = resize_maps(RAMP, (4, 4), "bilinear-corners")[0]
    np.testing.assert_allclose(out[0], [0, 1 / 3, 2 / 3, 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(out, 2 * r[:, None] + r[None, :], rtol=0, atol=1e-15)


def test_bilinear_corners_is_scipy_zoom_order_1():
    """tf-keras-vis upsamples with scipy.ndimage.zoom(cam, factor, order=1): corner-aligned."""
    ndimage = pytest.importorskip("scipy.ndimage")
    maps = np.random.default_rng(0).standard_normal((2, 3, 5))
    ours = resize_maps(maps, (6, 10), "bilinear-corners")
    theirs = ndimage.zoom(maps, (1, 2, 2), order=1)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-13)


def test_nearest_by_hand():
    """torch's legacy nearest: source = floor(i * 2 / 4) = [0, 0, 1, 1]."""
    np.testing.assert_array_equal(
        resize_maps(RAMP, (4, 4), "nearest")[0], [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    )


def test_same_size_is_the_identity():
    maps = np.random.default_rng(1).standard_normal((2, 3, 4))
    for interpolation in ("bilinear", "bilinear-corners", "nearest"):
        np.testing.assert_array_equal(resize_maps(maps, (3, 4), interpolation), maps)
    np.testing.assert_allclose(resize_maps(maps, (3, 4), "bicubic"), maps, rtol=0, atol=1e-15)


@pytest.mark.parametrize("interpolation", ["bilinear", "bilinear-corners", "nearest", "bicubic"])
@pytest.mark.parametrize("sizes", [((2, 2), (4, 4)), ((3, 5), (7, 9)), ((4, 4), (8, 8)), ((5, 3), (5, 8)), ((6, 6), (4, 3))])
def test_resize_against_torch(interpolation, sizes):
    from torch_required import require_torch

    torch = require_torch()
    (h, w), size = sizes
    maps = np.random.default_rng(h * 10 + w).standard_normal((2, h, w))
    mode = {"bilinear-corners": "bilinear"}.get(interpolation, interpolation)
    options = {} if mode == "nearest" else {"align_corners": interpolation == "bilinear-corners"}
    expected = torch.nn.functional.interpolate(torch.tensor(maps)[:, None], size=size, mode=mode, **options)[:, 0]
    np.testing.assert_allclose(resize_maps(maps, size, interpolation), expected.numpy(), rtol=0, atol=1e-13)


def test_resize_keeps_float32():
    assert resize_maps(RAMP.astype(np.float32), (4, 4)).dtype == np.float32


# ----------------------------------------------------------------------------
# The order of resizing and normalising
# ----------------------------------------------------------------------------


PEAK = np.array([[[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])


def test_order_matters_for_an_interior_peak():
    """3 -> 4 half-pixel: output rows sample -0.125 (-> 0), 0.625, 1.375, 2.125 (-> 2), so the
    middle input row gets weights r = [0, .625, .625, 0] and the peak becomes r r^T, whose
    largest value is 0.390625: interpolation does not reproduce an interior maximum.
    normalise-then-resize keeps 0.390625; resize-then-normalise rescales it to 1."""
    r = np.array([0, 0.625, 0.625, 0])
    resized = np.outer(r, r)
    assert resized.max() == 0.390625
    first_normalise = postprocess(PEAK, (4, 4), Pipeline(order="normalize-then-resize"), True)
    first_resize = postprocess(PEAK, (4, 4), Pipeline(order="resize-then-normalize"), True)
    both = postprocess(PEAK, (4, 4), Pipeline(order="normalize-resize-normalize"), True)
    np.testing.assert_allclose(first_normalise[0], resized, rtol=0, atol=1e-15)
    np.testing.assert_allclose(first_resize[0], resized / 0.390625, rtol=0, atol=1e-15)
    np.testing.assert_allclose(both[0], resized / 0.390625, rtol=0, atol=1e-15)
    assert first_resize[0, 1, 1] == 1 and first_normalise[0, 1, 1] == 0.390625


def test_order_matters_for_the_minimum_too():
    """A map whose minimum is interior: after resizing (bilinear, 3 -> 4) the minimum
    is not reached, so normalise-then-resize does not reach 0 either."""
    dip = 1 - PEAK
    first_normalise = postprocess(dip, (4, 4), Pipeline(order="normalize-then-resize"), False)
    first_resize = postprocess(dip, (4, 4), Pipeline(order="resize-then-normalize"), False)
    assert first_normalise.min() == 1 - 0.390625
    assert first_resize.min() == 0 and first_resize.max() == 1


# ----------------------------------------------------------------------------
# Presets: explain() = the preset's steps, by hand
# ----------------------------------------------------------------------------


def hand_weights(n_in, n_out, kind):
    """1-D interpolation weights (n_out, n_in), written out one output pixel at a time."""
    M = np.zeros((n_out, n_in))
    for i in range(n_out):
        if kind == "nearest":
            M[i, min(int(np.floor(i * n_in / n_out)), n_in - 1)] = 1
            continue
        if kind == "bilinear":  # half-pixel centres, the left border clamped
            src = max((i + 0.5) * n_in / n_out - 0.5, 0.0) if n_in != n_out else float(i)
        else:  # "bilinear-corners"
            src = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        low = min(int(np.floor(src)), n_in - 1)
        high = min(low + 1, n_in - 1)
        M[i, low] += 1 - (src - low)
        M[i, high] += src - low
    return M


def hand_resize(maps, size, kind):
    rows, cols = hand_weights(maps.shape[1], size[0], kind), hand_weights(maps.shape[2], size[1], kind)
    return np.stack([rows @ m @ cols.T for m in maps])


def hand_minmax(maps, eps):
    out = []
    for m in maps:
        shifted = m - m.min()
        span = shifted.max()
        if eps is None:
            out.append(shifted / span if span > 0 else np.zeros_like(m))
        else:
            out.append(shifted / (span + eps))
    return np.stack(out)


def hand_preset(name, raw, size, method_has_relu):
    """Each preset's recipe, as the peer's documentation/code describes it (docs/peers.md, Shared plumbing)."""
    relu = np.maximum
    if name == "minicam":
        maps = relu(raw, 0) if method_has_relu else raw
        return hand_minmax(hand_resize(maps, size, "bilinear"), None)
    if name == "paper":
        maps = relu(raw, 0) if method_has_relu else raw
        return hand_resize(maps, size, "bilinear")
    if name == "pytorch-grad-cam":  # ReLU always; scale_cam_image(cam, size); then scale_cam_image again
        maps = hand_resize(hand_minmax(relu(raw, 0), 1e-7), size, "bilinear")
        return hand_minmax(maps, 1e-7).astype(np.float32)
    if name == "torchcam":  # its own ReLU; _normalize at the layer's size; F.interpolate bilinear
        maps = relu(raw, 0) if method_has_relu else raw
        return hand_resize(hand_minmax(maps, 1e-8), size, "bilinear")
    if name == "captum":  # no ReLU, LayerAttribution.interpolate (nearest), no normalisation
        return hand_resize(raw, size, "nearest")
    if name == "tf-keras-vis":  # activation_modifier=relu; zoom(order=1); normalize (eps 1e-7)
        return hand_minmax(hand_resize(relu(raw, 0), size, "bilinear-corners"), 1e-7)
    raise AssertionError(name)


def raw_maps(model, x, targets):
    """(method name, raw map without its final ReLU, whether the method has one)."""
    out = [
        ("gradcam", gradcam(model, x, "relu2", targets, relu=False), True),
        ("gradcam-elementwise", gradcam_elementwise(model, x, "relu2", targets), False),
    ]
    if hasattr(model, "pool"):
        out.append(("cam", cam(model, x, "relu2", targets), False))
    return out


def test_presets_are_the_ones_tested_here():
    assert set(PRESETS) == {"minicam", "paper", "pytorch-grad-cam", "torchcam", "captum", "tf-keras-vis"}


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("head", ["gap", "flatten"])
def test_explain_preset_equals_its_steps_by_hand(preset, head):
    """gap_net keeps the input's 8x8 at relu2 (no resize); flatten_net halves it (4x4 -> 8x8)."""
    rng = np.random.default_rng(11)
    model = gap_net(rng) if head == "gap" else flatten_net(rng)
    x = images(rng, 3)
    targets = [0, 1, 2]
    for method, raw, has_relu in raw_maps(model, x, targets):
        expected = hand_preset(preset, raw, x.shape[2:], has_relu)
        ours = explain(model, x, method, "relu2", targets, convention=preset)
        assert ours.shape == (3, 8, 8)
        assert ours.dtype == (np.float32 if preset == "pytorch-grad-cam" else np.float64)
        tolerance = 1e-6 if preset == "pytorch-grad-cam" else 1e-12
        scale = max(np.abs(expected).max(), 1e-300)
        assert np.abs(ours - expected).max() <= tolerance * scale, (preset, method, np.abs(ours - expected).max())
        assert np.all(np.isfinite(ours))


def test_signed_map_and_relu_placement():
    """CAM is signed: the minicam preset keeps its negative part (relu="method"), the
    pytorch-grad-cam and tf-keras-vis presets remove it (relu="always"); relu="none"
    gives a signed Grad-CAM; relu="always" on CAM equals minmax of ReLU(CAM)."""
    rng = np.random.default_rng(12)
    model = gap_net(rng)
    x = images(rng, 2)
    raw = cam(model, x, "relu2", [0, 1])
    assert raw.min() < 0 < raw.max()  # the case is informative
    np.testing.assert_allclose(explain(model, x, "cam", "relu2", [0, 1]), hand_minmax(raw, None), atol=1e-12)
    np.testing.assert_allclose(explain(model, x, "cam", "relu2", [0, 1], relu="always"),
                               hand_minmax(np.maximum(raw, 0), None), atol=1e-12)
    signed = gradcam(model, x, "relu2", [0, 1], relu=False)
    np.testing.assert_allclose(explain(model, x, "gradcam", "relu2", [0, 1], relu="none", normalize="none"),
                               signed, rtol=0, atol=1e-15)


def test_overrides_by_hand():
    """Each keyword overrides one step of the preset; eps="exact" removes a preset's eps."""
    rng = np.random.default_rng(13)
    model = flatten_net(rng)
    x = images(rng, 2)
    raw = np.maximum(gradcam(model, x, "relu2", [0, 1], relu=False), 0)
    size = x.shape[2:]
    cases = [
        (dict(convention="pytorch-grad-cam", eps="exact"),
         hand_minmax(hand_resize(hand_minmax(raw, None), size, "bilinear"), None).astype(np.float32)),
        (dict(normalize="max"), hand_resize(raw, size, "bilinear") / hand_resize(raw, size, "bilinear").max(axis=(1, 2), keepdims=True)),
        (dict(interpolation="nearest"), hand_minmax(hand_resize(raw, size, "nearest"), None)),
        (dict(interpolation="bilinear-corners", eps=1e-7), hand_minmax(hand_resize(raw, size, "bilinear-corners"), 1e-7)),
        (dict(order="normalize-then-resize"), hand_resize(hand_minmax(raw, None), size, "bilinear")),
        (dict(convention="torchcam", order="resize-then-normalize"), hand_minmax(hand_resize(raw, size, "bilinear"), 1e-8)),
    ]
    for options, expected in cases:
        ours = explain(model, x, "gradcam", "relu2", [0, 1], **options)
        assert ours.dtype == expected.dtype, options
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6 if ours.dtype == np.float32 else 1e-12,
                                   err_msg=str(options))


def test_dead_map_gives_zeros_in_every_preset():
    """A target whose Grad-CAM is negative everywhere: ReLU gives an all-zero map, which
    every normalising preset turns into zeros (not NaN)."""
    raw = -np.ones((1, 4, 4)) - np.arange(16.0).reshape(1, 4, 4)
    with no_warnings():
        for name, pipeline in PRESETS.items():
            out = postprocess(raw, (8, 8), pipeline, True)
            assert np.all(np.isfinite(out)), name
            if pipeline.relu != "none":
                np.testing.assert_array_equal(out, 0.0, err_msg=name)


def test_describe_convention_names_each_choice():
    assert "1e-7" in describe_convention("pytorch-grad-cam") and "float32" in describe_convention("pytorch-grad-cam")
    assert "1e-8" in describe_convention("torchcam")
    assert "nearest" in describe_convention("captum")
    with pytest.raises(ValueError, match="unknown convention"):
        describe_convention("keras")


def test_pipeline_rejects_unknown_choices():
    for field, value in (("relu", "sometimes"), ("normalize", "zscore"), ("interpolation", "lanczos"),
                         ("order", "whatever")):
        with pytest.raises(ValueError, match=f"unknown {field}"):
            Pipeline(**{field: value})
    with pytest.raises(ValueError, match="eps"):
        Pipeline(eps=-1.0)
