"""The adapters: captum, torchcam and a hand-written torch port run on the EXPORTED cases
(nets rebuilt in torch from architecture.json + weights.npz), checked by verify.

Expected outcomes (docs/peers.md, Grad-CAM; Grad-CAM++; XGrad-CAM; Score-CAM, SS-CAM and IS-CAM):
  captum     LayerGradCam passes (raw with relu_attributions=True; the captum preset with
             relu_attributions=False + LayerAttribution.interpolate); GuidedBackprop passes;
             GuidedGradCam fails, diagnosed as its nearest, unnormalised Grad-CAM factor.
  torchcam   CAM, GradCAM, LayerCAM pass; GradCAMpp FAILS, diagnosed as the no-op alpha
             division of torchcam 0.5.0; XGradCAM passes on ReLU layers and fails where its
             eps of 1e-8 shows (tiny maps, signed activations); ScoreCAM fails as logits.
  torch      Grad-CAM passes (float64, and float32 for the pytorch-grad-cam preset); the
             pytorch-grad-cam Grad-CAM++ formula (eps 1e-6) is diagnosed as such.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from torch_required import require_torch

torch = require_torch()
pytest.importorskip("captum.attr")
pytest.importorskip("torchcam.methods")

from minicam.cam.capture import predict  # noqa: E402
from minicam.conformance import adapters  # noqa: E402
from minicam.conformance.export import export_cases, load_cases  # noqa: E402
from minicam.conformance.readme import TORCH_EXAMPLE  # noqa: E402
from minicam.conformance.verify import verify  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return export_cases(tmp_path_factory.mktemp("exported"))


@pytest.fixture(scope="module")
def loaded(folder):
    return load_cases(folder)


@pytest.fixture(scope="module")
def reports(folder, loaded):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # captum warns that it sets backward hooks on ReLUs
        paths = adapters.write_results(folder)
    return {name: verify(path, cases=loaded) for name, path in paths.items()}


def statuses(report, method, stage=None):
    return {(e.case, e.stage): e for e in report.entries if e.method == method and (stage is None or e.stage == stage)}


def test_torch_nets_rebuilt_from_the_export_are_minicams(folder, loaded):
    for name, (case, _) in loaded.items():
        files = adapters.read_case(folder / name)
        net = adapters.torch_net(files["layers"], files["weights"])
        assert all(p.dtype == torch.float64 for p in net.parameters()) and not net.training
        with torch.no_grad():
            theirs = net(torch.from_numpy(files["x"])).numpy()
        np.testing.assert_allclose(theirs, predict(case.model, case.x), rtol=1e-12, atol=1e-14)


def test_captum(reports):
    report = reports["captum"]
    assert report.counts["INVALID"] == report.counts["UNKNOWN"] == 0
    for method in ("gradcam", "guided-backprop"):
        for (case, stage), entry in statuses(report, method).items():
            assert entry.status == "PASS" and entry.error < 1e-12, entry.sentence()
    assert {stage for _, stage in statuses(report, "gradcam")} == {"raw", "captum"}
    guided = statuses(report, "guided-gradcam")
    assert len(guided) == 6
    for entry in guided.values():
        assert entry.status == "FAIL" and entry.diagnosis[0].names == ("captum-guided-gradcam",), entry.sentence()
        assert entry.diagnosis[0].error < 1e-12


def test_torchcam_gradcam_cam_layercam_pass(reports):
    report = reports["torchcam"]
    assert report.counts["INVALID"] == report.counts["UNKNOWN"] == 0
    for method, count in (("gradcam", 12), ("layercam", 12), ("cam", 4)):
        entries = statuses(report, method)
        assert len(entries) == count
        for entry in entries.values():
            assert entry.status == "PASS" and entry.error < 1e-12, entry.sentence()


def test_torchcam_gradcampp_passes_its_preset_and_fails_raw_as_the_no_op_alpha_division(reports):
    """The "torchcam" stage is torchcam's own formula (the preset's method options), bug included;
    the raw stage is the paper's, from which torchcam's map differs by its lost division."""
    entries = statuses(reports["torchcam"], "gradcam++")
    assert len(entries) == 12
    for (case, stage), entry in entries.items():
        if stage == "torchcam":
            assert entry.status == "PASS" and entry.error < 1e-12, entry.sentence()
            continue
        assert entry.status == "FAIL" and entry.error > 0.05, entry.sentence()
        assert entry.diagnosis[0].names == ("torchcam-0.5.0-gradcampp",) and entry.diagnosis[0].error < 1e-12
        assert "matches variant 'torchcam-0.5.0-gradcampp' (no-op alpha division" in entry.sentence()


def test_torchcam_xgradcam_eps_shows_only_where_it_matters(reports):
    for (case, stage), entry in statuses(reports["torchcam"], "xgradcam").items():
        if stage == "torchcam":  # the preset's eps=1e-8 is torchcam's
            assert entry.status == "PASS" and entry.error < 1e-12, entry.sentence()
        elif case in ("tiny_maps", "captum_toy", "signed_net"):  # tiny or signed sums of A
            assert entry.status == "FAIL" and entry.diagnosis[0].names == ("xgradcam-eps-1e-8",), entry.sentence()
        else:
            assert entry.status == "PASS" and 1e-11 < entry.error < 1e-7, entry.sentence()  # 1e-8 / sum(A)


def test_torchcam_score_cams_pass_their_preset_and_raw_scorecam_uses_logits(reports):
    for method in ("scorecam", "iscam"):
        for (case, stage), entry in statuses(reports["torchcam"], method).items():
            if stage == "torchcam":
                assert entry.status == "PASS" and entry.error < 1e-12, entry.sentence()
            elif method == "scorecam":
                assert entry.status == "FAIL", entry.sentence()
                names = [m.names for m in entry.diagnosis if len(m.names) == 1]
                assert ("torchcam-scorecam",) in names, entry.sentence()
                if case in ("flatten_net", "bn_net"):  # the layer is smaller than the input: only torchcam's masks fit
                    assert names[0] == ("torchcam-scorecam",), entry.sentence()


def test_hand_written_torch_port(reports):
    report = reports["torch"]
    for (case, stage), entry in statuses(report, "gradcam").items():
        assert entry.status == "PASS", entry.sentence()
        if stage == "pytorch-grad-cam":
            assert entry.dtype == "float32" and 1e-6 <= entry.tolerance <= 1e-4 and entry.error < 1e-6
        else:
            assert entry.dtype == "float64" and entry.error < 1e-12
    for (case, stage), entry in statuses(report, "gradcam++").items():
        if stage == "pytorch-grad-cam":  # the preset's eps=1e-6 and keep="g != 0" are the port's formula
            assert entry.status == "PASS" and entry.error < 1e-6, entry.sentence()
        elif entry.status == "FAIL":  # raw: the paper's eq. 19 without the eps
            assert ("gradcampp-pytorch-grad-cam",) in [m.names for m in entry.diagnosis], entry.sentence()
    failed = [e for e in statuses(report, "gradcam++").values() if e.status == "FAIL"]
    assert len(failed) >= 4, [e.sentence() for e in failed]


def test_adapters_command_line(folder):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "minicam.conformance.adapters", str(folder), "torch"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"python -m minicam verify {folder / 'results-torch.npz'} --cases {folder}" in done.stdout
    done = subprocess.run([sys.executable, "-m", "minicam.conformance.adapters", str(folder / "gap_net")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "export-cases" in done.stderr


def test_the_readme_example_runs_and_passes(folder, loaded, tmp_path):
    """The torch example printed in README.md, run as written (in a folder holding `cases`)."""
    readme = (folder / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert code.strip() == TORCH_EXAMPLE.strip()
    (tmp_path / "cases").symlink_to(folder)
    (tmp_path / "example.py").write_text(code)
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = verify(tmp_path / "results.npz", cases=loaded)
    assert report.ok and report.counts["PASS"] == 6
    assert all(e.error < 1e-12 for e in report.entries)
    assert json.loads(report.to_json())["ok"] is True
