"""minicam.metrics: every metric on inputs small enough to compute by hand.

The faithfulness metrics run `sum_net`, a model whose logits are known in closed
form: logits = [S, 0, -S] with S the sum of all pixel values (a Flatten and a
Linear layer with weights +1 / 0 / -1). So the logit of class 0 on a masked
image is the sum of the masked pixels, and its softmax probability is
e^S / (e^S + 1 + e^-S).
"""
from collections import OrderedDict

import numpy as np
import pytest
import scipy.stats

from minicam import nn
from minicam.cam import explain
from minicam.cam.capture import predict
from minicam.data import multi_instance, single_instance
from minicam.metrics import (
    area_under_curve,
    average_drop,
    average_ranks,
    confidence_scores,
    deletion_curve,
    energy_pointing_game,
    importance_rank,
    increase_in_confidence,
    insertion_curve,
    instance_coverage,
    instance_coverage_batch,
    peak_locations,
    pointing_game,
    pytorch_grad_cam_drop_in_confidence,
    relative_drops,
    spearman_rank_correlation,
    ssim,
    torchcam_average_drop,
    torchcam_confidence_increase,
    win_percent,
)
from minicam.models import LessonCNN


def sum_net(channels=1, height=2, width=2, dtype=np.float64):
    """logits = [S, 0, -S], S = the sum of all pixels of the image."""
    model = nn.Sequential(OrderedDict([
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(channels * height * width, 3, bias=False, dtype=dtype)),
    ]))
    model.fc.weight.data[...] = 0.0
    model.fc.weight.data[0] = 1.0
    model.fc.weight.data[2] = -1.0
    return model


def p0(S):
    """softmax probability of class 0 for logits [S, 0, -S]."""
    S = np.asarray(S, dtype=np.float64)
    return np.exp(S) / (np.exp(S) + 1 + np.exp(-S))


# Three 1x2x2 images with S = 4, 10, 5 and their maps, chosen so that
#   image 0: O = 0.5 * 4 = 2           drop (4 - 2) / 4 = 0.5
#   image 1: O = 1 + 2 = 3             drop (10 - 3) / 10 = 0.7
#   image 2: O = 4 + 1 + 1 = 6 > 5     the score rises: drop 0, an increase
X = np.array([[[1.0, 1.0], [1.0, 1.0]],
              [[1.0, 2.0], [3.0, 4.0]],
              [[-1.0, 4.0], [1.0, 1.0]]])[:, None]
MAPS = np.array([[[0.5, 0.5], [0.5, 0.5]],
                 [[1.0, 1.0], [0.0, 0.0]],
                 [[0.0, 1.0], [1.0, 1.0]]])
CLASSES = np.array([0, 0, 0])
Y_LOGIT, O_LOGIT = np.array([4.0, 10.0, 5.0]), np.array([2.0, 3.0, 6.0])


# ----------------------------------------------------------------------------
# Average Drop, Increase in Confidence, Win %
# ----------------------------------------------------------------------------


def test_confidence_scores_logit_and_softmax():
    model = sum_net()
    Y, O = confidence_scores(model, X, MAPS, CLASSES, score="logit")
    np.testing.assert_allclose(Y, Y_LOGIT, rtol=0, atol=1e-12)
    np.testing.assert_allclose(O, O_LOGIT, rtol=0, atol=1e-12)
    Y, O = confidence_scores(model, X, MAPS, CLASSES)  # softmax by default
    np.testing.assert_allclose(Y, p0(Y_LOGIT), rtol=1e-13)
    np.testing.assert_allclose(O, p0(O_LOGIT), rtol=1e-13)


def test_average_drop_and_increase_in_confidence_by_hand():
    model = sum_net()
    assert average_drop(model, X, MAPS, CLASSES, score="logit") == pytest.approx(100 * (0.5 + 0.7 + 0) / 3, abs=1e-12)
    assert increase_in_confidence(model, X, MAPS, CLASSES, score="logit") == pytest.approx(100 / 3, abs=1e-12)
    Y, O = p0(Y_LOGIT), p0(O_LOGIT)
    expected = 100 * np.mean(np.maximum(0, Y - O) / Y)
    assert average_drop(model, X, MAPS, CLASSES) == pytest.approx(expected, rel=1e-12)
    assert increase_in_confidence(model, X, MAPS, CLASSES) == pytest.approx(100 / 3, abs=1e-12)
    np.testing.assert_allclose(relative_drops(Y_LOGIT, O_LOGIT), [0.5, 0.7, 0.0], rtol=0, atol=1e-15)


def test_full_map_drops_nothing_and_unchanged_score_is_no_increase():
    model = sum_net()
    ones = np.ones((3, 2, 2))
    assert average_drop(model, X, ones, CLASSES) == 0.0
    assert increase_in_confidence(model, X, ones, CLASSES) == 0.0  # Y == O is not an increase


def test_average_drop_refuses_a_non_positive_logit():
    model = sum_net()
    with pytest.raises(ValueError, match=r"image 0 is Y = -4 <= 0.*score='softmax'"):
        average_drop(model, X, MAPS, np.array([2, 2, 2]), score="logit")  # logit of class 2 is -S
    with pytest.raises(ValueError, match="Y = 0 <= 0"):
        average_drop(model, X, MAPS, np.array([1, 1, 1]), score="logit")  # logit of class 1 is 0
    # the probability of the same class is positive: fine
    assert np.isfinite(average_drop(model, X, MAPS, np.array([2, 2, 2])))


def test_win_percent_and_its_tie_rules():
    a = np.array([0.1, 0.2, 0.3, 0.0])
    b = np.array([0.2, 0.2, 0.1, 0.0])  # a wins once, loses once, ties twice
    assert win_percent(a, b) == 50.0
    assert win_percent(a, b) + win_percent(b, a) == 100.0
    assert win_percent(a, b, ties="lose") == 25.0
    assert win_percent(b, a, ties="lose") == 25.0
    assert win_percent([0.0, 0.1, 0.2], [0.5, 0.5, 0.1]) == pytest.approx(200 / 3, abs=1e-12)
    with pytest.raises(ValueError, match="choose 'half' or 'lose'"):
        win_percent(a, b, ties="split")
    with pytest.raises(ValueError, match=r"shapes \(4,\) and \(3,\)"):
        win_percent(a, b[:3])


# ----------------------------------------------------------------------------
# The libraries' quantities
# ----------------------------------------------------------------------------


def test_torchcam_and_pytorch_grad_cam_quantities():
    model = sum_net()
    expected = (2 / (4 + 1e-7) + 7 / (10 + 1e-7) + 0) / 3  # a fraction, eps in the denominator
    assert torchcam_average_drop(model, X, MAPS, CLASSES, score="logit") == pytest.approx(expected, rel=1e-14)
    assert torchcam_confidence_increase(model, X, MAPS, CLASSES, score="logit") == pytest.approx(1 / 3, abs=1e-15)
    drops = pytorch_grad_cam_drop_in_confidence(model, X, MAPS, CLASSES, score="logit")
    np.testing.assert_allclose(drops, [2.0, 7.0, 0.0], rtol=0, atol=1e-12)  # absolute, per image
    Y, O = p0(Y_LOGIT), p0(O_LOGIT)
    np.testing.assert_allclose(pytorch_grad_cam_drop_in_confidence(model, X, MAPS, CLASSES),
                               np.maximum(Y - O, 0), rtol=1e-12, atol=1e-15)
    # torchcam's number is the paper's / 100, up to its 1e-7
    paper = average_drop(model, X, MAPS, CLASSES)
    assert torchcam_average_drop(model, X, MAPS, CLASSES) == pytest.approx(paper / 100, rel=1e-6)


# ----------------------------------------------------------------------------
# Deletion and insertion
# ----------------------------------------------------------------------------

IMAGE = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])  # S = 10
# order: (0,1) value 1; then the tie 0.5 at (0,0) and (1,0) in row-major order; then (1,1)
ORDER_MAP = np.array([[[0.5, 1.0], [0.5, 0.0]]])


def test_importance_rank_breaks_ties_in_row_major_order():
    np.testing.assert_array_equal(importance_rank(ORDER_MAP[0]), [1, 0, 2, 3])
    np.testing.assert_array_equal(importance_rank(np.zeros((2, 2))), [0, 1, 2, 3])


def test_deletion_and_insertion_on_a_2x2_image_by_hand():
    model = sum_net()
    f, s = deletion_curve(model, IMAGE, ORDER_MAP, [0], steps=4, score="logit")
    np.testing.assert_array_equal(f, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(s, [[10, 8, 7, 4, 0]], rtol=0, atol=1e-12)  # remove 2, then 1, then 3, then 4
    np.testing.assert_allclose(area_under_curve(f, s), [0.25 * (9 + 7.5 + 5.5 + 2)], rtol=1e-14)  # 6
    f, s = insertion_curve(model, IMAGE, ORDER_MAP, [0], steps=4, score="logit")
    np.testing.assert_allclose(s, [[0, 2, 3, 6, 10]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(area_under_curve(f, s), [4.0], rtol=1e-14)
    f, s = deletion_curve(model, IMAGE, ORDER_MAP, [0], steps=4)  # the probability
    np.testing.assert_allclose(s, p0([[10, 8, 7, 4, 0]]), rtol=1e-13)


def test_uneven_chunks_constant_baseline_and_ties():
    model = sum_net()
    # 4 pixels in 3 steps: after step k, the first 4k // 3 pixels = 0, 1, 2, 4
    f, s = deletion_curve(model, IMAGE, ORDER_MAP, [0], steps=3, baseline=1.0, score="logit")
    np.testing.assert_allclose(f, [0, 0.25, 0.5, 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(s, [[10, 9, 9, 4]], rtol=0, atol=1e-12)  # deleted pixels become 1
    # torchcam's grid: chunks of ceil(4 / 3) = 2 pixels, so only 0, 2, 4
    f, s = deletion_curve(model, IMAGE, ORDER_MAP, [0], steps=3, baseline=1.0, score="logit", chunks="torchcam")
    np.testing.assert_allclose(f, [0, 0.5, 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(s, [[10, 9, 4]], rtol=0, atol=1e-12)
    # a constant map is all ties: row-major order, 1 then 2 then 3 then 4
    for constant in (np.zeros((1, 2, 2)), np.full((1, 2, 2), 0.7)):
        f, s = deletion_curve(model, IMAGE, constant, [0], steps=4, score="logit")
        np.testing.assert_allclose(s, [[10, 9, 7, 4, 0]], rtol=0, atol=1e-12)
        assert np.all(np.isfinite(area_under_curve(f, s)))


def test_insertion_from_an_image_baseline_per_channel():
    model = sum_net(channels=2)
    x = np.concatenate([IMAGE, 10 * IMAGE], axis=1)  # (1, 2, 2, 2), S = 110
    baseline = np.full((2, 1, 1), -1.0)  # broadcasts to (C, H, W)
    _, s = insertion_curve(model, x, ORDER_MAP, [0], steps=2, baseline=baseline, score="logit")
    # step 1 reveals pixels (0,1) and (0,0) in both channels: 2 + 20 + 1 + 10, the rest stays -1 (4 values)
    np.testing.assert_allclose(s, [[-8, 33 - 4, 110]], rtol=0, atol=1e-12)


def test_perturbed_images_go_through_the_model_in_batches():
    model = sum_net()
    calls = []
    model.fc.register_forward_hook(lambda module, inputs, output: calls.append(output.shape[0]))
    x = np.stack([IMAGE[0], 2 * IMAGE[0]])
    maps = np.concatenate([ORDER_MAP, ORDER_MAP[:, ::-1]])
    _, s = deletion_curve(model, x, maps, [0, 0], steps=4, score="logit")
    assert calls == [5, 5]  # one call per image with its 5 perturbed copies, no loop over pixels
    calls.clear()
    _, s_small = deletion_curve(model, x, maps, [0, 0], steps=4, score="logit", batch_size=2)
    assert calls == [2, 2, 1, 2, 2, 1]
    np.testing.assert_array_equal(s, s_small)
    # image 1 = 2 * IMAGE, map rows flipped [[0.5, 0], [0.5, 1]]: delete 8, then the tie 2 before 6, then 4
    np.testing.assert_allclose(s[1], [20, 12, 10, 4, 0], rtol=0, atol=1e-12)


def test_area_under_curve_shapes_and_errors():
    assert area_under_curve([0, 0.5, 1], [1, 0.3, 0]) == pytest.approx(0.4, abs=1e-15)  # torchcam's test case
    with pytest.raises(ValueError, match="must not decrease"):
        area_under_curve([0, 1, 0.5], [1, 0.3, 0])
    with pytest.raises(ValueError, match=r"got shapes \(3,\) and \(2,\)"):
        area_under_curve([0, 0.5, 1], [1, 0.3])


# ----------------------------------------------------------------------------
# Pointing game, energy, instances
# ----------------------------------------------------------------------------


def test_pointing_game_hits_misses_and_the_tie_rule():
    maps = np.zeros((3, 3, 3))
    maps[0, 1, 1] = 1.0  # peak (1,1)
    maps[1, 0, 0] = maps[1, 2, 2] = 1.0  # tie: the first in row-major order, (0,0), counts
    maps[2] = 0.3  # constant: points at (0,0)
    masks = np.zeros((3, 3, 3), dtype=bool)
    masks[0, 1, 1] = True
    masks[1, 2, 2] = True
    masks[2, 2, 2] = True
    np.testing.assert_array_equal(peak_locations(maps), [[1, 1], [0, 0], [0, 0]])
    np.testing.assert_array_equal(pointing_game(maps, masks), [True, False, False])


def test_pointing_game_tolerance_is_euclidean_and_inclusive():
    maps = np.zeros((1, 5, 5))
    maps[0, 0, 0] = 1.0
    mask = np.zeros((1, 5, 5), dtype=bool)
    mask[0, 1, 1] = True  # distance sqrt(2) from the peak
    assert not pointing_game(maps, mask, tolerance=1)[0]
    assert pointing_game(maps, mask, tolerance=1.5)[0]
    mask[:] = False
    mask[0, 0, 3] = True  # distance 3
    assert not pointing_game(maps, mask, tolerance=2.99)[0]
    assert pointing_game(maps, mask, tolerance=3)[0]


def test_pointing_game_takes_instance_lists_and_unions_them():
    maps = np.zeros((2, 3, 3))
    maps[0, 2, 0] = maps[1, 0, 2] = 1.0
    instances = [np.zeros((2, 3, 3), dtype=bool), np.zeros((1, 3, 3), dtype=bool)]
    instances[0][1, 2, 0] = True  # the second instance of image 0 is hit
    instances[0][0, 0, 0] = True
    instances[1][0, 1, 1] = True
    np.testing.assert_array_equal(pointing_game(maps, instances), [True, False])
    np.testing.assert_array_equal(pointing_game(maps, np.stack([m.any(0) for m in instances])), [True, False])


def test_energy_pointing_game_by_hand():
    maps = np.array([[[1.0, 0.5], [0.25, 0.25]],
                     [[0.0, 0.0], [0.0, 0.0]],
                     [[0.4, 0.4], [0.4, 0.4]]])
    masks = np.array([[[True, False], [False, True]],
                      [[True, False], [False, False]],
                      [[False, True], [False, False]]])
    np.testing.assert_allclose(energy_pointing_game(maps, masks), [1.25 / 2, 0.0, 0.25], rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="must be >= 0.*ReLU"):
        energy_pointing_game(-maps, masks)


def test_instance_coverage_by_hand():
    map_ = np.array([[1.0, 0.0, 0.0, 0.0],
                     [0.0, 0.0, 0.5, 0.0],
                     [0.0, 0.0, 0.0, 0.0],
                     [0.0, 0.4, 0.0, 0.2]])
    instances = np.zeros((3, 4, 4), dtype=bool)
    instances[0, :2, :2] = True  # max 1.0: found
    instances[1, 1:3, 2:] = True  # max exactly 0.5: found (>=)
    instances[2, 3, :] = True  # max 0.4: missed
    assert instance_coverage(map_, instances) == pytest.approx(2 / 3, abs=1e-15)
    assert instance_coverage(map_, instances, threshold=0.4) == 1.0
    assert instance_coverage(map_, instances, threshold=1.0) == pytest.approx(1 / 3, abs=1e-15)
    assert instance_coverage(np.zeros((4, 4)), instances) == 0.0
    maps = np.stack([map_, np.ones((4, 4))])
    np.testing.assert_allclose(instance_coverage_batch(maps, [instances, instances[:1]]), [2 / 3, 1.0], atol=1e-15)


def test_localisation_metrics_run_on_a_dataset():
    data = multi_instance(np.random.default_rng(0), 3)
    maps = data.union_masks().astype(np.float64)  # a perfect map
    assert pointing_game(maps, data.masks).all()
    np.testing.assert_allclose(energy_pointing_game(maps, data.masks), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(instance_coverage_batch(maps, data.masks), 1.0, rtol=0, atol=0)


# ----------------------------------------------------------------------------
# Similarity: Spearman, SSIM
# ----------------------------------------------------------------------------


def test_spearman_by_hand_and_against_scipy():
    assert spearman_rank_correlation([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(1 - 6 * 2 / 60, abs=1e-15)
    # ties: ranks [1, 2.5, 2.5, 4] against [1, 2, 3, 4] give sqrt(4.5 / 5)
    assert spearman_rank_correlation([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.sqrt(0.9), abs=1e-15)
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.integers(0, 4, size=(6, 7)).astype(float)  # many ties
        b = a + rng.integers(0, 3, size=(6, 7))
        np.testing.assert_allclose(average_ranks(a), scipy.stats.rankdata(a.ravel()), rtol=0, atol=1e-12)
        expected = scipy.stats.spearmanr(a.ravel(), b.ravel()).statistic
        assert spearman_rank_correlation(a, b) == pytest.approx(expected, abs=1e-12)
    assert spearman_rank_correlation(np.zeros((3, 3)), rng.random((3, 3))) == 0.0  # scipy: NaN
    assert spearman_rank_correlation(np.ones((3, 3)), np.ones((3, 3))) == 0.0


def slow_ssim(a, b, data_range=1.0, win=7):
    """Wang et al. 2004 with skimage's defaults, one window at a time with plain loops."""
    C1, C2, n = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2, win * win
    values = []
    for i in range(a.shape[0] - win + 1):
        for j in range(a.shape[1] - win + 1):
            pa, pb = a[i:i + win, j:j + win].ravel(), b[i:i + win, j:j + win].ravel()
            ma, mb = sum(pa) / n, sum(pb) / n
            va = sum((p - ma) ** 2 for p in pa) / (n - 1)
            vb = sum((p - mb) ** 2 for p in pb) / (n - 1)
            cab = sum((p - ma) * (q - mb) for p, q in zip(pa, pb)) / (n - 1)
            values.append((2 * ma * mb + C1) * (2 * cab + C2) / ((ma**2 + mb**2 + C1) * (va + vb + C2)))
    return sum(values) / len(values)


def test_ssim_identities_and_hand_cases():
    rng = np.random.default_rng(1)
    a = rng.random((9, 10))
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-14)
    # two constant maps 0.2 and 0.3: the contrast-structure factor is C2 / C2
    assert ssim(np.full((8, 8), 0.2), np.full((8, 8), 0.3)) == pytest.approx((0.12 + 1e-4) / (0.13 + 1e-4), rel=1e-13)
    assert ssim(np.zeros((7, 7)), np.zeros((7, 7))) == 1.0  # never NaN
    # one 7x7 window: a checkerboard (25 ones) against its negative 1 - a
    checker = (np.add.outer(np.arange(7), np.arange(7)) % 2 == 0).astype(float)
    mu_a, mu_b, var = 25 / 49, 24 / 49, 25 / 98  # sample variance 600 / 49 / 48
    expected = (2 * mu_a * mu_b + 1e-4) * (-2 * var + 9e-4) / ((mu_a**2 + mu_b**2 + 1e-4) * (2 * var + 9e-4))
    assert ssim(checker, 1 - checker) == pytest.approx(expected, rel=1e-13)
    # a constant shift keeps the structure: only the luminance factor is < 1
    b = a + 0.1
    assert ssim(a, b) == pytest.approx(slow_ssim(a, b), rel=1e-12)
    assert ssim(a, b) < 1
    c = rng.random((9, 10))
    assert ssim(a, c, data_range=2.0) == pytest.approx(slow_ssim(a, c, data_range=2.0), rel=1e-12)


# ----------------------------------------------------------------------------
# Degenerate maps, float32, and maps from explain()
# ----------------------------------------------------------------------------


def test_constant_and_all_zero_maps_never_give_nan():
    model = sum_net()
    masks = np.zeros((3, 2, 2), dtype=bool)
    masks[:, 1, 1] = True
    for value in (0.0, 0.6):
        maps = np.full((3, 2, 2), value)
        values = [
            average_drop(model, X, maps, CLASSES), increase_in_confidence(model, X, maps, CLASSES),
            torchcam_average_drop(model, X, maps, CLASSES),
            *area_under_curve(*deletion_curve(model, X, maps, CLASSES, steps=4)),
            *area_under_curve(*insertion_curve(model, X, maps, CLASSES, steps=4)),
            *energy_pointing_game(maps, masks), instance_coverage(maps[0], masks[:1]),
            spearman_rank_correlation(maps[0], MAPS[1]), ssim(np.full((7, 7), value), np.eye(7)),
        ]
        assert np.all(np.isfinite(values))
    zeros = np.zeros((3, 2, 2))
    # an all-zero map shows a black image: O = score of S = 0
    _, O = confidence_scores(model, X, zeros, CLASSES)
    np.testing.assert_allclose(O, p0([0, 0, 0]), rtol=1e-14)
    np.testing.assert_array_equal(energy_pointing_game(zeros, masks), [0, 0, 0])


def test_float32_inputs_and_models():
    model = sum_net(dtype=np.float32)
    Y, O = confidence_scores(model, X.astype(np.float32), MAPS, CLASSES, score="logit")
    np.testing.assert_allclose(Y, Y_LOGIT, rtol=1e-6)
    np.testing.assert_allclose(O, O_LOGIT, rtol=1e-6)
    _, s = deletion_curve(model, IMAGE.astype(np.float32), ORDER_MAP.astype(np.float32), [0], steps=4, score="logit")
    np.testing.assert_allclose(s, [[10, 8, 7, 4, 0]], rtol=1e-6)


def test_metrics_on_maps_from_explain():
    """The curves' end points are the plain scores, and a batch equals one image at a time."""
    rng = np.random.default_rng(0)
    model = LessonCNN(channels=(4, 4, 4), rng=rng).eval()
    data = single_instance(rng, 3, size=16, radius=(3.0, 5.0))
    maps = explain(model, data.images, "gradcam", "features.relu3", target=data.labels)
    probabilities = predict(model, data.images)
    probabilities = np.exp(probabilities) / np.exp(probabilities).sum(axis=1, keepdims=True)
    Y, O = confidence_scores(model, data.images, maps, data.labels)
    np.testing.assert_allclose(Y, probabilities[np.arange(3), data.labels], rtol=1e-12)
    _, sd = deletion_curve(model, data.images, maps, data.labels, steps=8)
    _, si = insertion_curve(model, data.images, maps, data.labels, steps=8)
    np.testing.assert_allclose(sd[:, 0], Y, rtol=1e-12)
    np.testing.assert_allclose(si[:, -1], Y, rtol=1e-12)
    np.testing.assert_allclose(sd[:, -1], si[:, 0], rtol=1e-12)  # both: the all-zero image
    for i in range(3):
        _, one = deletion_curve(model, data.images[i:i + 1], maps[i:i + 1], data.labels[i:i + 1], steps=8)
        np.testing.assert_allclose(one[0], sd[i], rtol=1e-12)
    assert average_drop(model, data.images, maps, data.labels) == pytest.approx(
        100 * np.mean(np.maximum(0, Y - O) / Y), rel=1e-12)


def test_against_torchcam_metrics():
    """torchcam 0.5's ClassificationMetric and DeletionInsertionMetric on a torch twin with the
    same weights, fed the Grad-CAM of the softmax score (torchcam explains the scores its
    logits_fn returns) with explain(convention="torchcam"), the same map torchcam resizes."""
    from functools import partial

    from cam_nets import flatten_net, torch_twin
    from torch_required import require_torch

    torch = require_torch()
    torchcam_methods = pytest.importorskip("torchcam.methods")
    torchcam_metrics = pytest.importorskip("torchcam.metrics")
    rng = np.random.default_rng(0)
    model = flatten_net(rng, classes=4)  # its "relu2" is 4x4: the maps are upsampled to 8x8
    x = rng.random((6, 3, 8, 8))
    twin, softmax = torch_twin(model), partial(torch.softmax, dim=-1)
    classes = predict(model, x).argmax(axis=1)  # torchcam explains the top class
    maps = explain(model, x, "gradcam", "relu2", classes, convention="torchcam", score="softmax")
    with torchcam_methods.GradCAM(twin, "relu2", input_shape=x.shape[1:]) as extractor:
        theirs = torchcam_metrics.ClassificationMetric(extractor, softmax)
        theirs.update(torch.tensor(x))
        theirs = theirs.summary()
    assert torchcam_average_drop(model, x, maps, classes) == pytest.approx(theirs["avg_drop"], rel=1e-12)
    assert torchcam_confidence_increase(model, x, maps, classes) == theirs["conf_increase"]
    for steps, chunks in ((16, "equal"), (7, "torchcam")):  # 64 pixels: chunks of 4; of 10 and a last of 4
        with torchcam_methods.GradCAM(twin, "relu2", input_shape=x.shape[1:]) as extractor:
            theirs = torchcam_metrics.DeletionInsertionMetric(extractor, softmax, steps=steps)
            theirs.update(torch.tensor(x))
            theirs = theirs.summary()
        f, deletion = deletion_curve(model, x, maps, classes, steps=steps, chunks=chunks)
        f, insertion = insertion_curve(model, x, maps, classes, steps=steps, chunks=chunks)
        assert f.size == (17 if steps == 16 else 8)
        assert area_under_curve(f, deletion).mean() == pytest.approx(theirs["deletion_auc"], rel=1e-12)
        assert area_under_curve(f, insertion).mean() == pytest.approx(theirs["insertion_auc"], rel=1e-12)


# ----------------------------------------------------------------------------
# Bad input: errors that say what was wrong and what to do
# ----------------------------------------------------------------------------


def test_map_errors():
    model = sum_net()
    with pytest.raises(ValueError, match=r"shape \(3, 2, 2\).*got \(3, 3, 3\)"):
        average_drop(model, X, np.zeros((3, 3, 3)), CLASSES)
    nan_maps = MAPS.copy()
    nan_maps[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        average_drop(model, X, nan_maps, CLASSES)
    with pytest.raises(ValueError, match=r"\[0, 1\].*normalise"):
        deletion_curve(model, X, 2 * MAPS, CLASSES)
    with pytest.raises(TypeError, match="floating point.*astype"):
        average_drop(model, X, MAPS > 0.5, CLASSES)
    with pytest.raises(ValueError, match=r"at most 4"):
        deletion_curve(model, X, MAPS, CLASSES, steps=5)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        insertion_curve(model, X, MAPS, CLASSES, steps=0)
    with pytest.raises(ValueError, match="choose 'equal' or 'torchcam'"):
        deletion_curve(model, X, MAPS, CLASSES, steps=2, chunks="ceil")
    with pytest.raises(ValueError, match="broadcasts to x's shape"):
        insertion_curve(model, X, MAPS, CLASSES, steps=2, baseline=np.zeros((2, 1, 1)))


def test_class_and_score_errors():
    model = sum_net()
    with pytest.raises(ValueError, match="3 integers, one target class per image"):
        average_drop(model, X, MAPS, [0, 0])
    with pytest.raises(ValueError, match="3 integers"):
        average_drop(model, X, MAPS, np.array([0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"class 3 is out of range.*3 classes \(0 to 2\)"):
        average_drop(model, X, MAPS, np.array([0, 3, 0]))
    with pytest.raises(ValueError, match="unknown score 'prob'"):
        increase_in_confidence(model, X, MAPS, CLASSES, score="prob")


def test_mask_errors():
    maps = np.zeros((2, 3, 3))
    masks = np.zeros((2, 3, 3), dtype=bool)
    masks[0, 0, 0] = True
    with pytest.raises(ValueError, match="image 1 has an empty ground-truth mask"):
        pointing_game(maps, masks)
    with pytest.raises(TypeError, match="boolean.*mask > 0.5"):
        energy_pointing_game(maps, masks.astype(float))
    with pytest.raises(ValueError, match=r"\(2, 3, 3\).*got \(2, 4, 4\)"):
        pointing_game(maps, np.ones((2, 4, 4), dtype=bool))
    with pytest.raises(ValueError, match="1 entries but there are 2 maps"):
        pointing_game(maps, [np.ones((1, 3, 3), dtype=bool)])
    with pytest.raises(ValueError, match="instance 1 has an empty mask"):
        instance_coverage(maps[0], np.stack([masks[0], masks[1]]))
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(maps, np.ones((2, 3, 3), dtype=bool), tolerance=-1)


def test_similarity_errors():
    with pytest.raises(ValueError, match="same shape"):
        spearman_rank_correlation(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        spearman_rank_correlation([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 7 x 7"):
        ssim(np.zeros((6, 9)), np.zeros((6, 9)))
