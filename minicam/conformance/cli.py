"""The command line: `minicam export-cases DIR` and `minicam verify RESULTS.npz`.

Exit statuses: export-cases 0 written, 1 refused or not writable (one line on stderr, see
minicam.errors); verify 0 every map passed, 1 a map failed (or an error), 2 the results
file or the cases folder could not be read.
"""
from __future__ import annotations

import argparse
import sys

from minicam.conformance.export import CaseDataError, export_cases
from minicam.conformance.format import DEFAULT_FLOAT32_TOLERANCE, DEFAULT_TOLERANCE, FLOAT32_RULE
from minicam.errors import add_debug_flag


def export_cases_main(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="minicam export-cases",
        description="Write minicam's conformance cases (nets, weights, inputs, targets, expected maps and a "
                    "README that explains the format) to DIR, for another implementation to run.")
    parser.add_argument("directory", metavar="DIR",
                        help="the folder to write (created if needed): new, empty, or a previous export")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty folder that is not a previous export (same-named files are replaced)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    folder = export_cases(args.directory, force=args.force)  # errors: one line, exit 1 (minicam.errors)
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
                        help="a fixed tolerance for float32 values (the larger of the two is used); default: "
                             f"{FLOAT32_RULE}")
    parser.add_argument("--require-all", action="store_true", help="count maps that were not submitted as failures")
    parser.add_argument("--no-diagnosis", action="store_true", help="do not search the catalogue of variants")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if not (args.tolerance > 0 and (args.float32_tolerance is None or args.float32_tolerance > 0)):
        parser.error("tolerances must be positive numbers")
    from minicam.conformance.verify import verify  # after argument parsing: --help stays fast

    try:
        report = verify(args.results, cases=args.cases, tolerance=args.tolerance,
                        float32_tolerance=args.float32_tolerance, require_all=args.require_all,
                        diagnose=not args.no_diagnosis)
    except CaseDataError as error:
        if args.debug:
            raise
        print(f"minicam verify: error: {error}", file=sys.stderr)
        return 2
    if not report.readable and not args.json:  # nothing was checked: say why, in one line
        print(f"minicam verify: error: {'; '.join(report.problems)}", file=sys.stderr)
        return report.exit_code
    print(report.to_json() if args.json else report.to_text())
    return report.exit_code
