"""Every command fails cleanly: each bad input below, run as a user runs it (python -m minicam ...),
exits with the documented status (2: a bad flag value; 1: any other problem; verify: 2 when
the results or the cases cannot be read) and prints one message that names the problem and
the fix, with no Python traceback. And minicam never overwrites what it did not write."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minicam import files

ENV = {**os.environ, "MPLBACKEND": "Agg"}


def minicam(*args, cwd):
    return subprocess.run([sys.executable, "-m", "minicam", *map(str, args)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with an exported case folder, a results file and a few traps."""
    folder = tmp_path_factory.mktemp("commands")
    done = minicam("export-cases", "cases", cwd=folder)
    assert done.returncode == 0, done.stderr
    np.savez(folder / "results.npz", **{"gap_net/gradcam/raw": np.zeros((3, 8, 8))})
    (folder / "a_file").write_text("not a folder")
    return folder


def broken_case(workdir, name, damage):
    """A copy of the exported cases with gap_net damaged by damage(case_folder)."""
    import shutil

    target = workdir / name
    if not target.exists():
        shutil.copytree(workdir / "cases", target)
        damage(target / "gap_net")
    return target


def truncate_weights(case):
    data = (case / "weights.npz").read_bytes()
    (case / "weights.npz").write_bytes(data[:100])


def case_json_not_an_object(case):
    (case / "case.json").write_text("[1, 2]")


def nan_input(case):
    with np.load(case / "inputs.npz") as stored:
        inputs = {key: stored[key] for key in stored.files}
    inputs["x"][0, 0, 0, 0] = np.nan
    np.savez(case / "inputs.npz", **inputs)


def target_out_of_range(case):
    with np.load(case / "inputs.npz") as stored:
        inputs = {key: stored[key] for key in stored.files}
    inputs["targets"][0] = 99
    np.savez(case / "inputs.npz", **inputs)


BAD = {
    # name: (arguments, exit status, the message must match)
    "unknown layer": (["--layer", "nope"], 2, r"--layer 'nope' is not a layer of the lesson CNN; its layers are features,"),
    "layer without maps": (["--layer", "fc"], 1, r"layer 'fc' must output feature maps \(N, K, h, w\)"),
    "CAM at an early layer": (["--layer", "features.conv1"], 1, r"CAM needs 'features.conv1' -> global average pooling"),
    "negative seed": (["--seed", "-1"], 2, r"--seed must be a non-negative integer"),
    "empty name": (["--name", ""], 2, r"--name must be a plain file name"),
    "name with a folder": (["--name", "../x"], 2, r"--name must be a plain file name .* got '\.\./x'"),
    "out is a file": (["--out", "a_file"], 2, r"--out a_file is a file; give a folder"),
    "out cannot be created": (["--out", "/proc/minicam_out"], 1, r"/proc/minicam_out: No such file or directory"),
    "unknown method": (["--methods", "gradcam", "nope"], 2, r"unknown method\(s\) nope; choose from cam, gradcam"),
    "too many images": (["evaluate", "--images", "100000"], 2, r"--images must be between 1 and 2000, got 100000: .*memory"),
    "evaluate negative seed": (["evaluate", "--seed", "-3"], 2, r"--seed must be a non-negative integer"),
    "bench zero repeats": (["bench", "--repeats", "0"], 2, r"argument --repeats: --repeats must be positive, got 0"),
    "bench bad batch size": (["bench", "--batch-sizes", "0"], 2, r"batch sizes must be positive, got 0"),
    "export into a file": (["export-cases", "a_file"], 1, r"a_file exists and is not a folder"),
    "verify a missing results file": (["verify", "missing.npz"], 2, r"results file missing.npz does not exist"),
    "verify a missing cases folder": (["verify", "results.npz", "--cases", "nowhere"], 2, r"nowhere/index.json is missing"),
    "truncated weights": (["verify", "results.npz", "--cases", ("truncated", truncate_weights)], 2,
                          r"gap_net/weights.npz cannot be read as .npz \(BadZipFile"),
    "case.json not an object": (["verify", "results.npz", "--cases", ("list_json", case_json_not_an_object)], 2,
                                r"case.json must hold a JSON object \(a case description\), got a list"),
    "NaN in a case's input": (["verify", "results.npz", "--cases", ("nan_input", nan_input)], 2,
                              r"'x' must be finite float images .* with 1 NaN or infinite values"),
    "target out of range": (["verify", "results.npz", "--cases", ("bad_target", target_out_of_range)], 2,
                            r"'targets' must be 3 integer classes in 0..2, got \[99, "),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_gives_one_clear_line_and_the_documented_status(workdir, name):
    arguments, status, message = BAD[name]
    arguments = [broken_case(workdir, *a) if isinstance(a, tuple) else a for a in arguments]
    done = minicam(*arguments, cwd=workdir)
    assert done.returncode == status, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("minicam") and ": error: " in last, last
    import re

    assert re.search(message, last), last


def test_debug_shows_the_traceback(workdir):
    done = minicam("--layer", "fc", "--debug", cwd=workdir)
    assert done.returncode == 1 and "Traceback" in done.stderr and "ValueError" in done.stderr


def test_export_cases_refuses_a_foreign_folder_unless_forced_and_never_follows_links(workdir, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "README.md").write_text("my notes\n")
    done = minicam("export-cases", foreign, cwd=workdir)
    assert done.returncode == 1 and "not a folder written by `minicam export-cases`" in done.stderr
    assert (foreign / "README.md").read_text() == "my notes\n"  # untouched
    outside = tmp_path / "outside.json"
    outside.write_text('{"mine": true}')
    (foreign / "index.json").symlink_to(outside)
    done = minicam("export-cases", foreign, "--force", cwd=workdir)
    assert done.returncode == 1 and "is a symbolic link; minicam does not write through links" in done.stderr
    assert json.loads(outside.read_text()) == {"mine": True}  # the file outside the folder is untouched
    (foreign / "index.json").unlink()
    assert minicam("export-cases", foreign, "--force", cwd=workdir).returncode == 0
    assert files.written_by_minicam(foreign / "index.json")
    assert minicam("export-cases", foreign, cwd=workdir).returncode == 0  # a previous export: rewritten


def test_the_main_job_rewrites_its_own_figure_but_not_a_users(workdir, tmp_path):
    out = tmp_path / "out"
    assert minicam("--images", "2", "--out", out, cwd=workdir).returncode == 0
    first = (out / "cam_comparison.png").read_bytes()
    assert files.written_by_minicam(out / "cam_comparison.png")
    assert minicam("--images", "2", "--out", out, cwd=workdir).returncode == 0  # its own file: rewritten
    (out / "cam_comparison.png").write_bytes(b"a user's picture")
    done = minicam("--images", "2", "--out", out, cwd=workdir)
    assert done.returncode == 1 and "was not written by minicam; minicam will not overwrite it" in done.stderr
    assert (out / "cam_comparison.png").read_bytes() == b"a user's picture"
    assert minicam("--images", "2", "--out", out, "--force", cwd=workdir).returncode == 0
    assert (out / "cam_comparison.png").read_bytes()[:8] == first[:8]  # a PNG again


def test_jobs_writing_the_same_figure_at_once_leave_one_whole_file(workdir, tmp_path):
    """Four main jobs at once: each file a reader can see is one job's whole PNG, never a mix."""
    out = tmp_path / "same"
    jobs = [subprocess.Popen([sys.executable, "-m", "minicam", "--images", str(n), "--out", str(out)],
                             cwd=workdir, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for n in (1, 2, 3, 4)]
    for job in jobs:
        job.wait(timeout=600)
    assert all(job.returncode == 0 for job in jobs)
    from PIL import Image

    with Image.open(out / "cam_comparison.png") as image:
        image.load()  # a byte mix of several PNGs fails to decode
        assert image.info.get("Software") == files.MARK
    assert sorted(p.name for p in out.iterdir()) == ["cam_comparison.png"]  # no temporary file left behind
