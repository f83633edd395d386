"""minicam's errors, and how its commands report them.

What minicam raises on bad input (each message says what was wrong and what to do):
  ValueError      a value that cannot be used: a shape, a range, an unknown name in a string option
  NonFiniteError  a NaN or an infinity, with where it first appeared (a ValueError)
  TypeError       an argument of the wrong type
  KeyError        a name that is not there: a layer, a case, a state_dict key
  OSError         a file or folder that cannot be read or written (files.FileRefused, a
                  ValueError, for a path minicam will not write)
Anything else escaping minicam is a bug.

Commands (python -m minicam ...): a usage error (a flag's value) prints argparse's usage
and one line, exit status 2; any of the errors above prints one line
"minicam <command>: error: <message>", exit status 1; a traceback appears only for a bug,
or with --debug (which shows it for every error).
"""
from __future__ import annotations

import sys

import numpy as np

USER_ERRORS = (ValueError, TypeError, KeyError, OSError)


class NonFiniteError(ValueError):
    """A NaN or an infinity where a number was needed; the message says where it first appeared."""


def count_non_finite(values) -> str:
    """'3 NaN and 1 infinite values' (or '' when every value is finite)."""
    values = np.asarray(values)
    if values.dtype.kind not in "fc" or np.all(np.isfinite(values)):
        return ""
    nan, inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
    return " and ".join(part for part in (f"{nan} NaN" if nan else "", f"{inf} infinite" if inf else "") if part) \
        + " value" + ("s" if nan + inf > 1 else "")


def require_finite(values, what: str, fix: str) -> None:
    """Raise NonFiniteError ("<what> holds 2 NaN values; <fix>") unless every value is finite."""
    found = count_non_finite(values)
    if found:
        raise NonFiniteError(f"{what} holds {found}; {fix}")


def add_debug_flag(parser) -> None:
    parser.add_argument("--debug", action="store_true", help="on an error, show the full Python traceback")


def run_command(prog: str, main, argv) -> int:
    """main(argv) -> exit status, with minicam's errors turned into one line on stderr (exit 1)."""
    argv = list(argv)
    try:
        return main(argv)
    except USER_ERRORS as error:
        if "--debug" in argv:
            raise
        print(f"{prog}: error: {message(error)}", file=sys.stderr)
        return 1
    except MemoryError:
        if "--debug" in argv:
            raise
        print(f"{prog}: error: out of memory; ask for less (fewer images, a smaller batch)", file=sys.stderr)
        return 1


def message(error: BaseException) -> str:
    """The error's own sentence (a KeyError's str() would add quotes around it)."""
    if isinstance(error, KeyError) and len(error.args) == 1:
        return str(error.args[0])
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error) or type(error).__name__
