"""The command line: `minicam export-cases DIR` and `minicam verify RESULTS.npz`.

Each returns an exit status: 0 success, 1 a check failed, 2 the input could not be read.
"""
from __future__ import annotations

import argparse
import sys

from minicam.conformance.export import CaseDataError, export_cases
from minicam.conformance.format import DEFAULT_FLOAT32_TOLERANCE, DEFAULT_TOLERANCE


def export_cases_main(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="minicam export-cases",
        description="Write minicam's conformance cases (nets, weights, inputs, targets, expected maps and a "
                    "README that explains the format) to DIR, for another implementation to run.")
    parser.add_argument("directory", metavar="DIR", help="the folder to write (created if needed)")
    args = parser.parse_args(argv)
    try:
        folder = export_cases(args.directory)
    except OSError as error:
        print(f"minicam export-cases: cannot write {args.directory}: {error}", file=sys.stderr)
        return 2
    print(f"wrote the conformance cases to {folder.resolve()}; read {folder / 'README.md'}")
    return 0


def verify_main(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="minicam verify",
        description="Compare another implementation's maps (an .npz keyed '<case>/<method>/<stage>') with "
                    "minicam's, and name the known variant or mistake that explains each difference.")
    parser.add_argument("results", metavar="RESULTS.npz", help="the maps to check")
    parser.add_argument("--cases", metavar="DIR", default=None,
                        help="a folder written by `minicam export-cases` (default: minicam's built-in suite)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"the largest relative error that passes, for float64 maps (default {DEFAULT_TOLERANCE:g})")
    parser.add_argument("--float32-tolerance", type=float, default=DEFAULT_FLOAT32_TOLERANCE,
                        help="the same for float32 maps; the larger of the two is used "
                             f"(default {DEFAULT_FLOAT32_TOLERANCE:g})")
    parser.add_argument("--require-all", action="store_true", help="count maps that were not submitted as failures")
    parser.add_argument("--no-diagnosis", action="store_true", help="do not search the catalogue of variants")
    args = parser.parse_args(argv)
    if not (args.tolerance > 0 and args.float32_tolerance > 0):
        parser.error("tolerances must be positive numbers")
    from minicam.conformance.verify import verify  # after argument parsing: --help stays fast

    try:
        report = verify(args.results, cases=args.cases, tolerance=args.tolerance,
                        float32_tolerance=args.float32_tolerance, require_all=args.require_all,
                        diagnose=not args.no_diagnosis)
    except CaseDataError as error:
        print(f"minicam verify: {error}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else report.to_text())
    return report.exit_code
