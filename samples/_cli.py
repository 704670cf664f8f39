"""What the sample CLIs share: argparse errors and expected failures become ONE line on stderr
(the helpers of :mod:`dslnet_edge._cli`), and quiet native video logs.
"""

from __future__ import annotations

import os
import sqlite3

from dslnet_edge._cli import one_line, parse_args_or_status, report_error

__all__ = ["EXPECTED_ERRORS", "parse_args_or_status", "report_error", "one_line", "quiet_native_logs"]

#: Errors a user can cause: bad paths and files (OSError, ValueError and the project's errors that
#: subclass them: GalleryError, ArtifactError, DetectorError, VideoError), a model the backend
#: refuses (RuntimeError: BackendError, ONNX Runtime failures), a missing optional package, and a
#: gallery file SQLite cannot write (sqlite3.Error: a full disk is "database or disk is full" / "disk I/O error").
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, RuntimeError, ImportError, KeyError,
                                                    sqlite3.Error)


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
