"""python -m minicam (or `minicam`): CAM, Grad-CAM and Grad-CAM++ side by side on the shipped lesson CNN.

Loads the trained weights that ship inside the package, draws sample images
from the synthetic shapes data (seeded, so the figure is the same on every
run), explains each image's predicted class with each method at the last
convolutional layer, and writes one figure: a row per method, a column per
image, titled with the predicted class (and the true one when they differ).

Errors: a bad flag value exits with status 2, any other problem (an unknown layer, a file
minicam will not overwrite, ...) prints one line and exits with status 1; --debug shows
the traceback instead.

Subcommands (each has its own --help):
  minicam export-cases DIR     write the conformance cases for another implementation
  minicam verify RESULTS.npz   compare another implementation's maps with minicam's, and say why they differ
  minicam evaluate             faithfulness and localisation metrics of every method
  minicam bench                timings against torch
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from minicam.cam import METHODS, explain
from minicam.cam.capture import predict
from minicam.data import CLASSES, single_instance
from minicam.errors import add_debug_flag, run_command
from minicam.models import lesson_cnn
from minicam.viz import grid, save_figure

DEFAULT_METHODS = ("cam", "gradcam", "gradcam++")
DEFAULT_LAYER = "features.relu3"


def parse_arguments(argv):
    parser = argparse.ArgumentParser(prog="minicam", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD",
                        help=f"methods to compare (default: {' '.join(DEFAULT_METHODS)}); any of: {', '.join(METHODS)}")
    parser.add_argument("--layer", default=DEFAULT_LAYER, help=f"the layer to explain (default: {DEFAULT_LAYER})")
    parser.add_argument("--images", type=int, default=6, help="number of sample images (default: 6)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sample images (default: 1)")
    parser.add_argument("--out", type=Path, default=Path("minicam_out"),
                        help="output folder (default: ./minicam_out)")
    parser.add_argument("--name", default="cam_comparison", help="file name of the figure, without .png")
    parser.add_argument("--force", action="store_true",
                        help="overwrite the figure even if it was not written by minicam")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if not 1 <= args.images <= 32:
        parser.error(f"--images must be between 1 and 32, got {args.images}")
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative integer (NumPy's seeds are), got {args.seed}")
    if args.name.strip(" .") == "" or "/" in args.name or "\\" in args.name:
        parser.error(f"--name must be a plain file name such as cam_comparison (no folders: use --out), "
                     f"got {args.name!r}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file; give a folder (it is created if missing)")
    layers = [name for name, _ in lesson_cnn(pretrained=False).named_modules() if name]
    if args.layer not in layers:
        parser.error(f"--layer {args.layer!r} is not a layer of the lesson CNN; its layers are {', '.join(layers)}")
    return args


# subcommand -> (module, function), imported only when used
SUBCOMMANDS = {
    "export-cases": ("minicam.conformance.cli", "export_cases_main"),
    "verify": ("minicam.conformance.cli", "verify_main"),
    "evaluate": ("minicam.evaluate", "main"),
    "bench": ("minicam.bench", "main"),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        module_name, function_name = SUBCOMMANDS[argv[0]]
        command = getattr(importlib.import_module(module_name), function_name)
        return run_command(f"minicam {argv[0]}", command, argv[1:])
    return run_command("minicam", compare_methods, argv)


def compare_methods(argv) -> int:
    """The main job: the comparison figure (see the module docstring)."""
    args = parse_arguments(argv)
    model = lesson_cnn(pretrained=True)
    data = single_instance(np.random.default_rng(args.seed), args.images)
    predicted = np.argmax(predict(model, data.images), axis=1)
    maps = {method: explain(model, data.images, method, args.layer, target=predicted) for method in args.methods}
    titles = [
        CLASSES[p] if p == t else f"{CLASSES[p]} (true: {CLASSES[t]})" for p, t in zip(predicted, data.labels)
    ]
    fig = grid(data.images, maps, column_titles=titles)
    fig.suptitle(f"lesson CNN, layer {args.layer}, predicted class explained")
    path = save_figure(fig, args.name, folder=args.out, force=args.force)
    print(f"accuracy on these {args.images} images: {np.mean(predicted == data.labels):.2f}")
    print(f"wrote {path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
