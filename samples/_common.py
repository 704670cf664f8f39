"""Setup shared by the sample programs: model, gallery and Matcher; detector and tracker options.

Everything that can fail because of a user's input (model path, gallery file, output paths) is
checked here *before* a video is processed, so a typo costs a second, not a whole video.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path

from samples.detect import HogConfig

__all__ = [
    "ModelConfig",
    "TrackerConfig",
    "KNOWN_CREDITS",
    "credit_for",
    "build_matcher",
    "check_gallery_destination",
    "check_outputs_are_not_inputs",
    "check_run_outputs",
    "add_model_arguments",
    "add_detector_arguments",
    "model_config_from_args",
    "hog_config_from_args",
    "tracker_config_from_args",
    "positive_int",
    "similarity_value",
]

#: Credit lines drawn on (and logged with) every output made from these sample videos. Other
#: videos get ``--credit TEXT`` if their licence asks for one.
KNOWN_CREDITS = {
    "one-by-one-person-detection.mp4": "Intel IoT devkit sample videos, CC BY 4.0",
    "people-detection.264": "Intel IoT devkit sample videos, CC BY 4.0",
}


def credit_for(video: str, explicit: str | None = None) -> str | None:
    """``explicit`` if given, else the known credit line of ``video``'s file name (None if unknown)."""
    if explicit is not None:
        return explicit or None
    return KNOWN_CREDITS.get(Path(str(video)).name)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which model embeds the crops and how crops become identities.

    Attributes:
        model: ``.onnx``/``.engine``/``.pt`` file; None = the bundled demo ONNX (``dslnet_edge.Engine()``).
        device: backend device (``cpu``, ``cuda``, ...); None = the backend's default.
        gallery: a gallery file to start from (from ``samples.enroll`` or an earlier run); must exist.
        save_gallery: where to write the gallery at the end (may be ``gallery``); None = not saved.
        threshold: cosine similarity needed to match an identity; None = the Matcher's default.
        auto_enroll: enrol unmatched people as new identities (else report them unknown).
        min_track_crops: good crops a track needs before it is matched or enrolled (see
            ``Matcher(min_track_crops=)`` and :class:`samples.pipeline.CropQuality`).
    """

    model: str | None = None
    device: str | None = None
    gallery: str | None = None
    save_gallery: str | None = None
    threshold: float | None = None
    auto_enroll: bool = True
    min_track_crops: int = 5

    def __post_init__(self) -> None:
        if isinstance(self.min_track_crops, bool) or not isinstance(self.min_track_crops, int) or self.min_track_crops < 1:
            raise ValueError(f"min_track_crops must be an integer >= 1, got {self.min_track_crops!r}")
        if self.threshold is not None and not (math.isfinite(self.threshold) and -1.0 <= self.threshold <= 1.0):
            raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {self.threshold!r}")


@dataclasses.dataclass(frozen=True)
class TrackerConfig:
    """Which tracker and its settings (:class:`samples.tracking.ByteTracker`, :class:`samples.tracking.IouTracker`).

    ``max_age``: processed frames a lost track is kept; None = the tracker's default (ByteTrack:
    one second; IoU tracker: 5 frames). ``iou_threshold``: None = the tracker's default.
    """

    kind: str = "bytetrack"
    iou_threshold: float | None = None
    max_age: int | None = None
    min_hits: int = 2

    def __post_init__(self) -> None:
        from samples.tracking import TRACKERS

        if self.kind not in TRACKERS:
            raise ValueError(f"unknown tracker {self.kind!r}; choose one of {sorted(TRACKERS)}")

    def build(self, frame_rate: float = 30.0):
        """A new tracker for one camera whose processed frames come at ``frame_rate`` per second."""
        from samples.tracking import ByteTracker, IouTracker

        if self.kind == "iou":
            return IouTracker(0.3 if self.iou_threshold is None else self.iou_threshold, 5 if self.max_age is None else self.max_age, self.min_hits)
        extra = {} if self.iou_threshold is None else {"iou_threshold": self.iou_threshold}
        return ByteTracker(frame_rate, self.max_age, self.min_hits, **extra)


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    if "://" in str(a) or "://" in str(b):
        return False
    pa, pb = Path(a), Path(b)
    try:
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)  # symlinks and hard links too
        return pa.resolve() == pb.resolve()
    except (OSError, ValueError):
        return False


def check_outputs_are_not_inputs(outputs: dict[str, str | os.PathLike | None], inputs: dict[str, str | os.PathLike | None]) -> None:
    """``ValueError`` before any work when an output would overwrite an input, or another output.

    ``outputs``/``inputs`` map a description ("annotated video", "--video") to a path (None: not
    given). ``samples.video_reid --video x.mp4 --out x.mp4`` would otherwise replace the video
    it reads with its annotated copy.
    """
    given_out = [(what, p) for what, p in outputs.items() if p is not None]
    given_in = [(what, p) for what, p in inputs.items() if p is not None]
    for what, out in given_out:
        for source, inp in given_in:
            if _same_file(out, inp):
                raise ValueError(f"refusing to write the {what} to {out}: it is the {source} this run reads ({inp}); choose another output path")
    for i, (what, out) in enumerate(given_out):
        for other, out2 in given_out[i + 1 :]:
            if _same_file(out, out2):
                raise ValueError(f"the {what} and the {other} would both be written to {out}; give them different paths")


def check_run_outputs(outputs: dict[str, str | os.PathLike | None], *, videos, model: ModelConfig, detectors=()) -> None:
    """:func:`check_outputs_are_not_inputs` for a sample run: its videos, model, gallery and detector files.

    Saving the gallery back into the ``--gallery`` file it started from is allowed (that is how
    a gallery grows).
    """
    inputs: dict[str, str | os.PathLike | None] = {}
    videos = list(videos)
    for i, video in enumerate(videos):
        inputs["input video" if len(videos) == 1 else f"input video {i + 1}"] = video
    inputs["re-ID model"] = model.model
    if model.save_gallery is None or model.gallery is None or not _same_file(model.save_gallery, model.gallery):
        inputs["--gallery file"] = model.gallery
    for spec in detectors:
        kind, _, path = str(spec).partition(":")
        if kind in ("boxes", "yolox") and path:
            inputs[f"{kind} detector's file"] = path if kind == "boxes" or os.path.isfile(path) else path.split(",")[0]
    check_outputs_are_not_inputs(outputs, inputs)


def check_gallery_destination(path: str | os.PathLike | None, loaded_from: str | None) -> None:
    """Refuse, before any work, a ``--save-gallery`` destination that ``Gallery.save`` would refuse at the end."""
    if path is None:
        return
    from dslnet_edge.gallery import Gallery, GalleryFileError

    p = Path(path)
    if p.is_dir():
        raise GalleryFileError(f"gallery destination {p} is a directory; expected a file such as gallery.db")
    if loaded_from is not None and p.exists() and p.resolve() == Path(loaded_from).resolve():
        return
    if p.is_file() and p.stat().st_size > 0:
        try:
            Gallery.load(p)
        except GalleryFileError as exc:
            raise GalleryFileError(f"refusing to overwrite {p} with a gallery: {exc}") from None


def build_matcher(config: ModelConfig):
    """``(Matcher, TimedEngine)`` for ``config``: engine loaded, gallery read, destination checked."""
    from dslnet_edge import Engine, Gallery, Matcher
    from dslnet_edge.gallery import GalleryError
    from dslnet_edge.matcher import DEFAULT_THRESHOLD
    from samples.pipeline import TimedEngine

    gallery = None
    if config.gallery is not None:
        gallery = Gallery.load(config.gallery)  # FileNotFoundError / GalleryFileError naming the file
    if not config.auto_enroll and (gallery is None or len(gallery) == 0):
        where = f"gallery {config.gallery} is empty" if gallery is not None else "no --gallery was given"
        raise GalleryError(
            f"--no-auto-enroll reports only people already in the gallery, but {where}: "
            "enrol known people first (python -m samples.enroll --crops DIR --gallery gallery.db)"
        )
    check_gallery_destination(config.save_gallery, config.gallery)
    engine = Engine(config.model, device=config.device)
    timed = TimedEngine(engine)
    threshold = DEFAULT_THRESHOLD if config.threshold is None else config.threshold
    matcher = Matcher(timed, gallery, threshold=threshold, auto_enroll=config.auto_enroll, min_track_crops=config.min_track_crops)
    return matcher, timed


# ---------------------------------------------------------------------------------------------
# argparse helpers
# ---------------------------------------------------------------------------------------------
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def similarity_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a cosine similarity in [-1, 1], got {text!r}") from None
    if not (math.isfinite(value) and -1.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"expected a cosine similarity in [-1, 1], got {text!r}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model and gallery")
    g.add_argument("--model", help="re-ID model: .onnx (ONNX Runtime), .engine (TensorRT) or .pt (PyTorch); default: the bundled demo ONNX")
    g.add_argument("--device", help="cpu, cuda, cuda:N, tensorrt (default: the backend's own)")
    g.add_argument("--gallery", help="start from this gallery file (from samples.enroll or an earlier --save-gallery)")
    g.add_argument("--save-gallery", metavar="PATH", help="write the gallery here at the end (may be the --gallery file)")
    g.add_argument("--threshold", type=similarity_value, help="cosine similarity needed to match an identity (default: the Matcher's)")
    g.add_argument("--no-auto-enroll", dest="auto_enroll", action="store_false",
                   help="report people not in the gallery as unknown instead of enrolling them")
    g.add_argument("--min-track-crops", type=positive_int, default=ModelConfig.min_track_crops,
                   help="good crops (whole, tall, confident) a track needs before it is matched or enrolled (default %(default)s)")


def add_detector_arguments(parser: argparse.ArgumentParser, *, per_feed: bool = False) -> None:
    """Detector and tracker options; ``per_feed``: ``--detector`` may repeat, once per ``--video``."""
    g = parser.add_argument_group("detection and tracking")
    what = (
        "'yolox:MODEL.onnx[,score=0.1,input=HxW,norm=raw|imagenet]' (a YOLOX ONNX export, recommended), "
        "'hog' (OpenCV's HOG people detector, no download), 'hog:min_person_height=192,win_stride=4' (HOG with those "
        "settings) or 'boxes:FILE' (per-frame boxes, JSON or MOTChallenge)"
    )
    if per_feed:
        g.add_argument("--detector", action="append", help=what + "; once for all feeds or once per --video (default hog)")
    else:
        g.add_argument("--detector", default="hog", help=what + " (default %(default)s)")
    g.add_argument("--min-person-height", type=positive_int, default=HogConfig.min_person_height,
                   help="HOG: smallest person to find, in frame pixels (larger is faster; default %(default)s)")
    g.add_argument("--hog-stride", type=positive_int, default=HogConfig.win_stride, help="HOG: window step in pixels (4 finds more, 8 is faster; default %(default)s)")
    g.add_argument("--tracker", choices=("bytetrack", "iou"), default=TrackerConfig.kind,
                   help="ByteTrack (trackers package) or the dependency-free IoU tracker (default %(default)s)")
    g.add_argument("--min-hits", type=positive_int, default=TrackerConfig.min_hits,
                   help="detections before a track is matched (default %(default)s; 1 = at once)")
    g.add_argument("--max-age", type=int, default=None,
                   help="processed frames a lost track is kept (default: ByteTrack one second, IoU tracker 5)")


def model_config_from_args(args: argparse.Namespace) -> ModelConfig:
    return ModelConfig(args.model, args.device, args.gallery, args.save_gallery, args.threshold, args.auto_enroll, args.min_track_crops)


def hog_config_from_args(args: argparse.Namespace) -> HogConfig:
    return HogConfig(min_person_height=args.min_person_height, win_stride=args.hog_stride)


def tracker_config_from_args(args: argparse.Namespace) -> TrackerConfig:
    if args.max_age is not None and args.max_age < 0:
        raise ValueError(f"--max-age must be >= 0, got {args.max_age}")
    return TrackerConfig(kind=args.tracker, max_age=args.max_age, min_hits=args.min_hits)
