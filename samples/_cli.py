"""What the sample CLIs share: argparse errors and expected failures become ONE line on stderr
(the helpers of :mod:`dslnet_edge._cli`), and quiet native video logs.
"""

from __future__ import annotations

import os

from dslnet_edge._cli import EXPECTED_ERRORS, one_line, parse_args_or_status, report_error

__all__ = ["EXPECTED_ERRORS", "parse_args_or_status", "report_error", "one_line", "quiet_native_logs"]


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
