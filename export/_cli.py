"""What the export CLIs share: one clear line on stderr and a status, never a traceback."""

from __future__ import annotations

import argparse
import sys

__all__ = ["EXPECTED_ERRORS", "parse_args_or_exit", "report_error", "one_line"]

#: Errors a user can cause (bad paths, bad files, bad values, a failed check, a missing optional
#: package). ``CheckpointError`` is a ``ValueError``; ONNX Runtime's errors are ``RuntimeError``s.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError, TypeError, ImportError, KeyError)


class _ArgError(Exception):
    pass


def parse_args_or_exit(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace | int:
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
    """The exception's message on one line (KeyError's quotes removed)."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    text = " ".join(str(text).split())
    return text or type(exc).__name__


def report_error(exc: BaseException, *, status: int = 1) -> int:
    print(f"error: {one_line(exc)}", file=sys.stderr)
    return status
