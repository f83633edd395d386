"""minicam evaluate: the table's numbers are the metrics of the methods' maps, computed on the run."""
import json

import numpy as np

from minicam import metrics
from minicam.cam import explain
from minicam.data import multi_instance
from minicam.evaluate import LAYER, evaluate, main, markdown_table
from minicam.models import lesson_cnn


def test_evaluate_numbers_equal_the_metrics_recomputed_by_hand():
    results = evaluate(["gradcam", "gradcam++"], images=4, seed=7, log=lambda *a: None)
    model, ds = lesson_cnn(), multi_instance(np.random.default_rng(7), 4)
    maps = explain(model, ds.images, "gradcam++", LAYER, target=ds.labels)
    row = results["gradcam++"]
    assert row["pointing"] == np.mean(metrics.pointing_game(maps, ds.masks))
    assert row["coverage"] == np.mean(metrics.instance_coverage_batch(maps, ds.masks))
    Y, O = metrics.confidence_scores(model, ds.images, maps, ds.labels)
    assert abs(row["average_drop"] - 100 * np.mean(np.maximum(0, Y - O) / Y)) < 1e-9
    assert abs(row["increase"] - 100 * np.mean(Y < O)) < 1e-9
    assert results["gradcam"]["win_vs_gradcam"] == 50.0  # against itself: every image a tie, counted half
    for value in row.values():
        assert np.isfinite(value)


def test_the_command_writes_json_and_markdown(tmp_path, capsys):
    assert main(["--quick", "--images", "3", "--methods", "cam", "gradcam", "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["setup"]["images"] == 3 and set(saved["results"]) == {"cam", "gradcam"}
    table = (tmp_path / "evaluation.md").read_text()
    assert markdown_table(saved["results"]) in table
    assert "| gradcam |" in capsys.readouterr().out
