"""Person detectors behind one tiny interface: ``detect(frame, frame_index=None) -> list[Box]``.

A detector takes one ``HxWx3`` uint8 BGR frame (as ``cv2.VideoCapture`` gives it) and returns
person boxes ``(x1, y1, x2, y2, score)`` in frame pixels, clipped to the frame, overlapping
duplicates removed. Three come with the samples:

* :class:`samples.yolox.YoloxDetector` (``--detector yolox:MODEL.onnx``, recommended): a YOLOX
  ONNX export run by ONNX Runtime (weights not included; see :mod:`samples.yolox`).

* :class:`HogDetector` (``--detector hog``, the default as it needs no download): OpenCV's HOG + linear SVM people
  detector (Dalal & Triggs, trained on INRIA pedestrians). Zero downloads, a few tens of ms per
  frame on a CPU, but only a baseline: it wants upright, whole people at least ~96 px tall in its
  working image, misses some poses and fires on some door frames. ``min_person_height`` sets the
  working scale. ``cv2.HOGDescriptor_getDefaultPeopleDetector`` was removed in OpenCV 5, which is
  why the project pins ``opencv-python-headless<5``.
* :class:`BoxesDetector` (``--detector boxes:FILE``): boxes read from a file, per frame index:
  ground truth for evaluation, or the output of a detector run elsewhere (a JSON file, or a
  MOTChallenge ``det.txt``/``gt.txt``).

Any object with a ``detect(frame, frame_index=None)`` method returning such boxes plugs into
the samples (an ONNX or TensorRT detector, for instance); :func:`check_boxes` validates, clips
and de-duplicates what it returns.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import cv2
import numpy as np

from dslnet_edge.errors import DslnetError

__all__ = [
    "Box",
    "Detector",
    "DetectorError",
    "HogConfig",
    "HogDetector",
    "BoxesDetector",
    "check_boxes",
    "clip_box",
    "nms",
    "box_iou",
]

#: HOG's detection window is 64x128 with the person about 96 px tall inside it.
_HOG_PERSON_HEIGHT = 96
#: Boxes smaller than this after clipping are dropped (nothing to re-identify in them).
MIN_BOX_WIDTH, MIN_BOX_HEIGHT = 4, 8


class DetectorError(DslnetError, ValueError):
    """A detector cannot be built or used (missing OpenCV feature, bad boxes file, bad box)."""


class Box(NamedTuple):
    """One person box in frame pixels; a plain tuple ``(x1, y1, x2, y2, score)`` with names."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def as_int(self) -> tuple[int, int, int, int]:
        """Pixel bounds for slicing a crop: ``frame[y1:y2, x1:x2]`` (rounded outwards)."""
        return (math.floor(self.x1), math.floor(self.y1), math.ceil(self.x2), math.ceil(self.y2))


@runtime_checkable
class Detector(Protocol):
    """What the samples need from a person detector."""

    def detect(self, frame: np.ndarray, frame_index: int | None = None) -> list[Box]:
        """Person boxes in ``frame`` (``frame_index``: its position in the video, for file-based detectors)."""
        ...


# ---------------------------------------------------------------------------------------------
# box maths (pure functions)
# ---------------------------------------------------------------------------------------------
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` [N,4] with every box in ``b`` [M,4] -> [N, M].

    >>> box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30]])).round(3)
    array([[0.333, 0.   ]])
    """
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    inter = _intersection(a, b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.4, containment: float | None = 0.8) -> list[int]:
    """Greedy non-maximum suppression; returns the indices kept, best score first.

    A box is suppressed when its IoU with a kept (higher-scoring) box exceeds ``iou_threshold``,
    or, with ``containment``, when that share of the smaller box's area lies inside the other (HOG
    often reports a person's upper body inside the whole-body box; their IoU alone can stay low).

    >>> nms(np.array([[0, 0, 10, 20], [1, 0, 11, 20], [30, 0, 40, 20]]), np.array([0.9, 0.8, 0.5]))
    [0, 2]
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"nms got {len(boxes)} boxes but {len(scores)} scores")
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    iou = box_iou(boxes, boxes)
    inter = _intersection(boxes, boxes)
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-12)
    keep: list[int] = []
    for i in order:
        if any(
            iou[i, k] > iou_threshold or (containment is not None and inter[i, k] / min(area[i], area[k]) >= containment)
            for k in keep
        ):
            continue
        keep.append(i)
    return keep


def clip_box(box: Sequence[float], width: int, height: int) -> Box | None:
    """``box`` clipped to a ``width`` x ``height`` frame; None when too little of it is left."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    score = float(box[4]) if len(box) > 4 else 1.0
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 - x1 < MIN_BOX_WIDTH or y2 - y1 < MIN_BOX_HEIGHT:
        return None
    return Box(x1, y1, x2, y2, score)


def check_boxes(
    boxes: Iterable[Sequence[float]],
    frame_shape: tuple[int, ...],
    *,
    iou_threshold: float = 0.4,
    containment: float | None = 0.8,
    source: str = "detector",
) -> list[Box]:
    """Validate raw boxes, clip them to the frame and remove duplicates (NMS); best score first.

    Raises ``DetectorError`` naming the box for anything that is not 4 or 5 finite numbers with
    ``x2 > x1`` and ``y2 > y1``.
    """
    height, width = int(frame_shape[0]), int(frame_shape[1])
    clipped = []
    for i, box in enumerate(boxes):
        values = _box_values(box, f"{source}: box {i}")
        kept = clip_box(values, width, height)
        if kept is not None:
            clipped.append(kept)
    if not clipped:
        return []
    keep = nms(np.array([b[:4] for b in clipped]), np.array([b.score for b in clipped]), iou_threshold, containment)
    return [clipped[i] for i in keep]


def _box_values(box: object, where: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in box)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise DetectorError(f"{where} is {box!r}; expected [x1, y1, x2, y2] or [x1, y1, x2, y2, score] numbers") from None
    if len(values) not in (4, 5):
        raise DetectorError(f"{where} has {len(values)} values; expected [x1, y1, x2, y2] or [x1, y1, x2, y2, score]")
    if not all(math.isfinite(v) for v in values):
        raise DetectorError(f"{where} contains NaN/inf: {list(values)}")
    if values[2] <= values[0] or values[3] <= values[1]:
        raise DetectorError(f"{where} is {list(values)}: x2 must exceed x1 and y2 must exceed y1 (corners, not x, y, w, h?)")
    return values


def _check_frame(frame: object) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        kind = f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise DetectorError(f"a frame must be an HxWx3 uint8 BGR array, got a {kind}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DetectorError(f"the frame is empty (shape {frame.shape})")
    return frame


# ---------------------------------------------------------------------------------------------
# HOG
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class HogConfig:
    """Settings of :class:`HogDetector`.

    Attributes:
        min_person_height: height in frame pixels of the smallest person to find. The frame is
            resized by ``96 / min_person_height`` before detection (HOG's window holds a ~96 px
            person), so a larger value is faster and finds only nearer people.
        hit_threshold: SVM margin a window needs to count (negative: more windows, which the
            grouping step then has to confirm).
        group_threshold: windows a detection needs around it, minus one (OpenCV's grouping).
        min_score: the best window score a grouped detection needs.
        win_stride: window step in pixels of the resized image (4 finds more, 8 is ~3x faster).
        pyramid_scale: step between image pyramid levels.
        nms_iou, nms_containment: duplicate removal, see :func:`nms`.
    """

    min_person_height: int = 128
    hit_threshold: float = -0.5
    group_threshold: int = 2
    min_score: float = 0.0
    win_stride: int = 8
    pyramid_scale: float = 1.05
    nms_iou: float = 0.4
    nms_containment: float | None = 0.8

    def __post_init__(self) -> None:
        if isinstance(self.min_person_height, bool) or not isinstance(self.min_person_height, int) or self.min_person_height < 48:
            raise DetectorError(f"min_person_height must be an integer >= 48 pixels, got {self.min_person_height!r}")
        if isinstance(self.win_stride, bool) or not isinstance(self.win_stride, int) or self.win_stride < 1 or self.win_stride > 64:
            raise DetectorError(f"win_stride must be an integer in [1, 64] pixels, got {self.win_stride!r}")
        if isinstance(self.group_threshold, bool) or not isinstance(self.group_threshold, int) or self.group_threshold < 0:
            raise DetectorError(f"group_threshold must be an integer >= 0, got {self.group_threshold!r}")
        if not (1.0 < self.pyramid_scale <= 2.0):
            raise DetectorError(f"pyramid_scale must be in (1, 2], got {self.pyramid_scale!r}")
        for name in ("hit_threshold", "min_score"):
            if not math.isfinite(getattr(self, name)):
                raise DetectorError(f"{name} must be a finite number, got {getattr(self, name)!r}")
        if not (0.0 < self.nms_iou <= 1.0):
            raise DetectorError(f"nms_iou must be in (0, 1], got {self.nms_iou!r}")
        if self.nms_containment is not None and not (0.0 < self.nms_containment <= 1.0):
            raise DetectorError(f"nms_containment must be in (0, 1] or None, got {self.nms_containment!r}")

    @property
    def resize(self) -> float:
        """Factor applied to the frame before detection."""
        return _HOG_PERSON_HEIGHT / self.min_person_height


def hog_people_svm() -> np.ndarray:
    """OpenCV's default people SVM; ``DetectorError`` when this OpenCV build lacks it (OpenCV 5+)."""
    getter = getattr(cv2, "HOGDescriptor_getDefaultPeopleDetector", None)
    if getter is None or not hasattr(cv2, "HOGDescriptor"):
        raise DetectorError(
            f"OpenCV {cv2.__version__} has no HOG people detector (cv2.HOGDescriptor_getDefaultPeopleDetector, "
            "removed in OpenCV 5): install opencv-python-headless<5 (pip install 'opencv-python-headless>=4.8,<5'), "
            "or pass boxes from another detector with --detector boxes:FILE"
        )
    return getter()


class HogDetector:
    """OpenCV's HOG people detector with working-scale control, NMS and clipping.

    One instance per thread: a ``cv2.HOGDescriptor`` is cheap to build, and separate instances
    keep camera threads independent.
    """

    def __init__(self, config: HogConfig | None = None):
        self.config = config or HogConfig()
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(hog_people_svm())

    def detect(self, frame: np.ndarray, frame_index: int | None = None) -> list[Box]:
        frame = _check_frame(frame)
        cfg = self.config
        factor = cfg.resize
        image = frame if factor == 1.0 else cv2.resize(frame, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        if image.shape[0] < 128 or image.shape[1] < 64:  # smaller than one window: nobody to find
            return []
        rects, weights = self._hog.detectMultiScale(
            image,
            hitThreshold=cfg.hit_threshold,
            winStride=(cfg.win_stride, cfg.win_stride),
            padding=(8, 8),
            scale=cfg.pyramid_scale,
            groupThreshold=cfg.group_threshold,
        )
        weights = np.ravel(weights) if len(rects) else np.zeros(0)
        boxes = [
            ((x / factor), (y / factor), (x + w) / factor, (y + h) / factor, float(s))
            for (x, y, w, h), s in zip(np.asarray(rects).reshape(-1, 4).tolist(), weights.tolist())
            if s >= cfg.min_score
        ]
        return check_boxes(boxes, frame.shape, iou_threshold=cfg.nms_iou, containment=cfg.nms_containment, source="HOG")

    def __repr__(self) -> str:
        return f"HogDetector({self.config})"


# ---------------------------------------------------------------------------------------------
# boxes from a file
# ---------------------------------------------------------------------------------------------
class BoxesDetector:
    """Person boxes read from a file, looked up by frame index (ground truth, or another detector's output).

    Formats (by suffix):

    * ``.json``: ``{"frames": {"0": [[x1, y1, x2, y2], [x1, y1, x2, y2, score], ...], "1": [...]}}``
      (0-based frame indices of the video; frames not listed have no boxes). A list of lists
      (one per frame, from frame 0) is accepted for ``"frames"`` too.
    * ``.txt``/``.csv``: MOTChallenge rows ``frame, id, left, top, width, height[, score, ...]``
      with 1-based frames (as in ``det.txt``/``gt.txt``); the ``id`` column is ignored (the
      samples' tracker assigns track ids).

    Boxes are clipped to each frame and de-duplicated like any detector's (:func:`check_boxes`);
    ``nms_iou=1.0, nms_containment=None`` (the default here) keeps overlapping ground-truth boxes.
    """

    def __init__(self, path: str | os.PathLike, *, nms_iou: float = 1.0, nms_containment: float | None = None):
        self.path = Path(path)
        self.nms_iou, self.nms_containment = nms_iou, nms_containment
        if not self.path.exists():
            raise DetectorError(f"boxes file {self.path} does not exist")
        if not self.path.is_file():
            raise DetectorError(f"boxes file {self.path} is not a file")
        suffix = self.path.suffix.lower()
        if suffix == ".json":
            self._frames = _read_boxes_json(self.path)
        elif suffix in (".txt", ".csv"):
            self._frames = _read_boxes_mot(self.path)
        else:
            raise DetectorError(f"boxes file {self.path}: unknown format {suffix or '(no suffix)'!r}; expected .json or MOTChallenge .txt/.csv")

    @property
    def num_frames_with_boxes(self) -> int:
        return sum(1 for boxes in self._frames.values() if boxes)

    def detect(self, frame: np.ndarray, frame_index: int | None = None) -> list[Box]:
        frame = _check_frame(frame)
        if frame_index is None:
            raise DetectorError(f"BoxesDetector({self.path}) looks boxes up by frame index: call detect(frame, frame_index)")
        boxes = self._frames.get(int(frame_index), [])
        return check_boxes(boxes, frame.shape, iou_threshold=self.nms_iou, containment=self.nms_containment, source=f"{self.path} frame {frame_index}")

    def __repr__(self) -> str:
        return f"BoxesDetector({str(self.path)!r}, {len(self._frames)} frames)"


def _read_boxes_json(path: Path) -> dict[int, list[tuple[float, ...]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DetectorError(f"boxes file {path} is not valid JSON: {exc}") from None
    frames = data.get("frames") if isinstance(data, dict) else None
    if isinstance(frames, list):
        frames = {str(i): boxes for i, boxes in enumerate(frames)}
    if not isinstance(frames, dict):
        raise DetectorError(f'boxes file {path} must hold {{"frames": {{"<frame index>": [[x1, y1, x2, y2, score?], ...]}}}}')
    out: dict[int, list[tuple[float, ...]]] = {}
    for key, boxes in frames.items():
        try:
            index = int(key)
        except ValueError:
            raise DetectorError(f"boxes file {path}: frame key {key!r} is not a frame index (0, 1, 2, ...)") from None
        if index < 0:
            raise DetectorError(f"boxes file {path}: frame index {index} is negative")
        if not isinstance(boxes, list):
            raise DetectorError(f"boxes file {path}: frame {index} holds {type(boxes).__name__}; expected a list of boxes")
        out[index] = [_box_values(b, f"boxes file {path}: frame {index} box {i}") for i, b in enumerate(boxes)]
    return out


def _read_boxes_mot(path: Path) -> dict[int, list[tuple[float, ...]]]:
    out: dict[int, list[tuple[float, ...]]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DetectorError(f"boxes file {path} is not text (expected MOTChallenge rows)") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        try:
            values = [float(f) for f in fields[:7]]
        except ValueError:
            raise DetectorError(f"boxes file {path} line {number}: {line.strip()!r} is not 'frame, id, left, top, width, height[, score]' numbers") from None
        if len(values) < 6:
            raise DetectorError(f"boxes file {path} line {number}: {len(values)} columns; MOTChallenge rows have at least 6")
        frame, _, left, top, width, height = values[:6]
        if frame < 1 or frame != int(frame):
            raise DetectorError(f"boxes file {path} line {number}: frame {frame:g} is not a 1-based frame number")
        score = values[6] if len(values) > 6 else 1.0
        box = _box_values((left, top, left + width, top + height, score), f"boxes file {path} line {number}")
        out.setdefault(int(frame) - 1, []).append(box)
    return out
