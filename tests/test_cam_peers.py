"""minicam against the installed peers, on torch twins with identical float64 weights.

  captum 0.9.0    LayerGradCam (relu_attributions True/False, attr_dim_summation=False),
                  LayerAttribution.interpolate (the "captum" preset's nearest upsampling)
  torchcam 0.5.0  CAM, GradCAM, XGradCAM, LayerCAM with normalized=False (raw maps), and
                  normalized=True against explain(convention="torchcam") (whose method options
                  reproduce torchcam's eps and its Grad-CAM++; tests/test_peers_parity.py runs
                  every method of every library);
                  GradCAMpp: its formula differs from the paper (docs/peers.md, Grad-CAM++). The faulty
                  formula is written out below and reproduces torchcam to 1e-10; minicam's
                  paper variant differs from it by a measured amount.
  hand-written    Grad-CAM and pytorch-grad-cam's Grad-CAM++ (eq. 19 with its 1e-6 eps) in
                  torch, and pytorch-grad-cam's pipeline (it needs torchvision, which does
                  not import beside this torch, so its formulas are written out instead).

torchcam conventions (read from torchcam/methods/core.py and gradient.py, v0.5.0):
  * maps stay at the layer's resolution (no upsampling in the methods);
  * normalized=True: per sample, x -= min; x /= (max + 1e-8), after the method's ReLU
    (GradCAM, XGradCAM, LayerCAM, GradCAMpp have one; CAM has none);
  * XGradCAM's weights are sum(g A) / (sum(A) + eps) with eps = 1e-8 (a keyword of
    _get_weights, so eps=0.0 can be passed through the call);
  * it upsamples (fuse_cams, metrics) with F.interpolate(bilinear, align_corners=False).
Tolerances: 1e-10 relative (float64) unless a test says otherwise.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_required import require_torch

torch = require_torch()
F = torch.nn.functional
captum_attr = pytest.importorskip("captum.attr")
torchcam_methods = pytest.importorskip("torchcam.methods")

from cam_nets import flatten_net, gap_net, images, record, relu, torch_twin  # noqa: E402
from minicam.cam import explain  # noqa: E402
from minicam.cam.cam import cam  # noqa: E402
from minicam.cam.capture import capture  # noqa: E402
from minicam.cam.gradcampp import gradcampp  # noqa: E402
from minicam.cam.gradient import gradcam, layercam, xgradcam  # noqa: E402

ORACLE = 1e-10


def assert_close(actual, expected, rtol, scale=None, what=""):
    dtype = np.asarray(actual).dtype
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if scale is None:
        scale = np.abs(expected).max() + 1e-300
    error = np.abs(actual - expected).max()
    record(what, dtype, error / scale if scale > 0 else 0.0)
    assert error <= rtol * scale, f"{what}: max error {error:.3e} > {rtol:.0e} * scale {scale:.3e}"


def torch_minmax(maps, eps):
    """torchcam's _normalize and pytorch-grad-cam's scale_cam_image, per map: (x - min) / (max - min + eps)."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values[:, None, None]
    shifted = maps - low
    return shifted / (shifted.flatten(1).max(dim=1).values[:, None, None] + eps)


@st.composite
def cases(draw, max_batch=3):
    seed = draw(st.integers(0, 2**32 - 1))
    head = draw(st.sampled_from(["gap", "flatten"]))
    n = draw(st.integers(1, max_batch))
    classes = draw(st.integers(2, 4))
    channels = draw(st.integers(2, 5))
    targets = draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n))
    rng = np.random.default_rng(seed)
    if head == "gap":
        size = draw(st.integers(3, 7))
        model = gap_net(rng, channels=channels, classes=classes)
    else:
        size = draw(st.sampled_from([4, 6, 8]))
        model = flatten_net(rng, size=size, channels=channels, classes=classes)
    return model, images(rng, n, 3, size), targets


LAYERS = st.sampled_from(["relu2", "conv2", "relu1", "conv1"])


# ----------------------------------------------------------------------------
# captum
# ----------------------------------------------------------------------------


@settings(max_examples=20)
@given(cases(), LAYERS)
def test_captum_layergradcam(case, layer):
    model, x, targets = case
    twin = torch_twin(model)
    explainer = captum_attr.LayerGradCam(twin, getattr(twin, layer))
    xt = torch.tensor(x)
    with_relu = explainer.attribute(xt, target=targets, relu_attributions=True)[:, 0].detach().numpy()
    signed = explainer.attribute(xt, target=targets, relu_attributions=False)[:, 0].detach().numpy()
    scale = np.abs(signed).max() + 1e-300
    assert_close(gradcam(model, x, layer, targets), with_relu, ORACLE, scale, "captum LayerGradCam relu=True vs gradcam")
    assert_close(gradcam(model, x, layer, targets, relu=False), signed, ORACLE, scale, "captum LayerGradCam relu=False vs gradcam signed")
    # attr_dim_summation=False: the per-channel terms alpha_k A_k, from minicam's capture
    terms = explainer.attribute(xt, target=targets, attr_dim_summation=False).detach().numpy()
    cap = capture(model, x, layer, targets)
    alpha = cap.gradients().data.mean(axis=(2, 3), keepdims=True)
    assert_close(alpha * cap.A, terms, ORACLE, np.abs(terms).max() + 1e-300, "captum LayerGradCam per-channel terms vs capture")


@settings(max_examples=10)
@given(cases())
def test_captum_preset_is_layerattribution_interpolate(case):
    """explain(convention="captum") = LayerAttribution.interpolate(signed Grad-CAM, input size),
    whose default mode is nearest; no ReLU, no normalisation."""
    model, x, targets = case
    twin = torch_twin(model)
    attribution = captum_attr.LayerGradCam(twin, twin.relu2).attribute(torch.tensor(x), target=targets)
    upsampled = captum_attr.LayerAttribution.interpolate(attribution, x.shape[2:])[:, 0].detach().numpy()
    ours = explain(model, x, "gradcam", "relu2", targets, convention="captum")
    assert_close(ours, upsampled, ORACLE, np.abs(upsampled).max() + 1e-300, "captum interpolate vs explain captum preset")


# ----------------------------------------------------------------------------
# torchcam: raw maps (normalized=False)
# ----------------------------------------------------------------------------


def torchcam_maps(extractor_class, twin, x, targets, layer, normalized, fc=None, **call_options):
    """Run a torchcam extractor on the twin; its map (N, h, w) as NumPy."""
    options = {"fc_layer": fc} if fc else {}
    with extractor_class(twin, layer, input_shape=x.shape[1:], **options) as extractor:
        xt = torch.tensor(x)
        if extractor_class is torchcam_methods.CAM:
            with torch.no_grad():
                twin(xt)
            maps = extractor(class_idx=list(targets), normalized=normalized)
        else:
            scores = twin(xt)
            maps = extractor(class_idx=list(targets), scores=scores, normalized=normalized, **call_options)
    return maps[0].detach().numpy()


@settings(max_examples=15)
@given(cases(), st.sampled_from(["relu2", "conv2", "relu1"]))
def test_torchcam_gradient_methods_raw(case, layer):
    model, x, targets = case
    twin = torch_twin(model)
    for extractor, ours in (
        (torchcam_methods.GradCAM, gradcam(model, x, layer, targets)),
        (torchcam_methods.LayerCAM, layercam(model, x, layer, targets)),
    ):
        theirs = torchcam_maps(extractor, twin, x, targets, layer, normalized=False)
        assert_close(ours, theirs, ORACLE, np.abs(theirs).max() + 1e-300, f"torchcam {extractor.__name__} raw")


@settings(max_examples=15)
@given(cases(), st.sampled_from(["relu2", "relu1"]))
def test_torchcam_xgradcam_raw(case, layer):
    """torchcam's weights are sum(gA) / (sum(A) + 1e-8). With eps=0 they are the paper's and
    minicam's (on ReLU layers sum(A) >= 0; a channel with sum(A) = 0 is all zeros, where
    torchcam's 0/0 = NaN is dropped by its nansum and minicam's rule gives weight 0). With the
    default eps the map is minicam's A and g through torchcam's formula."""
    model, x, targets = case
    twin = torch_twin(model)
    theirs = torchcam_maps(torchcam_methods.XGradCAM, twin, x, targets, layer, normalized=False, eps=0.0)
    ours = xgradcam(model, x, layer, targets)
    assert_close(ours, theirs, ORACLE, np.abs(theirs).max() + 1e-300, "torchcam XGradCAM eps=0 vs xgradcam")
    theirs_eps = torchcam_maps(torchcam_methods.XGradCAM, twin, x, targets, layer, normalized=False)
    cap = capture(model, x, layer, targets)
    A, g = cap.A, cap.gradients().data
    w = (g * A).sum(axis=(2, 3)) / (A.sum(axis=(2, 3)) + 1e-8)
    formula = relu(np.einsum("nk,nkhw->nhw", w, A))
    assert_close(formula, theirs_eps, ORACLE, np.abs(theirs_eps).max() + 1e-300, "torchcam XGradCAM eps=1e-8 vs its formula on capture")


@settings(max_examples=15)
@given(cases())
def test_torchcam_cam_raw(case):
    model, x, targets = case
    if not hasattr(model, "pool"):  # CAM needs the GAP head
        return
    twin = torch_twin(model)
    theirs = torchcam_maps(torchcam_methods.CAM, twin, x, targets, "relu2", normalized=False, fc="fc")
    ours = cam(model, x, "relu2", targets)
    assert_close(ours, theirs, ORACLE, np.abs(theirs).max() + 1e-300, "torchcam CAM raw vs cam")


# ----------------------------------------------------------------------------
# torchcam: normalised maps against explain(convention="torchcam")
# ----------------------------------------------------------------------------


@settings(max_examples=15)
@given(cases())
def test_torchcam_preset_matches_normalised_output(case):
    """explain(..., convention="torchcam") = torchcam's normalised map, upsampled as torchcam's
    fuse_cams does (F.interpolate bilinear, align_corners=False). On the GAP net the layer has
    the input's size, so no resize happens and the comparison is with torchcam's output itself."""
    model, x, targets = case
    twin = torch_twin(model)
    size = x.shape[2:]
    checks = [
        ("gradcam", torchcam_methods.GradCAM, {}),
        ("layercam", torchcam_methods.LayerCAM, {}),
        ("xgradcam", torchcam_methods.XGradCAM, {}),  # the preset passes torchcam's eps=1e-8 to the weights
        ("gradcam++", torchcam_methods.GradCAMpp, {}),  # and its lost alpha division (divide_alpha=False)
    ]
    if hasattr(model, "pool"):
        checks.append(("cam", torchcam_methods.CAM, {}))
    for method, extractor, options in checks:
        theirs = torchcam_maps(extractor, twin, x, targets, "relu2", normalized=True,
                               fc="fc" if method == "cam" else None, **options)
        if theirs.shape[1:] != tuple(size):
            theirs = F.interpolate(torch.tensor(theirs)[:, None], size=tuple(size), mode="bilinear",
                                   align_corners=False)[:, 0].numpy()
        ours = explain(model, x, method, "relu2", targets, convention="torchcam")
        assert_close(ours, theirs, ORACLE, 1.0, f"torchcam normalised vs explain torchcam preset: {method}")


# ----------------------------------------------------------------------------
# torchcam GradCAMpp: reproduce its formula, measure the difference from the paper
# ----------------------------------------------------------------------------


def torchcam_gradcampp_formula(A, g):
    """What torchcam 0.5.0 GradCAMpp computes (gradient.py, _get_weights):

        denom = 2 g^2 + sum_ij(g^3 A)          (sum over the product: not sum(A) * g^3)
        alpha = g^2;  alpha[mask].div_(denom[mask] + eps)
    alpha[mask] is a COPY (boolean indexing), so the in-place division never reaches
    alpha: alpha = g^2, and the weights are sum_ij g^2 ReLU(g) = sum_ij ReLU(g)^3.
    """
    w = np.sum(g**2 * relu(g), axis=(2, 3))
    return relu(np.einsum("nk,nkhw->nhw", w, A))


def torchcam_gradcampp_intended(A, g, eps=1e-8):
    """The same code if the division took effect (still with the sum(g^3 A) denominator)."""
    denominator = 2 * g**2 + np.sum(g**3 * A, axis=(2, 3), keepdims=True)
    alpha = np.where(g**2 > 0, g**2 / (denominator + eps), g**2)
    return relu(np.einsum("nk,nkhw->nhw", np.sum(alpha * relu(g), axis=(2, 3)), A))


@settings(max_examples=15)
@given(cases(), st.sampled_from(["relu2", "relu1"]))
def test_torchcam_gradcampp_is_its_faulty_formula(case, layer):
    model, x, targets = case
    twin = torch_twin(model)
    cap = capture(model, x, layer, targets)
    A, g = cap.A, cap.gradients().data
    raw = torchcam_maps(torchcam_methods.GradCAMpp, twin, x, targets, layer, normalized=False)
    formula = torchcam_gradcampp_formula(A, g)
    assert_close(formula, raw, ORACLE, np.abs(raw).max() + 1e-300, "torchcam GradCAMpp raw vs its faulty formula")
    normalised = torchcam_maps(torchcam_methods.GradCAMpp, twin, x, targets, layer, normalized=True)
    formula_t = torch_minmax(torch.tensor(formula), 1e-8).numpy()
    assert_close(formula_t, normalised, ORACLE, 1.0, "torchcam GradCAMpp normalised vs its faulty formula")


def test_torchcam_gradcampp_differs_from_the_paper():
    """Measured on gap_net (seed 0, relu2, targets [0, 1, 2]), after torchcam's normalisation:
    torchcam vs minicam's paper variant: max difference 0.200 (of a [0, 1] map);
    the 'intended' torchcam formula (division applied) differs from torchcam's output by 0.200,
    which shows the in-place division is a no-op."""
    rng = np.random.default_rng(0)
    model = gap_net(rng)
    x = images(rng, 3)
    targets = [0, 1, 2]
    twin = torch_twin(model)
    theirs = torchcam_maps(torchcam_methods.GradCAMpp, twin, x, targets, "relu2", normalized=True)
    # the torchcam preset without its Grad-CAM++ options: the paper's alpha, torchcam's steps after the map
    ours = explain(model, x, "gradcam++", "relu2", targets, convention="torchcam", divide_alpha=True,
                   denominator="sum(A) g^3", alpha_eps=None, keep="g > 0")
    difference = np.abs(ours - theirs).max()
    assert difference > 0.1, difference
    assert np.abs(explain(model, x, "gradcam++", "relu2", targets, convention="torchcam") - theirs).max() < 1e-10
    cap = capture(model, x, "relu2", targets)
    intended = torch_minmax(torch.tensor(torchcam_gradcampp_intended(cap.A, cap.gradients().data)), 1e-8).numpy()
    assert np.abs(intended - theirs).max() > 0.1, np.abs(intended - theirs).max()
    # and the paper's weights on a GAP head are ReLU(W)/(2 + W mean A), torchcam's Z ReLU(W/Z)^3:
    # different channel rankings, hence different maps even after normalisation.


# ----------------------------------------------------------------------------
# Hand-written torch oracles: Grad-CAM, and pytorch-grad-cam's Grad-CAM++ and pipeline
# ----------------------------------------------------------------------------


def torch_activations_and_gradients(twin, x, layer, targets):
    """A and g at `layer` from a torch forward hook and autograd.grad (like torchcam)."""
    stored = {}
    handle = getattr(twin, layer).register_forward_hook(lambda m, i, o: stored.__setitem__("A", o))
    try:
        out = twin(torch.tensor(x))
    finally:
        handle.remove()
    y = out[torch.arange(len(targets)), torch.tensor(targets)]
    (g,) = torch.autograd.grad(y.sum(), stored["A"])
    return stored["A"].detach(), g


def torch_gradcam(A, g):
    return torch.relu((g.mean(dim=(2, 3), keepdim=True) * A).sum(dim=1))


def torch_gradcampp_pytorch_grad_cam(A, g, eps=1e-6):
    """pytorch-grad-cam grad_cam_plusplus.py: aij = g^2 / (2 g^2 + sum(A) g^3 + eps),
    aij = where(g != 0, aij, 0), w = sum_ij ReLU(g) aij; then ReLU(sum_k w_k A_k)."""
    g2, g3 = g**2, g**3
    sum_A = A.sum(dim=(2, 3), keepdim=True)
    aij = g2 / (2 * g2 + sum_A * g3 + eps)
    aij = torch.where(g != 0, aij, torch.zeros_like(aij))
    w = (torch.relu(g) * aij).sum(dim=(2, 3), keepdim=True)
    return torch.relu((w * A).sum(dim=1))


@settings(max_examples=15)
@given(cases(), st.sampled_from(["relu2", "relu1"]))
def test_hand_written_torch_gradcam_and_gradcampp(case, layer):
    """On ReLU layers (A >= 0, so no pole 2 + g sum(A) <= 0, where minicam sets alpha = 0 and
    pytorch-grad-cam does not): eps = 0 gives minicam's paper variant to 1e-10; eps = 1e-6
    gives minicam's A and g through the same formula with that eps written in NumPy."""
    model, x, targets = case
    twin = torch_twin(model)
    A, g = torch_activations_and_gradients(twin, x, layer, targets)
    expected = torch_gradcam(A, g).numpy()
    assert_close(gradcam(model, x, layer, targets), expected, ORACLE, np.abs(expected).max() + 1e-300, "torch oracle Grad-CAM vs gradcam")
    exact = torch_gradcampp_pytorch_grad_cam(A, g, eps=0.0).numpy()
    assert_close(gradcampp(model, x, layer, targets), exact, ORACLE, np.abs(exact).max() + 1e-300, "torch pytorch-grad-cam Grad-CAM++ eps=0 vs gradcam++ paper")
    with_eps = torch_gradcampp_pytorch_grad_cam(A, g, eps=1e-6).numpy()
    cap = capture(model, x, layer, targets)
    An, gn = cap.A, cap.gradients().data
    aij = np.where(gn != 0, gn**2 / (2 * gn**2 + An.sum(axis=(2, 3), keepdims=True) * gn**3 + 1e-6), 0.0)
    numpy_eps = relu(np.einsum("nk,nkhw->nhw", np.sum(relu(gn) * aij, axis=(2, 3)), An))
    assert_close(numpy_eps, with_eps, ORACLE, np.abs(with_eps).max() + 1e-300, "torch pytorch-grad-cam Grad-CAM++ eps=1e-6 vs its formula on capture")


def test_pytorch_grad_cam_eps_changes_gradcampp():
    """The 1e-6 in pytorch-grad-cam's denominator is not negligible when g^2 is ~1e-5
    (gradients W/Z of a GAP head; here g^2 in [2e-7, 4e-5]): measured relative difference
    from eq. 19 on the raw map 0.042 (seed 0), and 0.034 on the min-max normalised map."""
    rng = np.random.default_rng(0)
    model = gap_net(rng)
    x = images(rng, 2)
    A, g = torch_activations_and_gradients(torch_twin(model), x, "relu2", [0, 1])
    with_eps = torch_gradcampp_pytorch_grad_cam(A, g, eps=1e-6).numpy()
    paper = gradcampp(model, x, "relu2", [0, 1])
    raw_difference = np.abs(with_eps - paper).max() / np.abs(paper).max()
    assert raw_difference > 1e-2, raw_difference
    normalised = torch_minmax(torch.tensor(with_eps), 0).numpy()
    ours = explain(model, x, "gradcam++", "relu2", [0, 1])
    assert np.abs(normalised - ours).max() > 1e-2, np.abs(normalised - ours).max()


@settings(max_examples=10)
@given(cases())
def test_pytorch_grad_cam_preset_against_its_pipeline(case):
    """pytorch-grad-cam (base_cam.py): ReLU; scale_cam_image(cam, size): per image
    (x - min) / (1e-7 + max) then cv2.resize (bilinear, half-pixel: torch's align_corners=False),
    cast to float32; then the multi-layer step: ReLU, mean over layers (one here),
    scale_cam_image again. Written out in torch; float32 output, so 1e-6."""
    model, x, targets = case
    twin = torch_twin(model)
    A, g = torch_activations_and_gradients(twin, x, "relu2", targets)
    maps = torch_gradcam(A, g)
    maps = torch_minmax(maps, 1e-7)
    maps = F.interpolate(maps[:, None], size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)[:, 0]
    maps = maps.float()
    maps = torch_minmax(torch.relu(maps), 1e-7)
    ours = explain(model, x, "gradcam", "relu2", targets, convention="pytorch-grad-cam")
    assert ours.dtype == np.float32
    assert_close(ours, maps.numpy(), 1e-6, 1.0, "torch pytorch-grad-cam pipeline vs explain preset")
