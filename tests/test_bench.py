"""`python -m minicam bench` runs, and writes JSON and markdown with the right fields.

Only on tiny configurations (--quick, N=1, a few methods), and never about speed:
timings on a shared machine are noise, so these tests check that every number is
there and plausible (positive, finite, consistent with the others), not its size.
"""
import json
import math

import numpy as np
import pytest

from minicam import bench
from minicam.__main__ import main as minicam_main

WORKLOADS = ["forward", "forward+backward", "convs forward", "convs forward+backward"]


def run_bench(tmp_path, *extra):
    out = tmp_path / "bench"
    argv = ["--quick", "--out", str(out), "--batch-sizes", "1", "--dtypes", "float32", *extra]
    assert bench.main(argv) == 0
    results = json.loads((out / "bench.json").read_text())
    return results, (out / "bench.md").read_text()


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_bench_without_torch_writes_json_and_markdown(tmp_path, capsys):
    results, table = run_bench(tmp_path, "--nets", "lesson", "--methods", "gradcam,cam", "--no-torch")
    machine = results["machine"]
    assert machine["cpu"] and machine["numpy"] == np.__version__ and machine["logical_cpus"] >= 1
    assert machine["blas"]  # threadpoolctl's list, or numpy's build information
    assert not results["torch_available"]
    peak = results["matmul_peak_gflops"]["float32"]["numpy"]
    assert positive(peak["median_gflops"]) and peak["best_gflops"] >= peak["median_gflops"]
    rows = results["rows"]
    assert [r["workload"] for r in rows] == WORKLOADS + ["cam gradcam", "cam cam"]
    for r in rows:
        assert (r["net"], r["dtype"], r["N"]) == ("lesson", "float32", 1)
        assert positive(r["minicam_ms"]) and r["minicam_repeats"] >= 1
        assert r["torch_ms"] is None and r["ratio"] is None and r["torch_rss_mib"] is None
        assert r["minicam_tracemalloc_mib"] >= 0 and r["minicam_page_faults"] >= 0
    for r in rows[:4]:  # the rows with convolutions
        assert positive(r["conv_gflop"]) and 0 < r["conv_share_of_peak"]
    assert rows[1]["conv_gflop"] == pytest.approx(3 * rows[0]["conv_gflop"])
    # lesson CNN at 32x32, N=1: 2 * (8*27*32^2 + 16*72*16^2 + 32*144*8^2) FLOPs
    assert rows[0]["conv_gflop"] == pytest.approx(2 * (8 * 27 * 1024 + 16 * 72 * 256 + 32 * 144 * 64) / 1e9)
    lines = table.splitlines()
    assert lines[:2] == ["<!-- written by minicam -->", "# minicam bench"]  # minicam's mark, then the title
    assert any("matmul peak" in line for line in lines)
    body = [line for line in lines if line.startswith("| lesson ")]
    assert len(body) == len(rows) and all(line.count("|") == lines[lines.index(body[0]) - 2].count("|") for line in body)
    assert "| lesson | float32 | 1 | cam gradcam |" in table
    assert capsys.readouterr().out.strip().endswith(table.strip().splitlines()[-1])  # the table is printed


def test_bench_against_torch_checks_both_nets_compute_the_same(tmp_path):
    pytest.importorskip("torch")
    results, table = run_bench(tmp_path, "--nets", "lesson,tinyresnet", "--methods", "gradcam,hirescam,cam")
    assert results["torch_available"] and results["machine"]["torch"]
    rows = {(r["net"], r["workload"]): r for r in results["rows"]}
    for net in ("lesson", "tinyresnet"):
        for workload in WORKLOADS + ["cam gradcam", "cam hirescam"]:
            r = rows[(net, workload)]
            assert positive(r["torch_ms"]) and r["ratio"] == pytest.approx(r["minicam_ms"] / r["torch_ms"])
        assert rows[(net, "forward")]["agreement"] < 1e-4  # the same logits (relative), float32
        assert rows[(net, "cam gradcam")]["agreement"] < 1e-3  # the same normalised maps
        assert rows[(net, "cam cam")]["torch_ms"] is None  # no torch pipeline for CAM itself
    assert "targets" not in results and "Targets" not in table  # goals belong to the README, not the library


@pytest.mark.skipif("resnet18" not in bench.NETS, reason="minicam.models has no resnet18")
def test_torch_twin_of_resnet18_has_the_same_logits():
    torch = pytest.importorskip("torch")
    (forward,) = [w for w in bench.build_workloads(bench.NETS["resnet18"], "float64", 1, [], torch)
                  if w.name == "forward"]
    assert forward.agreement < 1e-12


def test_bench_is_a_minicam_subcommand(tmp_path, capsys):
    out = tmp_path / "b"
    argv = ["bench", "--quick", "--json", "--no-torch", "--out", str(out), "--nets", "lesson",
            "--batch-sizes", "1", "--dtypes", "float64", "--methods", "cam"]
    assert minicam_main(argv) == 0
    printed = json.loads(capsys.readouterr().out)  # --json prints the JSON instead of the table
    assert printed["rows"][0]["dtype"] == "float64" and (out / "bench.md").exists()


@pytest.mark.parametrize("argv", [["--nets", "vgg"], ["--dtypes", "float16"], ["--batch-sizes", "0"],
                                  ["--methods", "gradcam,nope"]])
def test_bad_options_are_refused(argv):
    with pytest.raises(SystemExit):
        bench.parse_arguments(argv)
