"""Every library preset equals its library: explain(..., convention=LIBRARY) against the real package.

For each (library, method) pair the library has (tests/peers.py, PEER_METHODS), on every exported
conformance case (rebuilt from the exported files: torch nets by minicam.conformance.adapters.torch_net,
Keras nets by adapters.keras_net, channels-last) and on a width-16 ResNet-18 at 112 x 112 (torch and
Keras twins with minicam's weights), in float64 and in float32:

    error = max |explain(model, x, method, layer, targets, convention=library) - the library's map|
            / (max - min of the library's map)

Tolerances (relative to the map's range):
  1e-10  the library computes and returns float64 (torchcam, captum, tf-keras-vis on float64 nets);
  1e-5   the library returns float32 (pytorch-grad-cam always casts its maps to float32; and every
         library on a float32 net, where its convolutions and minicam's round differently). float32's
         rounding is about 6e-8; the smallest difference the presets used to leave (tf-keras-vis's
         Grad-CAM++, 3.7e-3) is 370 times this tolerance.
  1e-4   KPCA-CAM on float32 nets: scikit-learn computes the kernel matrix in float32 and centring it
         cancels its leading digits; on the library's own activations its float32 map is 1.8e-5 (of the
         range) from the same computation in float64, so two float32 computations agree to about 2e-5.

The sign of a principal direction (Eigen-CAM, EigenGrad-CAM with sign="lapack"; KPCA-CAM's largest
entry) can be decided by rounding: LAPACK's Householder steps on a matrix with an all-zero column (a
dead channel) or an exact tie between the largest entries. There minicam's activations, 1e-16 away
from torch's, can get the other sign. For these maps an image that differs is accepted only if
minicam's own raw map is exactly minus the map minicam's formula gives on torch's activations
(the sign, and nothing else, differs), and that map, through the preset's steps, equals the
library's; the table lists such images.
Each row also measures the same library against the preset WITHOUT its method options (the method
at minicam's defaults, only the steps after the map), on the cases: the difference the options remove.

MINICAM_PARITY_REPORT=path writes the table as markdown. The libraries need tests/peers.py's install
line; without them these tests skip, and under MINICAM_REQUIRE_PEERS=1 (.ci/run) they fail.
"""
import inspect
import os
import sys

import numpy as np
import pytest
from peers import (FLOAT64_OUTPUT, MODULES, PEER_METHODS, STAND_INS, case_subjects, minicam_options, require_peer,
                   resnet_subject, torch_tensors)
from torch_required import require_torch

from minicam.cam import PRESETS, REGISTRY, explain
from minicam.cam.conventions import postprocess
from minicam.cam.eigen import centred_kernel
from minicam.errors import NonFiniteError

torch = require_torch()

TOLERANCE = {"float64": 1e-10, "float32": 1e-5}
DTYPES = ("float64", "float32")
ROWS = []  # (library, method, subject, dtype, error, error without the method options, tolerance)
OVERFLOWS = []  # (library, method, subject, dtype, images): the library's NaN maps, minicam's NonFiniteError
# What a library cannot run: tf-keras-vis 0.8.7's Scorecam on a float64 Keras model stops in K.batch_dot
# (float64 activations times its np.float32 weights: "expected to be a double tensor but is a float tensor").
NOT_RUN = {("tf-keras-vis", "scorecam", "float64")}
SIGN_BY_ROUNDING = {("pytorch-grad-cam", "eigencam"), ("pytorch-grad-cam", "eigengradcam"),
                    ("pytorch-grad-cam", "kpcacam")}
SIGN_NOTES = []  # (library, method, subject, dtype, images whose sign rounding decided)
RESOLUTION_NOTES = []  # (library, method, subject, dtype, images whose KPCA kernel is float rounding noise)
FLOAT32_TOLERANCE = {"kpcacam": 1e-4}


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    from minicam.conformance.export import export_cases

    folder = export_cases(tmp_path_factory.mktemp("peer-cases") / "cases")
    return [*case_subjects(folder), resnet_subject()]


@pytest.fixture(scope="module", autouse=True)
def parity_report():
    """After the module: the table as markdown, when MINICAM_PARITY_REPORT names a file."""
    yield
    path = os.environ.get("MINICAM_PARITY_REPORT")
    if path and ROWS:
        with open(path, "w") as report:
            report.write(parity_table(ROWS) + "\n")


def parity_table(rows):
    """One line per (library, method): the worst error over the cases and over the ResNet, per dtype,
    then the worst error of the preset without its method options."""
    lines = ["| library | method | cases float64 | cases float32 | ResNet float64 | ResNet float32 | "
             "tolerance f64 / f32 | cases, without the method options |", "|---|---|---|---|---|---|---|---|"]
    keys = list(dict.fromkeys((r[0], r[1]) for r in rows))
    for library, method in keys:
        mine = [r for r in rows if (r[0], r[1]) == (library, method)]

        def worst(resnet, dtype):
            values = [r[4] for r in mine if (r[2] == "resnet18") == resnet and r[3] == dtype]
            return f"{max(values):.1e}" if values else "n/a"

        tolerances = [max((r[6] for r in mine if r[3] == dtype), default=0) for dtype in DTYPES]
        without = max((r[5] for r in mine if r[5] is not None), default=None)
        lines.append(f"| {library} | {method} | {worst(False, 'float64')} | {worst(False, 'float32')} | "
                     f"{worst(True, 'float64')} | {worst(True, 'float32')} | "
                     f"{' / '.join(f'{t:.0e}' for t in tolerances)} | "
                     f"{'same (no options)' if without is None else f'{without:.1e}'} |")
    lines += [f"\n{library} {method} on {subject} ({dtype}): the library's map is NaN for {count} image(s) "
              "(exp(S) overflows); explain raises NonFiniteError there, and the other images are compared"
              for library, method, subject, dtype, count in OVERFLOWS]
    lines += [f"\n{library} {method} ({dtype}): not run, the library cannot (see NOT_RUN in "
              "tests/test_peers_parity.py)" for library, method, dtype in sorted(NOT_RUN)]
    lines += [f"\n{library} {method} on {subject} ({dtype}): the sign of image(s) {images} was decided by "
              "rounding (a dead channel in LAPACK's steps, or a tie between the largest entries); minicam's formula "
              "on torch's activations gives the library's map, up to that sign" for library, method, subject, dtype,
              images in SIGN_NOTES if images]
    lines += [f"\n{library} {method} on {subject} ({dtype}): image(s) {images} not compared: the centred kernel "
              "matrix is below the dtype's resolution, so the library's map is rounding noise"
              for library, method, subject, dtype, images in RESOLUTION_NOTES]
    return "\n".join(lines)


def relative_error(ours, theirs):
    theirs = np.asarray(theirs, dtype=np.float64)
    scale = max(float(theirs.max() - theirs.min()), float(np.abs(theirs).max()), 1e-300)
    return float(np.abs(np.asarray(ours, dtype=np.float64) - theirs).max()) / scale


def without_method_options(library, method):
    """The preset's method options set back to the method function's own defaults ({} if it has none)."""
    options = PRESETS[library].options_for(method)
    defaults = inspect.signature(REGISTRY[method].function).parameters
    return {key: defaults[key].default for key in options} if options else None


PAIRS = [(library, method) for library, methods in PEER_METHODS.items() for method in methods]


@pytest.mark.slow
@pytest.mark.parametrize("library, method", PAIRS, ids=[f"{lib}-{m}" for lib, m in PAIRS])
def test_preset_equals_its_library(subjects, library, method):
    require_peer(MODULES[library])
    run = PEER_METHODS[library][method]
    failures = []
    for subject in subjects:
        if method not in subject.methods:
            continue
        if subject.name == "resnet18" and method in ("sscam", "iscam"):
            subject = subject.first_image()  # 128 channels x samples x masked ResNet passes: one image is enough
        for dtype in DTYPES:
            if (library, method, dtype) in NOT_RUN:
                continue
            theirs = run(subject, method, dtype)
            model, x, targets = subject.net("minicam", dtype), subject.images(dtype), subject.targets
            extra = minicam_options(library, method, subject, dtype)
            finite = np.all(np.isfinite(theirs), axis=(1, 2))
            if not finite.all():  # the library overflowed (tf-keras-vis's exp(S)): minicam says so, as an error
                with pytest.raises(NonFiniteError):
                    explain(model, x, method, subject.layer, targets, convention=library, **extra)
                x, targets, theirs = x[finite], targets[finite], theirs[finite]
                OVERFLOWS.append((library, method, subject.name, dtype, int((~finite).sum())))
                if not finite.any():
                    continue
            ours = explain(model, x, method, subject.layer, targets, convention=library, **extra)
            error = relative_error(ours, theirs)
            reset = without_method_options(library, method) if subject.name != "resnet18" else None
            before = None
            if reset is not None:
                try:
                    plain = explain(model, x, method, subject.layer, targets, convention=library, **{**extra, **reset})
                    before = relative_error(plain, theirs)
                except ValueError:  # e.g. minicam's defaults refuse what the library's options allowed
                    before = float("inf")
            tolerance = TOLERANCE[dtype if FLOAT64_OUTPUT[library] else "float32"]
            if dtype == "float32":
                tolerance = FLOAT32_TOLERANCE.get(method, tolerance)
            if error > tolerance and (library, method) in SIGN_BY_ROUNDING:
                error = sign_decided_by_rounding(library, method, subject, dtype, theirs, tolerance)
            ROWS.append((library, method, subject.name, dtype, error, before, tolerance))
            if not error <= tolerance:
                failures.append(f"{subject.name} {dtype}: {error:.2e} > {tolerance:.0e}")
    assert not failures, f"{library} {method}: " + "; ".join(failures)


def sign_decided_by_rounding(library, method, subject, dtype, theirs, tolerance):
    """The error once the images whose sign rounding decided are set aside: minicam's formula on torch's
    own activations (and gradients), through the preset's steps, must equal the library's map; and each
    image of minicam's own raw map must equal that raw map, or exactly its negation (noted)."""
    record, options = REGISTRY[method], PRESETS[library].options_for(method)
    A, g = torch_tensors(subject, dtype)
    on_theirs = record.formula(*((A, g) if record.needs == ("A", "g") else (A,)), relu=False, **options)
    finished = postprocess(on_theirs, subject.x.shape[2:], PRESETS[library], record.final_relu)
    error = relative_error(finished, theirs)
    ours = record.function(subject.net("minicam", dtype), subject.images(dtype), subject.layer, subject.targets,
                           relu=False, **options)
    flipped, unresolved, negated_images = [], [], []
    for image, (mine, reference) in enumerate(zip(ours, on_theirs)):
        scale = np.abs(reference).max() + 1e-300
        if method == "kpcacam" and kernel_below_resolution(A[image]):
            unresolved.append(image)
            continue
        if np.abs(mine - reference).max() > tolerance * scale:
            assert np.abs(mine + reference).max() <= tolerance * scale, (
                f"{method} {subject.name} {dtype} image {image}: minicam's raw map is neither the map on torch's "
                "activations nor its negation")
            flipped.append(image)
        if method == "kpcacam" and relative_error(finished[image], theirs[image]) > tolerance and tied(reference):
            negated = postprocess(-on_theirs[image : image + 1], subject.x.shape[2:], PRESETS[library], False)[0]
            assert relative_error(negated, theirs[image]) <= tolerance, f"{subject.name} image {image}"
            negated_images.append(image)
    SIGN_NOTES.append((library, method, subject.name, dtype, sorted(set(flipped + negated_images))))
    if unresolved:
        RESOLUTION_NOTES.append((library, method, subject.name, dtype, unresolved))
    kept = [i for i in range(len(theirs)) if i not in unresolved and i not in negated_images]
    return relative_error(finished[kept], theirs[kept]) if kept else 0.0


def tied(raw):
    """Whether the two largest magnitudes of a map are equal to rounding (KPCA-CAM's sign rule then
    depends on rounding, in scikit-learn as in minicam)."""
    top = np.sort(np.abs(raw).ravel())[-2:]
    return top[1] - top[0] <= 1e-6 * top[1]


def kernel_below_resolution(activations):
    """Whether KPCA-CAM's centred kernel matrix is rounding noise in the activations' dtype: every
    centred entry below 100 ulps of the kernel's entries (activations of order 1e-4 in float32 make
    tanh(<x, y> / K + 1) constant to float32's resolution). The library's map is then noise."""
    centred, gram = centred_kernel(activations)
    return np.abs(centred).max() < 100 * np.finfo(activations.dtype).eps * np.abs(gram).max()


def test_pytorch_grad_cam_runs_through_the_torchvision_stand_in(subjects):
    """pytorch-grad-cam imports torchvision; here it imported tests/stand_ins/torchvision, whose stand-ins
    refuse to run, and its GradCAM still equals minicam's Grad-CAM with the pytorch-grad-cam preset."""
    require_peer("pytorch_grad_cam")
    torchvision = sys.modules["torchvision"]
    assert getattr(torchvision, "STAND_IN", False) and str(STAND_INS) in torchvision.__file__
    with pytest.raises(NotImplementedError, match="stand-in"):
        sys.modules["pytorch_grad_cam.utils.image"].ToTensor()
    subject = subjects[1]  # gap_net
    theirs = PEER_METHODS["pytorch-grad-cam"]["gradcam"](subject, "gradcam", "float64")
    ours = explain(subject.net("minicam", "float64"), subject.x, "gradcam", subject.layer, subject.targets,
                   convention="pytorch-grad-cam")
    assert theirs.dtype == ours.dtype == np.float32
    assert relative_error(ours, theirs) < 1e-6


def test_tf_keras_vis_gradcampp_overflows_float32_above_88_7():
    """tf-keras-vis's Grad-CAM++ multiplies the derivatives by exp(S): in float32 exp(S) is inf above
    S = 88.72, and tf-keras-vis 0.8.7 returns a NaN map. The preset reproduces the cause as an error
    that says so; below the limit both agree."""
    require_peer("tf_keras_vis")
    import keras
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.utils.scores import CategoricalScore

    from minicam import nn
    from minicam.errors import NonFiniteError

    rng = np.random.default_rng(3)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, rng=rng, dtype=np.float32), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2, rng=rng, dtype=np.float32)).eval()
    model.get_submodule("4").bias.data[:] = [89.0, 0.0]  # class 0's logit is about 89: exp overflows float32
    x = np.abs(rng.standard_normal((1, 1, 6, 6))).astype(np.float32) * 1e-3
    inputs = keras.Input(shape=(6, 6, 1), dtype="float32")
    conv = keras.layers.Conv2D(2, 3, padding="same", dtype="float32")
    features = keras.layers.ReLU(name="relu", dtype="float32")(conv(inputs))
    dense = keras.layers.Dense(2, dtype="float32")
    keras_model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D(dtype="float32")(features)))
    conv.set_weights([model.get_submodule("0").weight.data.transpose(2, 3, 1, 0), model.get_submodule("0").bias.data])
    dense.set_weights([model.get_submodule("4").weight.data.T, model.get_submodule("4").bias.data])
    theirs = GradcamPlusPlus(keras_model, clone=False)(CategoricalScore([0]), x.transpose(0, 2, 3, 1),
                                                      penultimate_layer="relu", seek_penultimate_conv_layer=False)
    assert np.all(np.isnan(theirs))
    with pytest.raises(NonFiniteError, match=r"exp\(S\) overflows float32.*NaN"):
        explain(model, x, "gradcam++", "1", [0], convention="tf-keras-vis")
    finite = explain(model, x, "gradcam++", "1", [0], convention="tf-keras-vis", exp_score=False)
    assert np.all(np.isfinite(finite))  # exp(S) only scales the map: switched off, the map exists
