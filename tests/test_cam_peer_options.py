"""The options that reproduce the peers, and the methods added from them, against hand-computed
values and identities (tests/test_peers_parity.py checks them against the real libraries).

  Grad-CAM++   eps, keep, denominator, divide_alpha, renormalise, exp_score on a hand-worked
               channel; the exp(S) overflow is an error that says what tf-keras-vis returns
  Ablation-CAM pytorch-grad-cam's ablation values, divide_by="y", float32 weights
  Score-CAM    weights_dtype="float32"; SS-CAM with no noise = Score-CAM; IS-CAM's coefficients by
               hand, and IS-CAM with N = 1 and torchcam's coefficients = Score-CAM
  KPCA-CAM     the linear kernel is PCA: = Eigen-CAM centred; other kernels = scikit-learn's KernelPCA
  Eigen-CAM    sign="lapack" is np.linalg.svd's own sign
  presets      explain applies a preset's method options, and the caller's options win
"""
import numpy as np
import pytest
from cam_nets import assert_close, setup

from minicam.cam import PRESETS, explain
from minicam.cam.ablation import ablation_weights, pytorch_grad_cam_ablation_values
from minicam.cam.eigen import eigencam, first_component_map, kernel_component_map, kpcacam
from minicam.cam.gradcampp import gradcampp_map, smoothgradcampp_map
from minicam.cam.scorecam import iscam, iscam_coefficients, scorecam, scorecam_map, sscam
from minicam.errors import NonFiniteError

# One image, one channel, two positions: A = [1, 3] (sum 4), g = [0.5, -0.25].
A = np.array([1.0, 3.0]).reshape(1, 1, 1, 2)
G = np.array([0.5, -0.25]).reshape(1, 1, 1, 2)


def weights_of(**options):
    """Grad-CAM++'s channel weight w for A and G (the map is w * A)."""
    return gradcampp_map(A, G, relu=False, **options)[0, 0, 0] / 1.0


def test_gradcampp_options_by_hand():
    # paper: alpha = 1 / (2 + g sum(A)) where g > 0: at position 0, 1 / (2 + 0.5 * 4) = 1/4; w = 1/4 * 0.5
    assert weights_of() == pytest.approx(0.125, rel=1e-15)
    # eps: g^2 / (2 g^2 + sum(A) g^3 + eps) = 0.25 / (0.5 + 0.5 + 1e-6)
    assert weights_of(alpha_eps=1e-6) == pytest.approx(0.25 / (1 + 1e-6) * 0.5, rel=1e-14)
    # the sum over the product: 2 g^2 + sum_ij(g^3 A) = 0.5 + (0.125 * 1 - 0.015625 * 3) = 0.578125
    assert weights_of(denominator="sum(g^3 A)") == pytest.approx(0.25 / 0.578125 * 0.5, rel=1e-14)
    # torchcam's lost division: alpha = g^2, w = sum g^2 ReLU(g) = 0.25 * 0.5
    assert weights_of(divide_alpha=False) == pytest.approx(0.125, rel=1e-15)
    # renormalise over all positions: alpha at position 1 (g < 0) is 0.0625 / (0.125 - 0.0625) = 1 (kept by
    # keep="g != 0"), so alpha_0 = 0.25 / (0.25 + 1) and w = 0.2 * 0.5
    assert weights_of(keep="g != 0", renormalise="all") == pytest.approx(0.1, rel=1e-14)
    # the authors' renormalisation over g > 0 only: alpha_0 / alpha_0 = 1, w = 0.5
    assert weights_of(renormalise="positive") == pytest.approx(0.5, rel=1e-15)
    assert weights_of(variant="authors") == pytest.approx(0.5, rel=1e-15)
    # exp(S): every weight times exp(S) (alpha unchanged)
    assert weights_of(exp_scores=np.array([2.0])) == pytest.approx(0.125 * np.exp(2.0), rel=1e-14)


def test_gradcampp_pole_rule_against_keep():
    """At 2 + g sum(A) <= 0 (signed activations), minicam's alpha is 0; keep="g != 0" keeps the quotient."""
    A_signed, g = np.array([-3.0, -1.0]).reshape(1, 1, 1, 2), np.array([1.0, 0.0]).reshape(1, 1, 1, 2)
    assert gradcampp_map(A_signed, g, relu=False)[0, 0].tolist() == [0.0, 0.0]  # 2 + 1 * (-4) < 0
    kept = gradcampp_map(A_signed, g, keep="g != 0", relu=False)
    assert_close(kept, (1.0 / (2 - 4)) * 1.0 * A_signed[:, 0])  # alpha = 1 / (2 + g sum A) = -1/2


def test_gradcampp_option_errors():
    with pytest.raises(ValueError, match="keep rule"):
        gradcampp_map(A, G, keep="g >= 0")
    with pytest.raises(ValueError, match="cannot be combined"):
        gradcampp_map(A, G, variant="authors", renormalise="all")
    with pytest.raises(ValueError, match="do not apply"):
        gradcampp_map(A, G, variant="exact", d2=G, d3=G, alpha_eps=1e-6)


def test_exp_score_overflow_is_an_error_that_names_it():
    """float32 exp(S) is inf above S = 88.72: tf-keras-vis returns a NaN map, minicam an error."""
    A32, G32 = A.astype(np.float32), G.astype(np.float32)
    with pytest.raises(NonFiniteError, match=r"exp\(S\) overflows float32.*88\.72.*NaN"):
        gradcampp_map(A32, G32, exp_scores=np.array([89.0]))
    assert np.isfinite(gradcampp_map(A32, G32, exp_scores=np.array([88.0]))).all()
    assert np.isfinite(gradcampp_map(A, G, exp_scores=np.array([89.0]))).all()  # float64 holds exp(89)


def test_smoothgradcampp_torchcam_options_by_hand():
    """Two samples; torchcam: D2 = mean g^2, D3 = mean g^3, alpha = D2 / (2 D2 + sum(D3 A) + eps), ReLU of
    the LAST sample's gradient, the map over given activations."""
    grads = np.stack([G, 3 * G])  # samples of g
    scores = np.zeros((2, 1))
    d2, d3 = (grads**2).mean(axis=0), (grads**3).mean(axis=0)
    alpha = d2 / (2 * d2 + np.sum(d3 * A) + 1e-8)
    w = np.sum(alpha * np.maximum(grads[-1], 0))
    last = 2 * A
    ours = smoothgradcampp_map(A, scores, grads, exp_weights=False, denominator="sum(g^3 A)", alpha_eps=1e-8,
                               relu_gradient="last", map_activations=last, relu=False)
    assert_close(ours, w * last[:, 0])


def test_pytorch_grad_cam_ablation_values():
    """0 for every copy when the minimum is 0; else min - 1e7, min - 2e7, ... (the minimum taken again
    after each ablated copy)."""
    assert pytorch_grad_cam_ablation_values(np.array([[[0.0, 2.0]]]), 3).tolist() == [0.0, 0.0, 0.0]
    values = pytorch_grad_cam_ablation_values(np.array([[[1.5, 2.0]]]), 3)
    assert values.tolist() == [1.5 - 1e7, 1.5 - 2e7, 1.5 - 3e7]
    f32 = pytorch_grad_cam_ablation_values(np.array([[[1.5, 2.0]]], dtype=np.float32), 2)
    assert f32.dtype == np.float32 and f32[0] == np.float32(np.float32(1.5) - np.float32(1e7))


def test_ablation_divide_by_y_and_float32_weights():
    y, y_ablated = np.array([-2.0]), np.array([[-3.0, -1.0]])
    assert ablation_weights(y, y_ablated).tolist() == [[0.5, -0.5]]  # / |y|
    assert ablation_weights(y, y_ablated, divide_by="y").tolist() == [[-0.5, 0.5]]  # / y: flipped
    y, y_ablated = np.array([1.0 + 1e-12]), np.array([[1.0]])
    assert ablation_weights(y, y_ablated, weights_dtype="float32")[0, 0] == 0.0  # 1 + 1e-12 is 1 in float32
    assert ablation_weights(y, y_ablated)[0, 0] == pytest.approx(1e-12, rel=1e-3)


def test_scorecam_float32_weights():
    C = np.array([[0.1 + 1e-12, 0.2]])
    A2 = np.ones((1, 2, 1, 1))
    softmax32 = np.exp(C.astype(np.float32)) / np.exp(C.astype(np.float32)).sum()
    assert scorecam_map(A2, C, weights_dtype="float32", relu=False)[0, 0, 0] == pytest.approx(softmax32.sum(),
                                                                                             rel=1e-7)
    ours = scorecam_map(A2, C, channel_softmax=False, weights_dtype="float32", relu=False)
    assert ours[0, 0, 0] == float(np.float32(0.1 + 1e-12)) + float(np.float32(0.2))  # float32 weights, float64 sum


def test_sscam_without_noise_is_scorecam_and_iscam_coefficients():
    model, x = setup("flatten", seed=1, n=2)
    assert_close(sscam(model, x, "relu2", n_samples=3, noise_std=0.0), scorecam(model, x, "relu2"))
    assert_close(iscam(model, x, "relu2", n_samples=1, coefficients="torchcam"), scorecam(model, x, "relu2"))
    assert iscam_coefficients(4).tolist() == [0.0, 0.25, 0.75, 1.5]  # i (i - 1) / 8
    assert iscam_coefficients(4, "torchcam").tolist() == [0.25, 0.75, 1.5, 2.5]  # i (i + 1) / 8
    # IS-CAM with N = 1 and the paper's coefficient 0: every masked input is black, C = 0: a zero map
    assert np.all(iscam(model, x, "relu2", n_samples=1) == 0)
    # explicit noise, one per image: the same as drawing it once when both images get the same
    noise = np.random.default_rng(5).normal(0, 0.5, (2, 5, 8, 8))
    assert_close(sscam(model, x, "relu2", noise=noise), sscam(model, x, "relu2", noise=np.stack([noise, noise], 1)))


def test_kpcacam_linear_kernel_is_centred_pca_and_other_kernels_are_scikit_learns():
    model, x = setup("flatten", seed=2, n=2)
    assert_close(kpcacam(model, x, "relu2", kernel="linear"), eigencam(model, x, "relu2", center=True))
    sklearn = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(0)
    activations = np.abs(rng.standard_normal((6, 5, 5)))
    O = activations.reshape(6, -1).T
    O = O - O.mean(axis=0)
    for kernel, options in (("sigmoid", {}), ("rbf", {"gamma": 0.3}), ("poly", {"degree": 2, "coef0": 0.5})):
        theirs = sklearn.KernelPCA(n_components=1, kernel=kernel, **options).fit_transform(O).reshape(5, 5)
        assert_close(kernel_component_map(activations, kernel, **options), theirs, rtol=1e-9)


def test_eigen_lapack_sign_is_numpys_own():
    rng = np.random.default_rng(1)
    activations = rng.standard_normal((4, 3, 3))
    O = activations.reshape(4, 9).T
    O = O - O.mean(axis=0)
    _, _, Vt = np.linalg.svd(O, full_matrices=True)
    assert np.array_equal(first_component_map(activations, center=True, sign="lapack"), (O @ Vt[0]).reshape(3, 3))
    minicam_rule = first_component_map(activations, center=True)
    assert np.allclose(np.abs(minicam_rule), np.abs(O @ Vt[0]).reshape(3, 3), rtol=1e-12)


def test_explain_applies_the_preset_method_options_under_the_callers():
    model, x = setup("gap", seed=3, n=2)
    preset = PRESETS["pytorch-grad-cam"].options_for("gradcam++")
    assert preset == {"alpha_eps": 1e-6, "keep": "g != 0"}
    ours = explain(model, x, "gradcam++", "relu2", [0, 1], convention="pytorch-grad-cam")
    by_hand = explain(model, x, "gradcam++", "relu2", [0, 1], convention="pytorch-grad-cam", alpha_eps=1e-6,
                      keep="g != 0")
    assert np.array_equal(ours, by_hand)
    switched_back = explain(model, x, "gradcam++", "relu2", [0, 1], convention="pytorch-grad-cam", alpha_eps=None,
                            keep="g > 0")
    assert np.abs(switched_back - ours).max() > 1e-3  # the eps matters on this net (g^2 of order 1e-5)
    assert PRESETS["minicam"].method_options == {} and PRESETS["paper"].method_options == {}
    with pytest.raises(TypeError):
        PRESETS["torchcam"].method_options["gradcam++"]["eps"] = 0.0  # read-only records
