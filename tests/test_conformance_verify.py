"""verify: pass/fail with stated tolerances, the diagnosis of known variants, and bad input.

The diagnosis is tested by planting: a results map made by a catalogued variant
itself must be diagnosed as that variant (first, or after variants that give the
very same map on that key), every variant must be detectable somewhere in the
suite, and exact results must pass with no diagnosis at all.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minicam.conformance.cases import STAGES
from minicam.conformance.stages import result_keys
from minicam.conformance.variants import CATALOGUE, Lab, recompute
from minicam.conformance.verify import builtin_cases, diagnose_map, map_error, verify

ROOT = Path(__file__).resolve().parents[1]
CASES = builtin_cases()
TOLERANCE = 1e-6


def exact_results(dtype=np.float64):
    """Every key of every case (logits, score, A, g, weights, maps, steps) with minicam's value (in float32:
    those that fit in float32; exp(S) of captum_toy's tf-keras-vis Grad-CAM++ steps does not)."""
    with np.errstate(over="ignore"):
        values = {key: expected[reference].astype(dtype) for name, (case, expected) in CASES.items()
                  for key, reference in result_keys(name, case.methods).items()}
    return {key: value for key, value in values.items() if np.all(np.isfinite(value))}


@pytest.fixture(scope="module")
def labs():
    return {name: Lab(case) for name, (case, _) in CASES.items()}


# ----------------------------------------------------------------------------
# Pass and fail
# ----------------------------------------------------------------------------


def test_exact_results_pass_with_no_diagnosis():
    report = verify(exact_results())
    assert report.ok and report.exit_code == 0 and not report.problems and not report.notes
    assert report.counts == {"PASS": len(report.entries), "FAIL": 0, "INVALID": 0, "UNKNOWN": 0}
    assert len(report.entries) == len(exact_results())
    assert all(e.error == 0.0 and e.diagnosis == [] and e.closest is None for e in report.entries)
    assert "Failures" not in report.to_text()


def test_float32_results_use_the_float32_tolerance():
    report = verify(exact_results(np.float32))
    assert report.ok
    assert all(1e-6 <= e.tolerance <= 1e-4 and e.dtype == "float32" and e.error < 1e-6 for e in report.entries)
    maps = {"gap_net/gradcam/minicam": CASES["gap_net"][1]["gradcam/minicam"].astype(np.float32)}
    maps["gap_net/gradcam/minicam"][0, 0, 0] += 2e-4
    entry = verify(maps).entry("gap_net/gradcam/minicam")
    assert entry.status == "FAIL" and entry.error == pytest.approx(2e-4, rel=1e-3)
    assert verify(maps, float32_tolerance=1e-3).ok


def test_the_error_is_relative_per_image():
    """An error of 1e-5 in an image whose map is 1e-4 large is 10 % of it, however large the
    other images' maps."""
    expected = np.stack([np.full((2, 2), 1e-4), np.full((2, 2), 10.0)])
    result = expected.copy()
    result[0, 0, 0] += 1e-5
    assert map_error(result, expected) == pytest.approx(0.1)
    assert map_error(np.zeros((1, 2, 2)) + 1e-9, np.zeros((1, 2, 2))) == pytest.approx(1e-9)  # absolute for zeros


def test_tolerance_argument():
    maps = {"gap_net/gradcam/raw": CASES["gap_net"][1]["gradcam/raw"] * (1 + 1e-5)}
    assert not verify(maps).ok
    assert verify(maps, tolerance=1e-4).ok
    with pytest.raises(ValueError, match="positive"):
        verify(maps, tolerance=0)


def test_the_sentence_names_the_variant(labs):
    planted = recompute("torchcam-0.5.0-gradcampp", labs["gap_net"], "gradcam++", "raw")
    entry = verify({"gap_net/gradcam++/raw": planted}).entry("gap_net/gradcam++/raw")
    assert entry.status == "FAIL" and entry.error > 0.1
    assert entry.sentence().startswith(f"gradcam++ on case gap_net (raw): max error {entry.error:.1e} - FAIL; "
                                       "matches variant 'torchcam-0.5.0-gradcampp' (no-op alpha division")
    assert entry.diagnosis[0].error == 0.0


def test_an_unexplained_difference_names_no_variant_and_says_where_it_is():
    """No "closest" variant that is no closer than minicam's own map: random maps get none, with the
    place of the largest difference instead."""
    rng = np.random.default_rng(0)
    entry = verify({"flatten_net/gradcam/minicam": rng.random((2, 8, 8))}).entry("flatten_net/gradcam/minicam")
    assert entry.status == "FAIL" and entry.diagnosis == [] and entry.closest is None
    assert "no known variant explains it; the largest difference is at image " in entry.sentence()
    assert ", row " in entry.where and "expected " in entry.where and "got " in entry.where


# ----------------------------------------------------------------------------
# Planting every variant of the catalogue
# ----------------------------------------------------------------------------


def distinguishable_keys(variant, labs, limit=2):
    """Up to `limit` keys where the variant's map differs from minicam's by more than the tolerance,
    each with that map."""
    stages = ("raw", "minicam") + STAGES[2:] if variant.kind == "method" else STAGES[1:] + ("raw",)
    found = []
    for name, (case, expected) in CASES.items():
        for method in case.methods:
            if variant.methods and method not in variant.methods:
                continue
            for stage in stages:
                planted = recompute(variant.name, labs[name], method, stage)
                if planted is not None and np.all(np.isfinite(planted)) and \
                        map_error(planted, expected[f"{method}/{stage}"]) > TOLERANCE:
                    found.append((name, method, stage, planted))
                    break
            if len(found) == limit:
                return found
    return found


def test_every_variant_is_detectable_and_diagnosed_when_planted(labs):
    undetectable, misdiagnosed = [], []
    for variant in CATALOGUE.values():
        keys = distinguishable_keys(variant, labs)
        if not keys:
            undetectable.append(variant.name)
        for name, method, stage, planted in keys:
            expected = CASES[name][1][f"{method}/{stage}"]
            matches, _ = diagnose_map(labs[name], method, stage, planted, expected, TOLERANCE)
            singles = [m.names[0] for m in matches if len(m.names) == 1]
            if variant.name not in singles:
                misdiagnosed.append((variant.name, name, method, stage, [m.label for m in matches[:3]]))
                continue
            # anything listed before it gives the very same map on this key
            for other in singles[: singles.index(variant.name)]:
                assert map_error(recompute(other, labs[name], method, stage), planted) <= TOLERANCE, \
                    (variant.name, other, name, method, stage)
    assert not undetectable, f"variants no case can tell apart from minicam: {undetectable}"
    assert not misdiagnosed, misdiagnosed


def test_planted_results_through_verify(labs):
    """End to end: one planted key per variant kind, verify's entries name them first."""
    plants = {
        ("gap_net", "gradcam++", "minicam"): "torchcam-0.5.0-gradcampp",
        ("flatten_net", "gradcam++", "raw"): "gradcampp-sum-g3A",  # = eq. 19 on a GAP head (g constant)
        ("flatten_net", "gradcam", "minicam"): "nearest-upsampling",
        ("flatten_net", "gradcam", "tf-keras-vis"): "half-pixel-upsampling",
        ("bn_net", "gradcam", "minicam"): "batchnorm-train-mode",
        ("gap_net", "ablationcam", "raw"): "ablation-divide-by-y",
        ("bn_net", "eigencam", "raw"): "eigen-centred",
        ("flatten_net", "scorecam", "raw"): "scorecam-no-channel-softmax",
        ("tiny_maps", "gradcam", "minicam"): "eps-1e-8",
        ("gap_net", "gradcam", "raw"): "batch-mean-gradients",
        ("flatten_net", "gradcam", "pytorch-grad-cam"): "per-batch-normalisation",
        ("bn_net", "cam", "minicam"): "uint8-before-resize",
    }
    results = {f"{n}/{m}/{s}": recompute(v, labs[n], m, s) for (n, m, s), v in plants.items()}
    results.update({"gap_net/gradcam/minicam": CASES["gap_net"][1]["gradcam/minicam"]})  # one exact map
    report = verify(results)
    assert report.counts == {"PASS": 1, "FAIL": len(plants), "INVALID": 0, "UNKNOWN": 0}
    for (n, m, s), variant in plants.items():
        entry = report.entry(f"{n}/{m}/{s}")
        assert entry.diagnosis and entry.diagnosis[0].names == (variant,), (variant, entry.sentence())
    assert report.entry("gap_net/gradcam/minicam").diagnosis == []


def test_a_planted_pair_is_diagnosed_as_the_pair(labs):
    planted = recompute(("softmax-score", "missing-relu"), labs["bn_net"], "gradcam", "raw")
    entry = verify({"bn_net/gradcam/raw": planted}).entry("bn_net/gradcam/raw")
    assert entry.diagnosis[0].names == ("softmax-score", "missing-relu")
    assert "softmax-score + missing-relu" in entry.sentence()
    planted = recompute(("gradcampp-authors-code", "corner-aligned-upsampling"), labs["flatten_net"], "gradcam++",
                        "minicam")
    entry = verify({"flatten_net/gradcam++/minicam": planted}).entry("flatten_net/gradcam++/minicam")
    assert ("gradcampp-authors-code", "corner-aligned-upsampling") in [m.names for m in entry.diagnosis]


def test_a_float32_plant_is_diagnosed_at_the_float32_tolerance(labs):
    planted = recompute("scorecam-logit", labs["bn_net"], "scorecam", "minicam").astype(np.float32)
    entry = verify({"bn_net/scorecam/minicam": planted}).entry("bn_net/scorecam/minicam")
    assert entry.status == "FAIL" and 1e-6 <= entry.tolerance <= 1e-4
    assert entry.diagnosis[0].names == ("scorecam-logit",) and entry.diagnosis[0].error < 1e-6


def test_catalogue_entries_are_documented():
    required = {"normalise-before-relu", "per-batch-normalisation", "corner-aligned-upsampling",
                "nearest-upsampling", "bicubic-upsampling", "gradcampp-sum-g3A", "torchcam-0.5.0-gradcampp",
                "gradcampp-alpha-renormalised", "gradcampp-tf-keras-vis", "gradcampp-pytorch-grad-cam",
                "softmax-score", "exp-score", "batch-mean-gradients", "missing-relu", "relu-always",
                "max-normalisation", "eps-1e-7", "eps-1e-8", "uint8-before-resize", "scorecam-no-channel-softmax",
                "scorecam-logit", "eigen-sign-flipped", "eigen-centred", "ablation-divide-by-y"}
    assert required <= set(CATALOGUE)
    for variant in CATALOGUE.values():
        assert variant.summary and variant.source and variant.compute.__doc__, variant.name


# ----------------------------------------------------------------------------
# Bad input: a report line each, never a crash
# ----------------------------------------------------------------------------


def test_missing_cases_and_methods_are_listed_not_failed():
    maps = {"gap_net/gradcam/raw": CASES["gap_net"][1]["gradcam/raw"]}
    report = verify(maps)
    assert report.ok and report.counts["PASS"] == 1
    assert "case captum_toy: not submitted" in report.notes
    assert any(n.startswith("case gap_net: methods not submitted: cam, gradcam++,") for n in report.notes)
    assert "case gap_net: stages not submitted for gradcam: minicam, paper, pytorch-grad-cam, torchcam, captum, " \
           "tf-keras-vis" in report.notes
    strict = verify(maps, require_all=True)
    assert not strict.ok and strict.exit_code == 1
    assert "missing (required): case bn_net: not submitted" in strict.problems


def invalid(value, key="flatten_net/gradcam/raw"):
    entry = verify({key: value}).entry(key)
    assert entry.status == "INVALID" and entry.failed
    return entry.message


def test_wrong_shapes_say_what_is_wrong():
    raw = CASES["flatten_net"][1]["gradcam/raw"]  # (2, 4, 4); the input is 8x8
    assert invalid(raw[:, None]) == "shape (2, 1, 4, 4), expected (2, 4, 4): drop the channel axis (save maps[:, 0])"
    assert "the map is at the input's size; a raw map stays at the layer's resolution (4, 4)" in \
        invalid(np.zeros((2, 8, 8)))
    assert "the map is at the layer's resolution; a 'minicam' map is resized to the input's size" in \
        invalid(raw, "flatten_net/gradcam/minicam")
    assert "one map was given; the case has 2 images" in invalid(raw[0])
    assert "3 maps for the case's 2 images" in invalid(np.zeros((3, 4, 4)))
    assert invalid(np.float64(1.0)) == "shape (), expected (2, 4, 4)"


@pytest.mark.parametrize("value, message", [
    (np.zeros((2, 4, 4), np.int64), "dtype int64: integer maps cannot be compared"),
    (np.zeros((2, 4, 4), np.uint8), "dtype uint8: integer maps cannot be compared"),
    (np.zeros((2, 4, 4), bool), "dtype bool: integer maps cannot be compared"),
    (np.zeros((2, 4, 4), np.complex128), "dtype complex128: complex values"),
    (np.zeros((2, 4, 4), np.float16), "dtype float16: save float32 or float64"),
    (np.array(["a", "b"]), "dtype <U1: not a floating-point array"),
])
def test_wrong_dtypes_say_what_is_wrong(value, message):
    assert invalid(value).startswith(message)


def test_nan_and_inf_are_counted():
    raw = CASES["flatten_net"][1]["gradcam/raw"].copy()
    raw[0, 0, :2] = np.nan
    raw[1, 3, 3] = -np.inf
    assert invalid(raw) == "holds 2 NaN and 1 infinite values (of 32); every value must be finite"


@pytest.mark.parametrize("key, message", [
    ("gradcam", "a key must be '<case>/<method>/<stage>'"),
    ("gap_net/gradcam/raw/extra", "unknown stage 'raw/extra' for gradcam; its stages are A, g, weights, raw, "),
    ("gap_net/gradcam/minicam/after-extra", "unknown stage 'minicam/after-extra' for gradcam"),
    ("gap_net/a/b/c/d", "a key must be '<case>/<method>/<stage>'"),
    ("gapnet/gradcam/raw", "unknown case 'gapnet' (did you mean 'gap_net'?)"),
    ("gap_net/grad-cam/raw", "unknown method 'grad-cam' (did you mean 'gradcam'?)"),
    ("gap_net/gradcam/torch-cam", "unknown stage 'torch-cam' for gradcam (did you mean 'torchcam'?)"),
    ("flatten_net/cam/raw", "method 'cam' has no expected map on case 'flatten_net' (CAM needs"),
])
def test_unknown_keys_say_what_is_wrong(key, message):
    report = verify({key: np.zeros((2, 4, 4))})
    entry = report.entry(key)
    assert entry.status == "UNKNOWN" and entry.message.startswith(message) and not report.ok


def test_values_that_are_not_arrays():
    raw = CASES["flatten_net"][1]["gradcam/raw"]
    assert invalid([[1.0, 2.0], [3.0]]).startswith("the value cannot be made an array (ValueError")
    entry = verify({"flatten_net/gradcam/raw": raw.tolist()}).entry("flatten_net/gradcam/raw")
    assert entry.status == "PASS" and entry.dtype == "float64"  # nested lists of floats are fine
    huge = np.full(raw.shape, -1.7e308)
    huge[:, 0] = 1.7e308  # its difference from any map overflows to infinity
    entry = verify({"flatten_net/gradcam/raw": huge}).entry("flatten_net/gradcam/raw")
    assert entry.status == "FAIL" and entry.error == np.inf and "no known variant explains it" in entry.sentence()


def test_a_bad_entry_does_not_hide_the_good_ones():
    maps = exact_results()
    maps["gap_net/gradcam/raw"] = np.zeros((3, 8, 8), np.int32)
    maps["nonsense"] = np.zeros(1)
    report = verify(maps)
    assert report.counts == {"PASS": len(maps) - 2, "FAIL": 0, "INVALID": 1, "UNKNOWN": 1}
    assert report.exit_code == 1 and report.entries[-1].key == "nonsense"


def test_unreadable_files_are_reported(tmp_path):
    cases = [tmp_path / "absent.npz", tmp_path]
    (tmp_path / "text.npz").write_text("not a zip file")
    np.save(tmp_path / "single.npy", np.zeros(3))
    cases += [tmp_path / "text.npz", tmp_path / "single.npy"]
    messages = ["does not exist", "is a folder", "cannot be read as an .npz file", "holds a single array"]
    for path, message in zip(cases, messages):
        report = verify(path)
        assert report.exit_code == 2 and not report.ok and message in report.problems[0], (path, report.problems)
    np.savez(tmp_path / "empty.npz")
    report = verify(tmp_path / "empty.npz")
    assert report.exit_code == 1 and report.problems == ["the results file holds no maps: nothing was verified"]


def test_object_arrays_in_a_file_are_invalid_not_executed(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, **{"gap_net/gradcam/raw": np.array([{"a": 1}], dtype=object),
                      "gap_net/gradcam/minicam": CASES["gap_net"][1]["gradcam/minicam"]})
    report = verify(path)
    entry = report.entry("gap_net/gradcam/raw")
    assert entry.status == "INVALID" and entry.message.startswith("the array cannot be read (ValueError")
    assert report.entry("gap_net/gradcam/minicam").status == "PASS"


def test_json_report(labs):
    planted = recompute("eigen-sign-flipped", labs["gap_net"], "eigencam", "raw")
    report = verify({"gap_net/eigencam/raw": planted, "x/y/z": np.zeros(1)})
    data = json.loads(report.to_json())
    assert data["ok"] is False and data["exit_code"] == 1
    assert data["counts"] == {"PASS": 0, "FAIL": 1, "INVALID": 0, "UNKNOWN": 1}
    first = data["entries"][0]
    assert first["key"] == "gap_net/eigencam/raw" and first["diagnosis"][0]["names"] == ["eigen-sign-flipped"]
    assert first["sentence"].startswith("eigencam on case gap_net (raw)")


# ----------------------------------------------------------------------------
# The command line, without torch
# ----------------------------------------------------------------------------

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; import runpy; sys.argv = ['minicam'] + sys.argv[1:]; " \
              "runpy.run_module('minicam', run_name='__main__')"


def run_minicam(*args, cwd):
    """python -m minicam ARGS with torch made unimportable (minicam must not need it)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_command_line_export_and_verify(tmp_path, labs):
    folder = tmp_path / "cases"
    done = run_minicam("export-cases", folder, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (folder / "README.md").is_file() and (folder / "gap_net" / "expected.npz").is_file()

    exact = {f"{name}/gradcam/{stage}": CASES[name][1][f"gradcam/{stage}"] for name in CASES for stage in STAGES}
    np.savez(folder / "results.npz", **exact)
    done = run_minicam("verify", folder / "results.npz", "--cases", folder, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Summary: 42 passed, 0 failed, 0 invalid, 0 unknown keys -> OK (exit status 0)" in done.stdout

    planted = dict(exact)
    planted["gap_net/gradcam/raw"] = recompute("softmax-score", labs["gap_net"], "gradcam", "raw")
    np.savez(folder / "planted.npz", **planted)
    done = run_minicam("verify", folder / "planted.npz", "--cases", folder, "--json", cwd=tmp_path)
    assert done.returncode == 1
    data = json.loads(done.stdout)
    entry = [e for e in data["entries"] if e["status"] == "FAIL"]
    assert len(entry) == 1 and entry[0]["diagnosis"][0]["names"] == ["softmax-score"]

    done = run_minicam("verify", folder / "absent.npz", cwd=tmp_path)
    assert done.returncode == 2 and "minicam verify: error: results file" in done.stderr and "does not exist" in done.stderr
    done = run_minicam("verify", folder / "results.npz", "--cases", tmp_path, cwd=tmp_path)
    assert done.returncode == 2 and "index.json is missing" in done.stderr


# ----------------------------------------------------------------------------
# What people get wrong: each planted, each named FIRST
# ----------------------------------------------------------------------------


def first_names(results, key):
    entry = verify(results).entry(key)
    assert entry.status == "FAIL", entry.sentence()
    assert entry.diagnosis, entry.sentence()
    return entry.diagnosis[0].names, entry


def expected_of(name, key):
    return CASES[name][1][key]


def test_a_wrong_layer_is_named():
    case, _ = CASES["gap_net"]
    from dataclasses import replace
    from minicam.conformance.cases import method_map
    planted = np.maximum(method_map(replace(case, layer="relu1"), "gradcam", final_relu=False), 0)
    names, entry = first_names({"gap_net/gradcam/raw": planted}, "gap_net/gradcam/raw")
    assert names == ("wrong-layer",) and "layer 'relu1' instead of 'relu2'" in entry.diagnosis[0].summary


@pytest.mark.parametrize("move, name", [(lambda m: np.swapaxes(m, -1, -2), "transposed"),
                                        (lambda m: m[:, ::-1], "flipped-rows"),
                                        (lambda m: m[:, :, ::-1], "flipped-columns")])
def test_transposed_and_flipped_maps_are_named(move, name):
    planted = move(expected_of("flatten_net", "gradcam/minicam"))
    assert first_names({"flatten_net/gradcam/minicam": planted}, "flatten_net/gradcam/minicam")[0] == (name,)


def test_the_mean_over_channels_is_a_factor_1_over_K():
    K = expected_of("flatten_net", "A").shape[1]
    names, entry = first_names({"flatten_net/gradcam/raw": expected_of("flatten_net", "gradcam/raw") / K},
                               "flatten_net/gradcam/raw")
    assert names == ("scale",) and f"1/K (K = {K} channels): the mean over channels" in entry.diagnosis[0].summary
    assert entry.error == pytest.approx(1 - 1 / K)
    # the sum over positions instead of the mean: a factor h w in the weights
    names, entry = first_names({"flatten_net/gradcam/weights": 16 * expected_of("flatten_net", "gradcam/weights")},
                               "flatten_net/gradcam/weights")
    assert names == ("scale",) and "h w = 16" in entry.diagnosis[0].summary


def plant_somewhere(variant, labs, methods=("gradcam", "gradcam++"), stages=("minicam", "paper", "raw")):
    """The first key (case, method, stage) where the variant changes the map, and its map."""
    for name, (case, expected) in CASES.items():
        for method in methods:
            for stage in stages:
                if method not in case.methods:
                    continue
                planted = recompute(variant, labs[name], method, stage)
                if planted is not None and map_error(planted, expected[f"{method}/{stage}"]) > 1e-3:
                    return f"{name}/{method}/{stage}", planted
    raise AssertionError(f"{variant} changes no map")


@pytest.mark.parametrize("variant", ["relu-after-resize", "tf-bicubic-upsampling", "keras-io-heatmap",
                                     "flatten-dense-transposed", "conv-kernel-reshaped", "batchnorm-eps-keras",
                                     "batchnorm-keras-momentum-update", "torchcam-0.5.0-smoothgradcampp"])
def test_new_variants_are_named_first(variant, labs):
    methods = ("smoothgradcam++",) if "smoothgradcampp" in variant else ("gradcam", "gradcam++")
    key, planted = plant_somewhere(variant, labs, methods)
    names, entry = first_names({key: planted}, key)
    assert names == (variant,) or map_error(recompute(names, labs[key.split("/")[0]], *key.split("/")[1:]),
                                            planted) <= TOLERANCE, (variant, entry.sentence())


@pytest.mark.parametrize("variant, case", [("flatten-dense-transposed", "flatten_net"),
                                           ("batchnorm-eps-keras", "bn_net"),
                                           ("conv-kernel-reshaped", "gap_net"),
                                           ("batchnorm-keras-momentum-update", "bn_net")])
def test_port_mistakes_are_named_from_the_logits_first(variant, case, labs):
    lab = labs[case]
    from minicam.cam.capture import predict
    model = lab.derived(**CATALOGUE[variant].context(lab)).case.model
    results = {f"{case}/logits": predict(model, CASES[case][0].x),
               f"{case}/gradcam/raw": recompute(variant, lab, "gradcam", "raw")}
    report = verify(results)
    entry, agreed = report.firsts[0]
    assert entry.key == f"{case}/logits" and entry.diagnosis[0].names == (variant,)
    text = report.to_text()
    assert text.index("First differences") < text.index("Failures:")
    assert f"({case} (logits)" in text or "your logits differ by" in text


def test_the_first_stage_that_differs_is_named_with_its_cause(labs):
    name, (case, expected) = "flatten_net", CASES["flatten_net"]
    lab = labs[name]
    softmax = lab.derived(score="softmax")
    A, g, _ = softmax.activations_and_gradients()
    results = {f"{name}/logits": expected["logits"], f"{name}/gradcam/A": expected["A"], f"{name}/gradcam/g": g,
               f"{name}/gradcam/raw": recompute("softmax-score", lab, "gradcam", "raw")}
    report = verify(results)
    (entry, agreed), = report.firsts
    assert entry.stage == "g" and agreed.stage == "A" and entry.diagnosis[0].names == ("softmax-score",)
    sentence = report.to_dict()["first_differences"][0]["sentence"]
    assert sentence.startswith("gradcam on case flatten_net (g): your gradients g differ while A agrees")
    assert "differentiate the target's logit, before any softmax" in sentence
    # A from another layer: named by the layer
    relu1 = dict(case.model.named_children())
    from minicam.conformance.diagnose import other_layers
    conv2 = dict(other_layers(lab))["conv2"]
    entry = verify({f"{name}/gradcam/A": conv2}).entry(f"{name}/gradcam/A")
    assert entry.diagnosis[0].names == ("wrong-layer",) and "'conv2'" in entry.diagnosis[0].summary
    del relu1
    # channels-last A: INVALID, saying how to transpose
    entry = verify({f"{name}/gradcam/A": expected["A"].transpose(0, 2, 3, 1)}).entry(f"{name}/gradcam/A")
    assert entry.status == "INVALID" and "channels-last" in entry.message


def test_a_step_stage_names_the_step(labs):
    name, (case, expected) = "flatten_net", CASES["flatten_net"]
    before = expected["gradcam/minicam/after-relu"]
    from minicam.cam.conventions import normalize_maps, resize_maps
    corners = resize_maps(before, case.size, "bilinear-corners")
    results = {f"{name}/gradcam/raw": expected["gradcam/raw"],
               f"{name}/gradcam/minicam/after-relu": before,
               f"{name}/gradcam/minicam/after-resize": corners,
               f"{name}/gradcam/minicam": normalize_maps(corners, "minmax")}
    report = verify(results)
    (entry, agreed), = report.firsts
    assert entry.stage == "minicam/after-resize" and entry.diagnosis[0].names == ("corner-aligned-upsampling",)
    assert "first differs after the 'resize' step of preset 'minicam'" in report.to_text()


def test_eigen_signs_per_image_are_named(labs):
    name = "bn_net"
    pre = labs[name].pre("eigencam")
    signs = np.array([1.0, -1.0, 1.0])[:, None, None]
    from minicam.conformance.cases import finish
    planted = finish(pre * signs, CASES[name][0], "minicam", False)
    names, entry = first_names({f"{name}/eigencam/minicam": planted}, f"{name}/eigencam/minicam")
    assert names == ("eigen-sign-per-image",) and "(+, -, +)" in entry.diagnosis[0].summary


def test_two_method_level_causes_at_once(labs):
    """pytorch-grad-cam's default targets=None (the predicted class) with its Grad-CAM++ eps, at raw."""
    for name, (case, expected) in CASES.items():
        planted = recompute(("predicted-class", "gradcampp-pytorch-grad-cam"), labs[name], "gradcam++", "raw")
        single = recompute("predicted-class", labs[name], "gradcam++", "raw")
        if planted is None or single is None or map_error(planted, single) <= TOLERANCE:
            continue
        names, entry = first_names({f"{name}/gradcam++/raw": planted}, f"{name}/gradcam++/raw")
        assert names == ("predicted-class", "gradcampp-pytorch-grad-cam"), entry.sentence()
        return
    raise AssertionError("no case tells the pair from its parts")


def test_tiny_maps_detects_an_eps_of_1e_6_in_float32(labs):
    """float32 tolerances come from minicam's own float32 error of each value, so an eps of 1e-6 fails."""
    case, expected = CASES["tiny_maps"]
    from minicam.conformance.cases import method_map
    from minicam.cam.conventions import normalize_maps, resize_maps
    xgrad = np.maximum(method_map(case, "xgradcam", final_relu=False, weight_eps=1e-6), 0).astype(np.float32)
    plusplus = np.maximum(method_map(case, "gradcam++", final_relu=False, alpha_eps=1e-6), 0).astype(np.float32)
    upsampled = resize_maps(expected["gradcam/raw"], case.size, "bilinear")
    normalised = normalize_maps(upsampled, "minmax", 1e-6).astype(np.float32)
    report = verify({"tiny_maps/xgradcam/raw": xgrad, "tiny_maps/gradcam++/raw": plusplus,
                     "tiny_maps/gradcam/minicam": normalised})
    for entry in report.entries:
        assert entry.status == "FAIL" and entry.tolerance < 1e-5, entry.sentence()
    exact = verify({key: expected[key.split("/", 1)[1]].astype(np.float32) for key in
                    ("tiny_maps/xgradcam/raw", "tiny_maps/gradcam++/raw", "tiny_maps/gradcam/minicam")})
    assert exact.ok


# Pairs of variants that give the same map on every key of every case, on purpose:
DELIBERATE = {
    ("missing-relu", "normalise-before-relu"),  # a ReLU after min-max (>= 0) does nothing: the old
                                                # pytorch-grad-cam order IS a missing ReLU wherever it applies
}


def test_every_variant_is_distinguishable_from_every_other_on_some_case(labs):
    import itertools
    maps = {}
    for name, (case, expected) in CASES.items():
        for method in case.methods:
            for stage in STAGES:
                for variant in CATALOGUE.values():
                    if variant.kind == "method" and variant.methods and method not in variant.methods:
                        continue
                    planted = recompute(variant.name, labs[name], method, stage)
                    if planted is not None and np.all(np.isfinite(planted)):
                        maps.setdefault(variant.name, {})[(name, method, stage)] = planted
                maps.setdefault("minicam", {})[(name, method, stage)] = expected[f"{method}/{stage}"]
    same = []
    for a, b in itertools.combinations(maps, 2):
        common = set(maps[a]) & set(maps[b])
        if common and all(map_error(maps[a][k], maps[b][k]) <= TOLERANCE for k in common):
            same.append((a, b))
    assert set(same) == DELIBERATE, same
