"""What every command line of the project shares: ONE line on stderr and a status for what a user
can cause; a traceback for a bug.

Used by every CLI of ``dslnet_edge``, ``train``, ``export``, ``calibration`` and ``samples`` (they
all import ``dslnet_edge``, so the helpers live here, once).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sqlite3
import sys
from collections.abc import Iterator

from dslnet_edge.errors import DslnetError

__all__ = ["EXPECTED_ERRORS", "parse_args_or_status", "one_line", "report_error", "log_to_console"]

#: The loggers of the project's packages (library code logs to ``logging.getLogger(__name__)``).
PROJECT_LOGGERS = ("dslnet_edge", "train", "export", "calibration", "samples")

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


class _ConsoleHandler(logging.Handler):
    """The message alone, on ``sys.stdout``/``sys.stderr`` as they are when the record is written.

    Looking the stream up at each record (not once) keeps a CLI called twice in one process, or
    under a test's captured output, from writing to a stream that was swapped out. Warnings and
    errors always go to stderr.
    """

    def __init__(self, stream: str) -> None:
        super().__init__()
        self.stream_name = stream
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else getattr(sys, self.stream_name)
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # logging's own contract: a failing handler must not raise
            self.handleError(record)


@contextlib.contextmanager
def log_to_console(stream: str = "stdout", *, level: int = logging.INFO) -> Iterator[None]:
    """Within the block, the project's log lines print as plain lines on ``stream`` ("stdout"/"stderr").

    Library code logs through ``logging`` and prints nothing; a CLI's ``main`` shows its progress
    by running inside this block. On leaving it the loggers are as they were (no handler left
    behind, no doubled lines when a CLI runs twice in one process).
    """
    if stream not in ("stdout", "stderr"):
        raise ValueError(f"stream must be 'stdout' or 'stderr', got {stream!r}")
    installed = []
    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        handler = _ConsoleHandler(stream)
        logger.addHandler(handler)
        installed.append((logger, handler, logger.level))
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, handler, previous in installed:
            logger.removeHandler(handler)
            logger.setLevel(previous)
