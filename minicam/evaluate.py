"""minicam evaluate: every method on the shipped model and the multi-instance test set, measured.

    minicam evaluate [--images N] [--seed S] [--out DIR] [--methods ...] [--quick]

For each method, maps come from minicam.cam.explain (minicam convention) at the
last convolutional layer, for each image's labelled class, and these metrics
(minicam.metrics; definitions there) are computed on them:

  localisation    pointing game, energy pointing game, instance coverage (every
                  instance of the class found?), each against the ground-truth masks
  faithfulness    Average Drop % and % Increase in Confidence (Grad-CAM++ paper,
                  softmax probabilities, explanation map = map * image), Win % against
                  Grad-CAM, deletion and insertion areas (RISE, 20 steps, black baseline)

Every number is computed on this run; nothing is typed in. The table is printed
and written as markdown and JSON to --out (default ./minicam_out).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from minicam import files, metrics
from minicam.cam import METHODS, explain
from minicam.data import multi_instance
from minicam.errors import add_debug_flag
from minicam.models import lesson_cnn

LAYER = "features.relu3"
MAX_IMAGES = 2000
MAX_IMAGES_WHY = ("the images, their masks and every method's maps and deletion/insertion curves are held in "
                  "memory, about 1.7 MB per image with every method, so 2000 images need about 3.5 GB and, at "
                  "0.23 s per image, 8 minutes")
COLUMNS = (
    ("pointing", "pointing game", "{:.3f}"),
    ("energy", "energy pointing", "{:.3f}"),
    ("coverage", "instance coverage", "{:.3f}"),
    ("average_drop", "Average Drop %", "{:.1f}"),
    ("increase", "% Increase in Confidence", "{:.1f}"),
    ("win_vs_gradcam", "Win % vs Grad-CAM", "{:.1f}"),
    ("deletion_auc", "deletion AUC (lower better)", "{:.3f}"),
    ("insertion_auc", "insertion AUC (higher better)", "{:.3f}"),
    ("seconds", "seconds", "{:.1f}"),
)


def evaluate_method(model, dataset, method, steps=20):
    """All metrics of one method on one data set, as a dict of numbers."""
    start = time.perf_counter()
    classes = dataset.labels
    maps = explain(model, dataset.images, method, LAYER, target=classes)
    scores_full, scores_map = metrics.confidence_scores(model, dataset.images, maps, classes)
    drops = metrics.relative_drops(scores_full, scores_map)
    fractions, deletion = metrics.deletion_curve(model, dataset.images, maps, classes, steps=steps)
    _, insertion = metrics.insertion_curve(model, dataset.images, maps, classes, steps=steps)
    row = {
        "pointing": float(np.mean(metrics.pointing_game(maps, dataset.masks))),
        "energy": float(np.mean(metrics.energy_pointing_game(maps, dataset.masks))),
        "coverage": float(np.mean(metrics.instance_coverage_batch(maps, dataset.masks))),
        "average_drop": float(100 * np.mean(drops)),  # metrics.average_drop, without a second pass
        "increase": float(100 * np.mean(scores_full < scores_map)),  # metrics.increase_in_confidence
        "deletion_auc": float(np.mean(metrics.area_under_curve(fractions, deletion))),
        "insertion_auc": float(np.mean(metrics.area_under_curve(fractions, insertion))),
    }
    row["seconds"] = time.perf_counter() - start
    return row, drops


def evaluate(methods=None, images=100, seed=2026, log=print):
    """{method: {metric: value}} on `images` multi-instance images (seeded)."""
    methods = list(METHODS) if methods is None else list(methods)
    model = lesson_cnn()
    dataset = multi_instance(np.random.default_rng(seed), images)
    results, drops = {}, {}
    for method in methods:
        results[method], drops[method] = evaluate_method(model, dataset, method)
        log(f"  {method:20s} done in {results[method]['seconds']:.1f} s")
    reference = drops.get("gradcam")
    if reference is None:
        _, reference = evaluate_method(model, dataset, "gradcam")
    for method in methods:
        results[method]["win_vs_gradcam"] = metrics.win_percent(drops[method], reference)
    return results


def markdown_table(results) -> str:
    header = "| method | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|---|" + "---|" * len(COLUMNS)
    rows = [
        f"| {method} | " + " | ".join(fmt.format(row[key]) for key, _, fmt in COLUMNS) + " |"
        for method, row in results.items()
    ]
    return "\n".join([header, rule, *rows])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="minicam evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100, help="multi-instance test images (default 100)")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the test images (default 2026)")
    parser.add_argument("--methods", nargs="+", default=None, metavar="METHOD", help="default: every method")
    parser.add_argument("--out", type=Path, default=Path("minicam_out"), help="output folder (default ./minicam_out)")
    parser.add_argument("--quick", action="store_true", help="8 images and four methods: a smoke run")
    parser.add_argument("--force", action="store_true", help="overwrite output files minicam did not write")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    methods = args.methods
    if args.quick:
        args.images = min(args.images, 8)
        methods = methods or ["cam", "gradcam", "gradcam+", "gradcam++"]
    unknown = [m for m in (methods or []) if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if not 1 <= args.images <= MAX_IMAGES:
        parser.error(f"--images must be between 1 and {MAX_IMAGES}, got {args.images}: {MAX_IMAGES_WHY}")
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative integer (NumPy's seeds are), got {args.seed}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file; give a folder (it is created if missing)")
    for name in ("evaluation.json", "evaluation.md"):  # refuse before the long run, not after it
        files.check_writable(args.out / name, args.force)
    print(f"evaluating on {args.images} multi-instance images (seed {args.seed}), layer {LAYER}")
    results = evaluate(methods, args.images, args.seed)
    table = markdown_table(results)
    print(table)
    setup = {"images": args.images, "seed": args.seed, "layer": LAYER, "model": "lesson_cnn (shipped weights)",
             "data": "minicam.data.multi_instance", "convention": "minicam", "score": "softmax"}
    files.write_json(args.out / "evaluation.json", {"setup": setup, "results": results}, args.force)
    files.write_text(args.out / "evaluation.md",
                     f"Evaluation on {args.images} multi-instance images (seed {args.seed}), layer {LAYER}\n\n{table}\n",
                     args.force)
    print(f"wrote {(args.out / 'evaluation.md').resolve()} and evaluation.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
