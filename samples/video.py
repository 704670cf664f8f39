"""Video in and out for the samples: checked opening, frame iteration, atomic annotated video.

Reading goes through ``cv2.VideoCapture`` (FFmpeg), which takes container files (``.mp4``,
``.avi``, ...), raw elementary streams (``.264``/``.h264``, whose frame count is unknown) and
stream URLs (``rtsp://...``). A video is "readable" when its first frame decodes; that frame is
kept and handed out first, because raw streams cannot be rewound.

Writing is atomic like every file the project persists: frames go to a temporary file in the
destination folder that is renamed over the destination only when the video is complete (a
crash or Ctrl+C never leaves a truncated video under the real name). OpenCV picks the container
from the file name, so the temporary name keeps the destination's suffix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from dslnet_edge._io import atomic_write
from dslnet_edge.errors import DslnetError

__all__ = [
    "VideoError",
    "VideoSource",
    "open_video",
    "VideoSink",
    "atomic_video_writer",
    "VIDEO_SUFFIXES",
    "check_video_destination",
    "check_video_path_text",
    "count_frames",
]

#: Output suffix -> FourCC. mp4v (MPEG-4 Part 2) is in every OpenCV FFmpeg build; H.264 encoders are not.
VIDEO_SUFFIXES = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


class VideoError(DslnetError, ValueError):
    """A video that cannot be opened, decoded or written."""


@dataclasses.dataclass
class VideoSource:
    """An opened video: properties plus a frame iterator (see :func:`open_video`).

    Attributes:
        path: what was opened (file path or URL).
        fps: frames per second (from the container, or the ``fps`` override).
        frame_count: frames in the file, or None when the container does not say (raw H.264, streams).
        width, height: frame size in pixels.
    """

    path: str
    fps: float
    frame_count: int | None
    width: int
    height: int
    _capture: cv2.VideoCapture = dataclasses.field(repr=False)
    _first: np.ndarray | None = dataclasses.field(repr=False, default=None)
    frames_read: int = 0

    def frames(self, every: int = 1, max_frames: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame_index, frame)`` for every ``every``-th frame of the first ``max_frames``.

        Skipped frames are grabbed but not converted. Reading stops at the end of the video (or at
        the first frame that does not decode); ``frames_read`` counts the frames consumed.
        """
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        index = self.frames_read
        while max_frames is None or index < max_frames:
            if index == 0 and self._first is not None:
                frame, self._first = self._first, None
                ok = True
            elif index % every == 0:
                ok, frame = self._capture.read()
            else:
                ok, frame = self._capture.grab(), None
            if not ok:
                return
            index += 1
            self.frames_read = index
            if (index - 1) % every == 0:
                yield index - 1, frame

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def check_video_path_text(path: str | os.PathLike, what: str = "video") -> str:
    """``str(path)``, or ``VideoError`` when it is not valid UTF-8.

    A file name that is not valid UTF-8 (Python hands it over with surrogate escapes) crashes
    OpenCV's ``VideoCapture``/``VideoWriter`` (a segmentation fault in OpenCV 4.14), so such a
    path is refused with one line before OpenCV sees it.
    """
    text = os.fspath(path) if not isinstance(path, bytes) else os.fsdecode(path)
    text = str(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "backslashreplace").decode("ascii", "replace")
        raise VideoError(f"{what} path {shown} is not valid UTF-8, which OpenCV cannot open: rename the file (or folder)") from None
    return text


def count_frames(path: str | os.PathLike) -> int:
    """Frames that decode in a video file (reads it through; 0 when it does not open)."""
    capture = cv2.VideoCapture(check_video_path_text(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            return 0
        n = 0
        while capture.grab():
            n += 1
        return n
    finally:
        capture.release()


def open_video(path: str | os.PathLike, *, fps: float | None = None) -> VideoSource:
    """Open a video file or stream URL and decode its first frame; ``VideoError`` with the reason otherwise.

    ``fps`` overrides the container's frame rate (needed when it has none).
    """
    text = check_video_path_text(path)
    is_url = "://" in text
    if not is_url:
        p = Path(text)
        if not p.exists():
            raise VideoError(f"video {p} does not exist")
        if p.is_dir():
            raise VideoError(f"video {p} is a directory; expected a video file")
        if p.stat().st_size == 0:
            raise VideoError(f"video {p} is empty (0 bytes)")
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= 1000):
        raise VideoError(f"fps must be a number in (0, 1000], got {fps!r}")
    capture = cv2.VideoCapture(text, cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"OpenCV (FFmpeg) cannot open {text}: not a video it can decode, or a stream it cannot reach")
    ok, first = capture.read()
    if not ok or first is None or first.size == 0:
        capture.release()
        raise VideoError(f"{text} opened but its first frame does not decode: a corrupt or unsupported video")
    if first.ndim == 2:
        first = cv2.cvtColor(first, cv2.COLOR_GRAY2BGR)
    container_fps = capture.get(cv2.CAP_PROP_FPS)
    if fps is None:
        if not (math.isfinite(container_fps) and 0 < container_fps <= 1000):
            capture.release()
            raise VideoError(f"{text} does not state its frame rate (got {container_fps!r}); pass --fps")
        fps = float(container_fps)
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    frame_count = int(count) if math.isfinite(count) and 0 < count < 1e9 and not text.lower().endswith((".264", ".h264")) else None
    return VideoSource(text, float(fps), frame_count, int(first.shape[1]), int(first.shape[0]), capture, first)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
class VideoSink:
    """Frames go to an open ``cv2.VideoWriter``; counts them and checks their size."""

    def __init__(self, writer: cv2.VideoWriter, size: tuple[int, int], path: Path):
        self._writer, self.size, self.path = writer, size, path
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[1] != self.size[0] or frame.shape[0] != self.size[1]:
            raise VideoError(f"{self.path}: frame of {frame.shape[1]}x{frame.shape[0]} does not match the video's {self.size[0]}x{self.size[1]}")
        self._writer.write(frame)
        self.frames_written += 1


def check_video_destination(path: str | os.PathLike) -> Path:
    """``VideoError`` now, before any work, when ``path`` cannot become an annotated video."""
    path = Path(check_video_path_text(path, "output video"))
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise VideoError(f"output video {path}: unsupported suffix {path.suffix or '(none)'!r}; use one of {sorted(VIDEO_SUFFIXES)}")
    if path.is_dir():
        raise VideoError(f"output video {path} is a directory; expected a file name such as annotated.mp4")
    return path


@contextlib.contextmanager
def atomic_video_writer(path: str | os.PathLike, fps: float, size: tuple[int, int]) -> Iterator[VideoSink]:
    """A :class:`VideoSink` whose file appears at ``path`` only when the block completes.

    ``size`` is ``(width, height)``. The container follows the suffix (:data:`VIDEO_SUFFIXES`).
    ``cv2.VideoWriter`` does not report failed writes (a full disk gives a truncated, unplayable
    file), so before the new file replaces ``path`` it is checked: not empty, it opens, and it
    holds every frame written; otherwise ``VideoError`` and the old file stays.
    """
    path = check_video_destination(path)
    fourcc = VIDEO_SUFFIXES[path.suffix.lower()]
    with atomic_write(path, suffix=path.suffix) as tmp:  # FFmpeg picks the container from the suffix
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), float(fps), (int(size[0]), int(size[1])))
        try:
            if not writer.isOpened():
                raise VideoError(f"OpenCV cannot write a {fourcc} video to {path} (this OpenCV build lacks the encoder?)")
            sink = VideoSink(writer, (int(size[0]), int(size[1])), path)
            yield sink
        finally:
            writer.release()
        _check_written(tmp, sink.frames_written, path)


def _check_written(tmp: Path, frames_written: int, path: Path) -> None:
    """``VideoError`` unless the finished temporary video holds all ``frames_written`` frames."""
    if frames_written == 0:
        return  # nothing was processed: an empty container is what was asked for
    size = tmp.stat().st_size
    found = count_frames(tmp) if size > 0 else 0
    if found != frames_written:
        raise VideoError(
            f"writing {path} failed: {frames_written} frames were written but the file ({size} bytes) "
            f"{'holds ' + str(found) if found else 'does not open or holds none'} (disk full?); the previous file is kept"
        )
