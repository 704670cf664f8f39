"""What the sample CLIs share: argparse errors and expected failures become ONE line on stderr.

(The export package has the same helper; samples import only ``dslnet_edge``, so they keep their own.)
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["EXPECTED_ERRORS", "parse_args_or_status", "report_error", "one_line", "quiet_native_logs"]

#: Errors a user can cause: bad paths and files (OSError, ValueError and the project's errors that
#: subclass them: GalleryError, ArtifactError, DetectorError, VideoError), a model the backend
#: refuses (RuntimeError: BackendError, ONNX Runtime failures), a missing optional package.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, RuntimeError, ImportError, KeyError)


class _ArgError(Exception):
    pass


def parse_args_or_status(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace | int:
    """``parser.parse_args`` that returns an exit status instead of raising ``SystemExit``.

    argparse prints a usage block before its error; a sample prints the one line only (and the
    ``--help`` hint). ``--help`` itself still prints the help and returns 0.
    """

    def error(message: str):
        print(f"error: {message} (see {parser.prog} --help)", file=sys.stderr)
        raise _ArgError

    parser.error = error  # type: ignore[method-assign]
    try:
        return parser.parse_args(argv)
    except _ArgError:
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (KeyError's quotes removed, whitespace collapsed)."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    text = " ".join(str(text).split())
    return text or type(exc).__name__


def report_error(exc: BaseException, *, status: int = 1) -> int:
    print(f"error: {one_line(exc)}", file=sys.stderr)
    return status


def quiet_native_logs() -> None:
    """Keep FFmpeg's and OpenCV's own warnings ("moov atom not found", "[ WARN:0] ...") off stderr.

    The samples report a video they cannot read in one line of their own. FFmpeg reads its level
    when OpenCV first uses it, so call this before the first ``cv2.VideoCapture``. Variables the
    user set (``OPENCV_FFMPEG_LOGLEVEL``, ``OPENCV_LOG_LEVEL``) win.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
