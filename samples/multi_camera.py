"""Several cameras, one Matcher: a person seen on camera A is recognised on camera B.

::

    python -m samples.multi_camera --video ../shared/data/videos/one-by-one-person-detection.mp4 \\
        --video ../shared/data/videos/people-detection.264 --out-dir multi/ --save-gallery gallery.db

One thread per feed reads, detects and tracks on its own; all threads share ONE
``dslnet_edge.Matcher`` and so one gallery (the Matcher embeds outside its lock, so the feeds
embed in parallel, and decides under it, so the gallery never sees half an update). Each time an
identity appears on a camera other than the ones it was seen on before, a ``cross-camera`` line
is printed; the summary lists the identities seen on several cameras.

Files are read as fast as they decode, each feed from its own first frame, and the Matcher's
clock counts every feed from the same start, as if the cameras had started together.
``--out-dir`` writes an annotated video and a CSV log per camera (``<camera>.mp4``, ``<camera>.csv``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from samples._cli import EXPECTED_ERRORS, parse_args_or_status, quiet_native_logs, report_error
from samples._common import (
    ModelConfig,
    TrackerConfig,
    add_detector_arguments,
    add_model_arguments,
    build_matcher,
    check_run_outputs,
    credit_for,
    hog_config_from_args,
    model_config_from_args,
    positive_int,
    tracker_config_from_args,
)
from samples.detect import Detector, HogConfig
from samples.detectors import make_detector
from samples.pipeline import (
    FrameLog,
    FrameResult,
    StreamStats,
    annotate,
    check_log_destination,
    iter_summary_lines,
    process_stream,
)
from samples.video import VideoSource, atomic_video_writer, check_video_destination, open_video

__all__ = ["MultiCameraConfig", "MultiCameraResult", "CrossCameraEvent", "CrossCameraLog", "run_multi_camera", "main"]


@dataclasses.dataclass(frozen=True)
class MultiCameraConfig:
    """What ``python -m samples.multi_camera`` does.

    ``detectors``: one detector spec for every feed, or one per feed (``boxes:FILE`` files are per camera).
    ``cameras``: names, one per feed (default: the file names, made unique).
    """

    videos: tuple[str, ...]
    cameras: tuple[str, ...] | None = None
    model: ModelConfig = ModelConfig()
    out_dir: str | None = None
    every: int = 1
    max_frames: int | None = None
    detectors: tuple[str, ...] = ("hog",)
    hog: HogConfig = HogConfig()
    tracker: TrackerConfig = TrackerConfig()
    fps: float | None = None
    credit: str | None = None

    def __post_init__(self) -> None:
        if len(self.videos) < 1:
            raise ValueError("give at least one --video (two or more to see people move between cameras)")
        if self.cameras is not None:
            if len(self.cameras) != len(self.videos):
                raise ValueError(f"got {len(self.cameras)} --camera names for {len(self.videos)} --video feeds; give one per feed")
            if len(set(self.cameras)) != len(self.cameras):
                raise ValueError(f"camera names must be unique, got {list(self.cameras)}")
            if any(not c.strip() for c in self.cameras):
                raise ValueError("camera names must not be empty")
        if len(self.detectors) not in (1, len(self.videos)):
            raise ValueError(f"got {len(self.detectors)} --detector values for {len(self.videos)} feeds; give one for all or one per feed")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be an integer >= 1, got {self.every!r}")
        if self.max_frames is not None and (isinstance(self.max_frames, bool) or not isinstance(self.max_frames, int) or self.max_frames < 1):
            raise ValueError(f"max_frames must be an integer >= 1 or None, got {self.max_frames!r}")

    def camera_names(self) -> list[str]:
        if self.cameras is not None:
            return list(self.cameras)
        names: list[str] = []
        for video in self.videos:
            stem = Path(video).stem or "camera"
            name, n = stem, 2
            while name in names:
                name, n = f"{stem}-{n}", n + 1
            names.append(name)
        return names

    def detector_for(self, i: int) -> str:
        return self.detectors[0] if len(self.detectors) == 1 else self.detectors[i]


@dataclasses.dataclass(frozen=True)
class CrossCameraEvent:
    """An identity appearing on a camera other than the ones it was seen on before in this run."""

    identity: str
    camera: str
    frame_index: int
    time: float
    similarity: float | None
    earlier: tuple[tuple[str, int, float], ...]  # (camera, frame, time) where it was seen first

    def __str__(self) -> str:
        sim = f", similarity {self.similarity:.2f}" if self.similarity is not None else ""
        where = "; ".join(f"{c} frame {f} ({t:.1f} s)" for c, f, t in self.earlier)
        return f"cross-camera: {self.identity} on {self.camera} frame {self.frame_index} ({self.time:.1f} s{sim}), seen before on {where}"


class CrossCameraLog:
    """Shared by the camera threads: where each identity was first seen, per camera; emits :class:`CrossCameraEvent`."""

    def __init__(self, emit: Callable[[CrossCameraEvent], None] | None = None):
        self._first: dict[str, dict[str, tuple[int, float]]] = {}
        self.events: list[CrossCameraEvent] = []
        self._emit = emit
        self._lock = threading.Lock()

    def __call__(self, result: FrameResult, frame=None) -> None:
        for record in result.detections:
            if record.identity is None:
                continue
            with self._lock:
                seen = self._first.setdefault(record.identity, {})
                if result.camera in seen:
                    continue
                if seen:
                    earlier = tuple((c, f, t) for c, (f, t) in seen.items())
                    event = CrossCameraEvent(record.identity, result.camera, result.frame_index, result.time, record.similarity, earlier)
                    self.events.append(event)
                    if self._emit is not None:
                        self._emit(event)
                seen[result.camera] = (result.frame_index, result.time)

    def cameras_of(self) -> dict[str, list[str]]:
        """identity -> cameras it was seen on, in order of first sighting."""
        with self._lock:
            return {identity: list(seen) for identity, seen in self._first.items()}

    def shared_identities(self) -> dict[str, list[str]]:
        """Identities seen on two or more cameras."""
        return {i: cams for i, cams in self.cameras_of().items() if len(cams) > 1}


@dataclasses.dataclass(frozen=True)
class MultiCameraResult:
    stats: tuple[StreamStats, ...]
    events: tuple[CrossCameraEvent, ...]
    shared: dict[str, list[str]]
    gallery_identities: int
    saved_gallery: str | None
    outputs: tuple[str, ...]
    interrupted: bool
    lines: tuple[str, ...]


def run_multi_camera(
    config: MultiCameraConfig,
    *,
    emit: Callable[[str], None] | None = None,
    detectors: Sequence[Detector] | None = None,
) -> MultiCameraResult:
    """Run every feed in its own thread against one shared Matcher.

    ``emit`` receives the cross-camera lines as they happen. ``detectors``: one detector object
    per feed (anything with ``detect(frame, frame_index)``) instead of ``config.detectors``.
    """
    names = config.camera_names()
    if detectors is None:
        detectors = [make_detector(config.detector_for(i), hog=config.hog) for i in range(len(config.videos))]
    elif len(detectors) != len(config.videos):
        raise ValueError(f"got {len(detectors)} detectors for {len(config.videos)} feeds; give one per feed")
    outputs: dict[str, str | None] = {"gallery": config.model.save_gallery}
    if config.out_dir is not None:
        for name in names:  # before any work: a typo costs a second, not a video
            outputs[f"annotated video of {name}"] = str(check_video_destination(Path(config.out_dir) / f"{_file_name(name)}.mp4"))
            outputs[f"log of {name}"] = str(check_log_destination(Path(config.out_dir) / f"{_file_name(name)}.csv"))
    check_run_outputs(outputs, videos=config.videos, model=config.model, detectors=config.detectors if detectors is None else ())
    sources: list[VideoSource] = []
    with contextlib.ExitStack() as opened:
        for video in config.videos:  # every feed is checked before any thread starts
            sources.append(opened.enter_context(open_video(video, fps=config.fps)))
        matcher, timed = build_matcher(config.model)
        cross = CrossCameraLog(None if emit is None else (lambda event: emit(str(event))))
        stop = threading.Event()
        start_time = time.time()
        workers = [
            _Worker(config, name, source, detector, matcher, cross, stop, start_time)
            for name, source, detector in zip(names, sources, detectors)
        ]
        interrupted = _run_all(workers, stop)
        errors = [w.error for w in workers if w.error is not None]
        if errors:
            raise errors[0]
        saved = None
        if config.model.save_gallery is not None:
            saved = str(matcher.gallery.save(config.model.save_gallery))
    stats = tuple(w.stats for w in workers)
    shared = cross.shared_identities()
    lines = list(iter_summary_lines(stats, timed))
    lines.append(f"gallery: {len(matcher.gallery)} identities" + (f", saved to {saved}" if saved else ""))
    if shared:
        lines.append(f"seen on several cameras: {len(shared)} identities: " + "; ".join(f"{i} ({', '.join(c)})" for i, c in sorted(shared.items())))
    else:
        lines.append("seen on several cameras: none")
    outputs = tuple(p for w in workers for p in w.outputs)
    if outputs:
        lines.append("outputs: " + ", ".join(outputs))
    credits = sorted({c for c in (credit_for(v, config.credit) for v in config.videos) if c})
    if credits:
        lines.append("video credit: " + "; ".join(credits))
    return MultiCameraResult(stats, tuple(cross.events), shared, len(matcher.gallery), saved, outputs, interrupted, tuple(lines))


def _run_all(workers: list[_Worker], stop: threading.Event) -> bool:
    """Start the threads and wait; Ctrl+C stops them all (their outputs so far are kept). True if interrupted."""
    for w in workers:
        w.thread.start()
    interrupted = False
    while any(w.thread.is_alive() for w in workers):
        try:
            for w in workers:
                w.thread.join(timeout=0.2)
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
    return interrupted or any(w.stats is not None and w.stats.interrupted for w in workers)


class _Worker:
    """One camera's thread: its own detector, tracker and outputs; the shared Matcher."""

    def __init__(self, config: MultiCameraConfig, camera: str, source: VideoSource, detector, matcher, cross, stop, start_time):
        self.config, self.camera, self.source, self.detector = config, camera, source, detector
        self.matcher, self.cross, self.stop, self.start_time = matcher, cross, stop, start_time
        self.stats: StreamStats | None = None
        self.error: BaseException | None = None
        self.outputs: list[str] = []
        self.thread = threading.Thread(target=self._run, name=f"camera-{camera}", daemon=True)

    def _run(self) -> None:
        config = self.config
        try:
            with contextlib.ExitStack() as outputs:
                sinks = [self.cross]
                if config.out_dir is not None:
                    base = Path(config.out_dir) / _file_name(self.camera)
                    credit = credit_for(self.source.path, config.credit)
                    size = (self.source.width, self.source.height)
                    video = outputs.enter_context(atomic_video_writer(base.with_suffix(".mp4"), self.source.fps / config.every, size))
                    log = outputs.enter_context(FrameLog(base.with_suffix(".csv"), {"camera": self.camera}))
                    sinks += [lambda result, frame: video.write(annotate(frame, result, credit=credit)), log]
                    self.outputs = [str(base.with_suffix(".mp4")), str(base.with_suffix(".csv"))]
                self.stats = process_stream(
                    self.source, camera=self.camera, detector=self.detector, tracker=config.tracker.build(self.source.fps / config.every),
                    matcher=self.matcher, every=config.every, max_frames=config.max_frames,
                    start_time=self.start_time, on_frame=sinks, stop=self.stop,
                )
        except BaseException as exc:  # reported by the main thread; the other feeds stop
            self.error = exc
            self.outputs = []
            self.stop.set()


def _file_name(camera: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", camera).strip("._") or "camera"


# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m samples.multi_camera", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--video", action="append", required=True, help="a feed (file or URL); repeat for each camera")
    parser.add_argument("--camera", action="append", help="camera name, one per --video in the same order (default: file names)")
    parser.add_argument("--out-dir", help="write <camera>.mp4 (annotated) and <camera>.csv (identity log) here")
    parser.add_argument("--every", type=positive_int, default=1, help="process every N-th frame of each feed")
    parser.add_argument("--max-frames", type=positive_int, help="stop each feed after this many frames")
    parser.add_argument("--fps", type=float, help="frame rate, for feeds that do not state one")
    parser.add_argument("--credit", help="credit line drawn on the annotated videos (the Intel sample videos get theirs automatically)")
    add_model_arguments(parser)
    add_detector_arguments(parser, per_feed=True)
    return parser


def config_from_args(args: argparse.Namespace) -> MultiCameraConfig:
    return MultiCameraConfig(
        videos=tuple(args.video),
        cameras=tuple(args.camera) if args.camera else None,
        model=model_config_from_args(args),
        out_dir=args.out_dir,
        every=args.every,
        max_frames=args.max_frames,
        detectors=tuple(args.detector) if args.detector else ("hog",),
        hog=hog_config_from_args(args),
        tracker=tracker_config_from_args(args),
        fps=args.fps,
        credit=args.credit,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args_or_status(build_parser(), argv)
    if isinstance(args, int):
        return args
    quiet_native_logs()
    try:
        result = run_multi_camera(config_from_args(args), emit=lambda line: print(line, flush=True))
    except EXPECTED_ERRORS as exc:
        return report_error(exc)
    for line in result.lines:
        print(line)
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
