"""What every command line of the project shares: ONE line on stderr and a status for what a user
can cause; a traceback for a bug.

Used by every CLI of ``dslnet_edge``, ``train``, ``export``, ``calibration`` and ``samples`` (they
all import ``dslnet_edge``, so the helpers live here, once).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys

from dslnet_edge.errors import DslnetError

__all__ = ["EXPECTED_ERRORS", "parse_args_or_status", "one_line", "report_error"]

#: What a user can cause, and so what a CLI reports in one line: the project's own errors
#: (:class:`~dslnet_edge.errors.DslnetError`), files and folders the system refuses (``OSError``:
#: missing, unreadable, a full disk), a gallery file SQLite cannot use (``sqlite3.Error``), and
#: ``ValueError``: the validated dataclasses (``InputSpec``, every CLI's config) refuse a bad value
#: with a plain ``ValueError`` naming it, by design. Anything else (``TypeError``, ``KeyError``,
#: ``AttributeError``, a bare ``RuntimeError``...) is a bug: it is not caught and shows its traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (DslnetError, ValueError, OSError, sqlite3.Error)


class _ArgError(Exception):
    pass


def parse_args_or_status(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace | int:
    """``parser.parse_args`` returning an exit status (2) instead of raising ``SystemExit``.

    argparse prints its usage block and then the error; the project's CLIs print ONE line, so
    the message is kept and the usage dropped (``--help`` still prints the help, status 0).
    """

    def error(message: str):
        print(f"error: {message} (see {parser.prog} --help)", file=sys.stderr)
        raise _ArgError

    parser.error = error  # type: ignore[method-assign]
    try:
        return parser.parse_args(argv)
    except _ArgError:
        return 2
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (KeyError's quotes removed, whitespace collapsed)."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


def report_error(exc: BaseException, *, status: int = 1) -> int:
    """Print ``error: <one line>`` on stderr and return ``status``."""
    print(f"error: {one_line(exc)}", file=sys.stderr)
    return status
