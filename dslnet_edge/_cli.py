"""What every command line of the project shares: ONE line on stderr and a status, never a traceback.

Used by ``python -m dslnet_edge.threshold`` and by the ``export``, ``calibration`` and ``samples``
CLIs (they all import ``dslnet_edge``, so the helper lives here, once).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["parse_args_or_status", "one_line", "report_error"]


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
