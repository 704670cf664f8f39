"""One camera's loop, shared by ``video_reid`` and ``multi_camera``: frames -> boxes -> tracks -> identities.

For every processed frame:

1. the detector finds person boxes (:mod:`samples.detect`, :mod:`samples.yolox`);
2. the tracker (ByteTrack, or the IoU tracker) gives each box a track id (:mod:`samples.tracking`);
3. the *good* crops of confirmed tracks (:class:`CropQuality`: tall enough, a person's aspect,
   a confident detection, not cut by the frame edge) go to ``Matcher.match(crops, camera=...,
   timestamp=..., track_ids=...)``, which aggregates each track's embeddings and decides only
   once the track has ``min_track_crops`` of them: before that the track is *pending*, so a
   partial view of someone walking in (legs at the edge, a half-occluded body) never becomes
   an identity of its own. A track's other crops are drawn with the identity the track has;
4. a :class:`FrameResult` goes to the caller's sinks: the annotated video, the log, a printer.

Times: detector seconds per frame and embedding seconds per crop are measured separately
(:class:`TimedEngine` wraps the engine the Matcher calls), so a slow detector is not blamed on
the Re-ID model or the reverse.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from dslnet_edge._io import atomic_write
from samples.detect import Box, Detector, check_boxes
from samples.tracking import TrackedBox, Tracker
from samples.video import VideoSource

__all__ = [
    "CropQuality",
    "DetectionRecord",
    "FrameResult",
    "StreamStats",
    "TimedEngine",
    "process_stream",
    "crop_box",
    "annotate",
    "FrameLog",
    "check_log_destination",
    "LOG_SUFFIXES",
]

LOG_SUFFIXES = (".csv", ".json", ".jsonl")


@dataclasses.dataclass(frozen=True)
class CropQuality:
    """Which crops are good enough to describe a person (only these reach the Matcher).

    Attributes:
        min_height: box height in frame pixels (DSLNet sees 256x128: far smaller crops are mostly blur).
        min_aspect, max_aspect: width / height of a standing or walking person; boxes outside
            hold a part of one (legs, head and shoulders) or two people.
        min_score: detector score (YOLOX scores are probabilities; HOG's are SVM margins).
        edge_margin: a box within this many pixels of the frame border is cut by it.
    """

    min_height: int = 96
    min_aspect: float = 0.2
    max_aspect: float = 0.75
    min_score: float = 0.5
    edge_margin: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.min_height, bool) or not isinstance(self.min_height, int) or self.min_height < 8:
            raise ValueError(f"min_height must be an integer >= 8 pixels, got {self.min_height!r}")
        if not (0 < self.min_aspect < self.max_aspect):
            raise ValueError(f"need 0 < min_aspect < max_aspect, got {self.min_aspect!r} and {self.max_aspect!r}")
        if not math.isfinite(self.min_score):
            raise ValueError(f"min_score must be a finite number, got {self.min_score!r}")
        if isinstance(self.edge_margin, bool) or not isinstance(self.edge_margin, int) or self.edge_margin < 0:
            raise ValueError(f"edge_margin must be an integer >= 0 pixels, got {self.edge_margin!r}")

    def is_good(self, box: Box, frame_shape: tuple[int, ...]) -> bool:
        """Whether ``box`` (clipped to a frame of ``frame_shape``) is a good crop of a whole person.

        >>> q = CropQuality()
        >>> q.is_good(Box(100, 50, 150, 200, 0.9), (432, 768, 3)), q.is_good(Box(0, 50, 50, 200, 0.9), (432, 768, 3))
        (True, False)
        """
        height, width = int(frame_shape[0]), int(frame_shape[1])
        m = self.edge_margin
        if box.x1 < m or box.y1 < m or box.x2 > width - m or box.y2 > height - m:
            return False
        return box.height >= self.min_height and self.min_aspect <= box.width / box.height <= self.max_aspect and box.score >= self.min_score


@dataclasses.dataclass(frozen=True)
class DetectionRecord:
    """One tracked person box of one frame and what the Matcher said about it.

    ``status``: ``"tentative"`` (track not confirmed yet, or without enough good crops for a
    decision: not matched), ``"new"`` (enrolled as a new identity now), ``"known"`` (matched an
    identity already in the gallery, or a crop not good enough to match of a track that has one:
    then ``similarity`` is the track's last) or ``"unknown"`` (below the threshold with auto-enrol off).
    """

    track_id: int
    box: Box
    status: str
    identity: str | None = None
    similarity: float | None = None

    _STATUSES = ("tentative", "new", "known", "unknown")

    def __post_init__(self) -> None:
        if self.status not in self._STATUSES:
            raise ValueError(f"DetectionRecord.status must be one of {self._STATUSES}, got {self.status!r}")
        if (self.identity is None) != (self.status in ("tentative", "unknown")):
            raise ValueError(f"DetectionRecord: status {self.status!r} with identity {self.identity!r} is inconsistent")

    def to_dict(self) -> dict:
        return {
            "track_id": self.track_id,
            "box": [round(v, 1) for v in self.box[:4]],
            "score": round(self.box.score, 4),
            "status": self.status,
            "identity": self.identity,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
        }


@dataclasses.dataclass(frozen=True)
class FrameResult:
    """What happened in one processed frame of one camera (``time``: seconds into the video)."""

    camera: str
    frame_index: int
    time: float
    detections: tuple[DetectionRecord, ...]

    def to_dict(self) -> dict:
        return {"frame": self.frame_index, "time": round(self.time, 4), "detections": [d.to_dict() for d in self.detections]}


@dataclasses.dataclass
class StreamStats:
    """Counters and times of one camera's run."""

    camera: str
    frames_read: int = 0
    frames_processed: int = 0
    detections: int = 0
    good_crops: int = 0
    matched_crops: int = 0
    detector_seconds: float = 0.0
    tracker_seconds: float = 0.0
    match_seconds: float = 0.0
    wall_seconds: float = 0.0
    identities: set[str] = dataclasses.field(default_factory=set)
    new_identities: set[str] = dataclasses.field(default_factory=set)
    interrupted: bool = False
    frames_expected: int | None = None
    stopped_early: bool = False  # --max-frames reached

    @property
    def detector_ms_per_frame(self) -> float:
        return 1000 * self.detector_seconds / self.frames_processed if self.frames_processed else math.nan

    @property
    def frames_missing(self) -> int | None:
        """Frames the container announced but that could not be read (a truncated file); None when unknown."""
        if self.frames_expected is None or self.interrupted or self.stopped_early:
            return None
        return max(0, self.frames_expected - self.frames_read)


class TimedEngine:
    """Wraps an Engine so the seconds spent embedding (and the crops embedded) are counted.

    The Matcher needs ``embed`` and ``feature_dim`` only; several camera threads may share one
    (the counters are locked; the engine itself is thread-safe).
    """

    def __init__(self, engine):
        self.engine = engine
        self.feature_dim = engine.feature_dim
        self.seconds = 0.0
        self.crops = 0
        self._lock = threading.Lock()

    def embed(self, crops):
        start = time.perf_counter()
        out = self.engine.embed(crops)
        elapsed = time.perf_counter() - start
        with self._lock:
            self.seconds += elapsed
            self.crops += len(out)
        return out

    @property
    def ms_per_crop(self) -> float:
        return 1000 * self.seconds / self.crops if self.crops else math.nan


def crop_box(frame: np.ndarray, box: Box) -> np.ndarray:
    """The pixels of ``box`` (a view into ``frame``; boxes are already clipped to it)."""
    x1, y1, x2, y2 = box.as_int()
    return frame[max(y1, 0) : y2, max(x1, 0) : x2]


def process_stream(
    source: VideoSource,
    *,
    camera: str,
    detector: Detector,
    tracker: Tracker,
    matcher,
    quality: CropQuality = CropQuality(),
    every: int = 1,
    max_frames: int | None = None,
    start_time: float | None = None,
    on_frame: Sequence[Callable[[FrameResult, np.ndarray], None]] = (),
    stop: threading.Event | None = None,
) -> StreamStats:
    """Run one camera's frames through detector, tracker and Matcher; call ``on_frame`` per processed frame.

    ``start_time``: the wall-clock time (seconds since the epoch) of the video's first frame,
    from which the Matcher's timestamps are counted (default: now); cameras that share a
    Matcher share it so their feeds count as simultaneous. ``stop`` ends the loop early (another
    camera failed). Ctrl+C ends it too, with ``interrupted`` set, so the outputs so far are kept.
    """
    stats = StreamStats(camera, frames_expected=source.frame_count)
    start_time = time.time() if start_time is None else start_time
    began = time.perf_counter()
    memory: dict[int, tuple[str, float | None]] = {}  # track id -> (identity, similarity) last decided
    try:
        for index, frame in source.frames(every=every, max_frames=max_frames):
            if stop is not None and stop.is_set():
                stats.interrupted = True
                break
            video_time = index / source.fps
            result = _process_frame(frame, index, video_time, start_time, camera, detector, tracker, matcher, quality, memory, stats)
            for sink in on_frame:
                sink(result, frame)
    except KeyboardInterrupt:
        stats.interrupted = True
    stats.frames_read = source.frames_read
    stats.stopped_early = max_frames is not None and source.frames_read >= max_frames
    stats.wall_seconds = time.perf_counter() - began
    return stats


def _process_frame(frame, index, video_time, start_time, camera, detector, tracker, matcher, quality, memory, stats) -> FrameResult:
    t0 = time.perf_counter()
    # validated and clipped here too, so a plugged-in detector's bad box is a clear DetectorError
    boxes = check_boxes(detector.detect(frame, index), frame.shape, iou_threshold=1.0, containment=None, source=f"{type(detector).__name__} frame {index}")
    t1 = time.perf_counter()
    tracked = tracker.update(boxes)
    t_track = time.perf_counter()
    good = [tb for tb in tracked if tb.confirmed and quality.is_good(tb.box, frame.shape)]
    matches = matcher.match(
        [crop_box(frame, tb.box) for tb in good],
        camera=camera,
        timestamp=start_time + video_time,
        track_ids=[tb.track_id for tb in good],
    )
    t2 = time.perf_counter()
    stats.frames_processed += 1
    stats.detections += len(boxes)
    stats.good_crops += len(good)
    stats.matched_crops += sum(1 for m in matches if not getattr(m, "pending", False))
    stats.detector_seconds += t1 - t0
    stats.tracker_seconds += t_track - t1
    stats.match_seconds += t2 - t_track
    by_track = {m.track_id: m for m in matches}
    for m in matches:
        if m.identity is not None:
            memory[m.track_id] = (m.identity, m.similarity)
    records = tuple(_record(tb, by_track.get(tb.track_id) if tb.confirmed else None, memory.get(tb.track_id)) for tb in tracked)
    for r in records:
        if r.identity is not None:
            stats.identities.add(r.identity)
            if r.status == "new":
                stats.new_identities.add(r.identity)
    return FrameResult(camera, index, video_time, records)


def _record(tb: TrackedBox, match, remembered: tuple[str, float | None] | None) -> DetectionRecord:
    if match is None or getattr(match, "pending", False):
        if match is None and tb.confirmed and remembered is not None:  # a crop not good enough to match
            return DetectionRecord(tb.track_id, tb.box, "known", remembered[0], remembered[1])
        return DetectionRecord(tb.track_id, tb.box, "tentative")
    if match.identity is None:
        best = match.candidates[0][1] if match.candidates else None
        return DetectionRecord(tb.track_id, tb.box, "unknown", None, best)
    if match.is_new:
        return DetectionRecord(tb.track_id, tb.box, "new", match.identity, None)
    return DetectionRecord(tb.track_id, tb.box, "known", match.identity, match.similarity)


# ---------------------------------------------------------------------------------------------
# drawing
# ---------------------------------------------------------------------------------------------
def identity_colour(identity: str | None) -> tuple[int, int, int]:
    """A stable BGR colour per identity (the same person has the same colour on every camera)."""
    if identity is None:
        return (0, 0, 255)
    digest = hashlib.sha1(identity.encode("utf-8")).digest()
    hue = digest[0] * 180 // 256
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _label(record: DetectionRecord) -> str:
    if record.status == "tentative":
        return f"#{record.track_id}"
    if record.status == "unknown":
        return "unknown" if record.similarity is None else f"unknown {record.similarity:.2f}"
    if record.status == "new":
        return f"{record.identity} new"
    return record.identity if record.similarity is None else f"{record.identity} {record.similarity:.2f}"


def annotate(frame: np.ndarray, result: FrameResult, *, credit: str | None = None) -> np.ndarray:
    """A copy of ``frame`` with the boxes, identity labels, camera/time header and credit line drawn."""
    out = frame.copy()
    scale = max(0.4, min(1.0, out.shape[0] / 720))
    thick = 1 if scale < 0.7 else 2
    # the header first, so a label of a box at the top edge is drawn over it, not hidden under it
    _text(out, f"{result.camera}  frame {result.frame_index}  {result.time:.1f}s", (0, 0), scale, thick, (255, 255, 255))
    for record in result.detections:
        x1, y1, x2, y2 = record.box.as_int()
        if record.status == "tentative":
            cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), (160, 160, 160), 1)
            continue
        colour = identity_colour(record.identity)
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), colour, 2)
        _text(out, _label(record), (x1, max(y1, 0)), scale, thick, colour)
    if credit:
        _text(out, credit, (0, out.shape[0]), 0.8 * scale, 1, (255, 255, 255), bottom=True)
    return out


def _text(img, text, origin, scale, thick, colour, *, bottom: bool = False) -> None:
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = origin
    top = y - h - base - 4 if bottom else y
    top = max(0, min(top, img.shape[0] - h - base - 4))
    cv2.rectangle(img, (x, top), (x + w + 4, top + h + base + 4), (0, 0, 0), -1)
    cv2.putText(img, text, (x + 2, top + h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)


# ---------------------------------------------------------------------------------------------
# the log
# ---------------------------------------------------------------------------------------------
def check_log_destination(path: str | os.PathLike) -> Path:
    """``ValueError`` now, before any work, when ``path`` cannot become a log."""
    path = Path(path)
    if path.suffix.lower() not in LOG_SUFFIXES:
        raise ValueError(f"log {path}: unsupported suffix {path.suffix or '(none)'!r}; use .csv (one row per box), .json or .jsonl (one entry per frame)")
    if path.is_dir():
        raise ValueError(f"log {path} is a directory; expected a file name such as identities.csv")
    return path


class FrameLog:
    """Per-frame identity log, streamed to a temporary file and renamed into place at the end.

    ``.csv``: one row per box (frame, time, camera, track, box, score, status, identity,
    similarity), plus a row with empty box fields for frames without boxes, so every processed
    frame appears. ``.jsonl``: one JSON object per frame. ``.json``: one object with ``meta``,
    ``frames`` (one entry per processed frame) and ``summary``.
    Use as a context manager; an exception discards the partial log (the old file stays).
    """

    CSV_FIELDS = ["frame", "time", "camera", "track_id", "x1", "y1", "x2", "y2", "score", "status", "identity", "similarity"]

    def __init__(self, path: str | os.PathLike, meta: dict):
        self.path = check_log_destination(path)
        self.kind = self.path.suffix.lower()
        self.meta = meta
        self.summary: dict = {}
        self.frames = 0
        self._stack = contextlib.ExitStack()
        self._file: io.TextIOBase | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> FrameLog:
        tmp = self._stack.enter_context(atomic_write(self.path))
        self._file = self._stack.enter_context(open(tmp, "w", encoding="utf-8", newline=""))
        if self.kind == ".csv":
            self._csv = csv.writer(self._file)
            self._csv.writerow(self.CSV_FIELDS)
        elif self.kind == ".json":
            self._file.write('{"meta": ' + json.dumps(self.meta) + ', "frames": [\n')
        return self

    def __call__(self, result: FrameResult, frame: np.ndarray | None = None) -> None:
        with self._lock:
            if self.kind == ".csv":
                self._write_csv(result)
            elif self.kind == ".jsonl":
                self._file.write(json.dumps({"camera": result.camera, **result.to_dict()}) + "\n")
            else:
                self._file.write((",\n" if self.frames else "") + json.dumps(result.to_dict()))
            self.frames += 1

    def _write_csv(self, result: FrameResult) -> None:
        head = [result.frame_index, f"{result.time:.4f}", result.camera]
        if not result.detections:
            self._csv.writerow(head + [""] * (len(self.CSV_FIELDS) - len(head)))
        for d in result.detections:
            row = d.to_dict()
            self._csv.writerow(head + [d.track_id, *row["box"], row["score"], d.status, d.identity or "", "" if d.similarity is None else row["similarity"]])

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self.kind == ".json":
            self._file.write('\n], "summary": ' + json.dumps(self.summary) + "}\n")
        self._stack.__exit__(exc_type, exc, tb)


def iter_summary_lines(stats: Sequence[StreamStats], engine: TimedEngine) -> Iterator[str]:
    """Human-readable summary lines of a run (one block per camera, then the embedding time)."""
    for s in stats:
        det = f"{s.detector_ms_per_frame:.1f}" if s.frames_processed else "-"
        fps = s.frames_processed / s.wall_seconds if s.wall_seconds > 0 else math.nan
        missing = s.frames_missing
        yield (
            f"{s.camera}: {s.frames_processed} frames processed of {s.frames_read} read"
            f"{' (interrupted)' if s.interrupted else ''}"
            f"{f' (WARNING: the video announces {s.frames_expected} frames; {missing} could not be read: truncated or corrupt)' if missing else ''}"
            f", {s.detections} detections, {s.good_crops} good crops, {s.matched_crops} crops decided, "
            f"{len(s.identities)} identities ({len(s.new_identities)} new); detector {det} ms/frame, "
            f"{fps:.1f} frames/s end to end"
        )
    per_crop = f"{engine.ms_per_crop:.2f} ms/crop" if engine.crops else "no crops"
    yield f"embedding: {per_crop} over {engine.crops} crops ({engine.seconds:.2f} s)"
