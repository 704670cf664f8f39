"""Who is in this video? Detect, track and re-identify people, and write an annotated video and a log.

::

    python -m samples.video_reid --video ../shared/data/videos/one-by-one-person-detection.mp4 \\
        --out annotated.mp4 --log identities.csv --save-gallery gallery.db
    python -m samples.video_reid --video people-detection.264 --model model.engine --every 2
    python -m samples.video_reid --video gate.mp4 --gallery known.db --no-auto-enroll   # known people by name

Frames are read with OpenCV (files, raw ``.264`` streams, ``rtsp://`` URLs), people found by
OpenCV's HOG detector (or ``--detector boxes:FILE``), tracked by IoU, and the crops of each
confirmed track matched by ``dslnet_edge.Matcher`` (track-level aggregation). The annotated
video holds the processed frames (every ``--every``-th, at ``fps / every``). The summary
gives the detector's ms per frame and the embedding ms per crop separately.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
import time
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
from samples.pipeline import FrameLog, StreamStats, annotate, check_log_destination, iter_summary_lines, process_stream
from samples.video import atomic_video_writer, check_video_destination, open_video

__all__ = ["VideoReidConfig", "VideoReidResult", "run_video_reid", "main"]


@dataclasses.dataclass(frozen=True)
class VideoReidConfig:
    """What ``python -m samples.video_reid`` does (see ``--help`` for each field)."""

    video: str
    model: ModelConfig = ModelConfig()
    out: str | None = None
    log: str | None = None
    every: int = 1
    max_frames: int | None = None
    camera: str | None = None
    detector: str = "hog"
    hog: HogConfig = HogConfig()
    tracker: TrackerConfig = TrackerConfig()
    fps: float | None = None
    credit: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be an integer >= 1, got {self.every!r}")
        if self.max_frames is not None and (isinstance(self.max_frames, bool) or not isinstance(self.max_frames, int) or self.max_frames < 1):
            raise ValueError(f"max_frames must be an integer >= 1 or None, got {self.max_frames!r}")
        if self.camera is not None and not self.camera.strip():
            raise ValueError("camera must be a non-empty name")

    @property
    def camera_name(self) -> str:
        return self.camera or Path(self.video).stem or "camera"


@dataclasses.dataclass(frozen=True)
class VideoReidResult:
    """What a run did: counts, times and where its outputs went."""

    stats: StreamStats
    embed_ms_per_crop: float
    crops_embedded: int
    gallery_identities: int
    frames_written: int
    out: str | None
    log: str | None
    saved_gallery: str | None
    credit: str | None
    lines: tuple[str, ...]


def run_video_reid(config: VideoReidConfig, *, detector: Detector | None = None) -> VideoReidResult:
    """Process one video per ``config``; outputs are written atomically when the run ends.

    ``detector``: any object with ``detect(frame, frame_index)`` (an ONNX or TensorRT person
    detector of your own, say) used instead of ``config.detector``.
    """
    if config.out is not None:
        check_video_destination(config.out)
    if config.log is not None:
        check_log_destination(config.log)
    check_run_outputs(
        {"annotated video": config.out, "log": config.log, "gallery": config.model.save_gallery},
        videos=[config.video], model=config.model, detectors=[] if detector is not None else [config.detector],
    )
    detector = detector if detector is not None else make_detector(config.detector, hog=config.hog)
    source = open_video(config.video, fps=config.fps)
    with source:
        tracker = config.tracker.build(source.fps / config.every)
        matcher, timed = build_matcher(config.model)
        camera = config.camera_name
        credit = credit_for(config.video, config.credit)
        meta = {
            "video": str(config.video),
            "camera": camera,
            "fps": source.fps,
            "every": config.every,
            "size": [source.width, source.height],
            "credit": credit,
        }
        sinks = []
        video_sink = log = None
        with contextlib.ExitStack() as outputs:  # an exception discards both outputs (atomic writes)
            if config.out is not None:
                size = (source.width, source.height)
                video_sink = outputs.enter_context(atomic_video_writer(config.out, source.fps / config.every, size))
                sinks.append(lambda result, frame: video_sink.write(annotate(frame, result, credit=credit)))
            if config.log is not None:
                log = outputs.enter_context(FrameLog(config.log, meta))
                sinks.append(log)
            stats = process_stream(
                source, camera=camera, detector=detector, tracker=tracker, matcher=matcher,
                every=config.every, max_frames=config.max_frames, on_frame=sinks,
            )
            if log is not None:
                log.summary = _summary_dict(stats, timed, len(matcher.gallery))
        saved = None
        if config.model.save_gallery is not None:
            saved = str(matcher.gallery.save(config.model.save_gallery, overwrite=False))
    lines = list(iter_summary_lines([stats], timed))
    lines.append(f"gallery: {len(matcher.gallery)} identities" + (f", saved to {saved}" if saved else ""))
    if config.out:
        lines.append(f"annotated video: {config.out} ({video_sink.frames_written} frames at {source.fps / config.every:g} fps)")
    if config.log:
        lines.append(f"log: {config.log}")
    if credit:
        lines.append(f"video credit: {credit}")
    return VideoReidResult(
        stats=stats,
        embed_ms_per_crop=timed.ms_per_crop,
        crops_embedded=timed.crops,
        gallery_identities=len(matcher.gallery),
        frames_written=video_sink.frames_written if video_sink is not None else 0,
        out=config.out,
        log=config.log,
        saved_gallery=saved,
        credit=credit,
        lines=tuple(lines),
    )


def _summary_dict(stats: StreamStats, timed, gallery_size: int) -> dict:
    def num(x):
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, 3)

    return {
        "frames_read": stats.frames_read,
        "frames_processed": stats.frames_processed,
        "detections": stats.detections,
        "crops_matched": stats.matched_crops,
        "identities": sorted(stats.identities),
        "new_identities": sorted(stats.new_identities),
        "detector_ms_per_frame": num(stats.detector_ms_per_frame),
        "embed_ms_per_crop": num(timed.ms_per_crop),
        "gallery_identities": gallery_size,
        "interrupted": stats.interrupted,
        "finished_at": time.time(),
    }


# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m samples.video_reid", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--video", required=True, help="video file (.mp4, .avi, raw .264, ...) or stream URL")
    parser.add_argument("--out", help="annotated video to write (.mp4, .avi, .mkv, .mov)")
    parser.add_argument("--log", help="identity log to write: .csv (one row per box), .json or .jsonl (one entry per frame)")
    parser.add_argument("--every", type=positive_int, default=1, help="process every N-th frame (default 1)")
    parser.add_argument("--max-frames", type=positive_int, help="stop after reading this many frames")
    parser.add_argument("--camera", help="camera name for the Matcher and the log (default: the video's file name)")
    parser.add_argument("--fps", type=float, help="frame rate, for videos that do not state one")
    parser.add_argument("--credit", help="credit line drawn on the annotated video (the Intel sample videos get theirs automatically)")
    add_model_arguments(parser)
    add_detector_arguments(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> VideoReidConfig:
    return VideoReidConfig(
        video=args.video,
        model=model_config_from_args(args),
        out=args.out,
        log=args.log,
        every=args.every,
        max_frames=args.max_frames,
        camera=args.camera,
        detector=args.detector,
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
        result = run_video_reid(config_from_args(args))
    except EXPECTED_ERRORS as exc:
        return report_error(exc)
    for line in result.lines:
        print(line)
    return 130 if result.stats.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
