"""YOLOX person detector from an ONNX export (``--detector yolox:PATH``), run by ONNX Runtime.

YOLOX (Ge et al., "YOLOX: Exceeding YOLO Series in 2021", arXiv:2107.08430; Megvii, Apache-2.0)
is an anchor-free detector; its ONNX export (``tools/export_onnx.py``) takes one letterboxed
image and, by default, returns the *raw* head output ``[1, A, 5 + C]`` per anchor point ``A``
of the stride 8, 16 and 32 grids: ``(dx, dy, log w, log h, objectness, class scores...)``, the
last two already through a sigmoid. This module does what YOLOX's ``demo/ONNXRuntime`` does:

1. **letterbox**: resize by ``r = min(H / h, W / w)`` (aspect kept), place the image at the top
   left of an ``H x W`` canvas filled with 114, as YOLOX's ``preproc`` does;
2. **normalize** as the weights were trained: the official COCO models take raw 0-255 BGR;
   ByteTrack's YOLOX models take RGB ``/255`` with ImageNet mean and std;
3. **decode** the grids: ``x = (dx + gx) * s``, ``w = exp(log w) * s`` (skipped when the export
   already decodes, ``--decode_in_inference``; detected from the output's magnitudes);
4. score = objectness x person-class score; boxes back to frame pixels (``/ r``), NMS.

What the file does not say is given as options, ``yolox:PATH,key=value,...``:

* ``input=HxW`` for a graph with a dynamic input size (otherwise read from the ONNX input shape);
* ``norm=raw`` (0-255 BGR) or ``norm=imagenet`` (RGB /255, ImageNet mean/std); default: read
  from the ONNX metadata keys ``yolox.norm`` when present, else ``imagenet`` for a one-class
  model (ByteTrack's person detectors) and ``raw`` for the multi-class COCO models;
* ``person=K``: the person class index (default 0, as in COCO and the one-class models);
* ``score=S`` (default 0.1: low-score boxes are kept for ByteTrack's second association stage;
  the pipeline matches only confident, whole crops), ``nms=IOU`` (default 0.45, YOLOX's);
* ``device=cpu|cuda|tensorrt`` (ONNX Runtime execution providers), ``threads=N``.

The weights are not part of the project: the YOLOX ONNX models are published with YOLOX's
releases (https://github.com/Megvii-BaseDetection/YOLOX, "Standard Models" / ONNX demo), and
ByteTrack's person-only models with ByteTrack (https://github.com/ifzhang/ByteTrack).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import cv2
import numpy as np

from samples.detect import Box, DetectorError, _check_frame, check_boxes

__all__ = ["YoloxConfig", "YoloxDetector", "letterbox", "decode_grids", "parse_yolox_spec", "NORMALIZATIONS"]

#: YOLOX's letterbox fill value.
PAD_VALUE = 114
STRIDES = (8, 16, 32)
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
#: name -> (channel order, what it means)
NORMALIZATIONS = {
    "raw": "BGR 0-255 (official YOLOX COCO exports)",
    "imagenet": "RGB /255 with ImageNet mean/std (ByteTrack's YOLOX person models)",
}
METADATA_NORM_KEY = "yolox.norm"


@dataclasses.dataclass(frozen=True)
class YoloxConfig:
    """Settings of :class:`YoloxDetector` (see the module docstring for each option)."""

    path: str
    input_size: tuple[int, int] | None = None  # (height, width); None = from the ONNX
    norm: str | None = None  # None = metadata, else by class count
    person_class: int = 0
    score: float = 0.1
    nms_iou: float = 0.45
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.input_size is not None:
            h, w = self.input_size
            if not all(isinstance(v, int) and v > 0 and v % 32 == 0 for v in (h, w)):
                raise DetectorError(f"YOLOX input size must be HxW with multiples of 32, got {h}x{w}")
        if self.norm is not None and self.norm not in NORMALIZATIONS:
            raise DetectorError(f"YOLOX norm must be one of {sorted(NORMALIZATIONS)}, got {self.norm!r}")
        if isinstance(self.person_class, bool) or not isinstance(self.person_class, int) or self.person_class < 0:
            raise DetectorError(f"YOLOX person class must be an integer >= 0, got {self.person_class!r}")
        if not (0.0 < self.score < 1.0):
            raise DetectorError(f"YOLOX score threshold must be in (0, 1), got {self.score!r}")
        if not (0.0 < self.nms_iou <= 1.0):
            raise DetectorError(f"YOLOX nms IoU must be in (0, 1], got {self.nms_iou!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0):
            raise DetectorError(f"YOLOX threads must be an integer >= 0, got {self.threads!r}")


# ---------------------------------------------------------------------------------------------
# pure steps
# ---------------------------------------------------------------------------------------------
def letterbox(frame: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """``frame`` resized into an ``size = (H, W)`` canvas of 114s at the top left; returns (image, ratio).

    >>> img, r = letterbox(np.zeros((100, 200, 3), np.uint8), (64, 64))
    >>> img.shape, r, int(img[40, 0, 0]), int(img[10, 10, 0])
    ((64, 64, 3), 0.32, 114, 0)
    """
    height, width = size
    ratio = min(height / frame.shape[0], width / frame.shape[1])
    new_w, new_h = max(1, int(frame.shape[1] * ratio)), max(1, int(frame.shape[0] * ratio))
    canvas = np.full((height, width, 3), PAD_VALUE, np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas, ratio


def to_tensor(image: np.ndarray, norm: str) -> np.ndarray:
    """A letterboxed BGR uint8 image -> ``1x3xHxW`` float32 as the weights expect (``norm``)."""
    if norm == "raw":
        chw = image.transpose(2, 0, 1).astype(np.float32)
    elif norm == "imagenet":
        rgb = image[:, :, ::-1].astype(np.float32) / 255.0
        chw = ((rgb - _IMAGENET_MEAN) / _IMAGENET_STD).transpose(2, 0, 1)
    else:
        raise DetectorError(f"unknown YOLOX normalization {norm!r}; expected one of {sorted(NORMALIZATIONS)}")
    return np.ascontiguousarray(chw[None])


def grid_points(size: tuple[int, int], strides: tuple[int, ...] = STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """The anchor points of YOLOX's grids for an input ``(H, W)``: ``(xy [A, 2], stride [A, 1])``, row-major per stride.

    >>> xy, s = grid_points((64, 64))
    >>> xy.shape, s.shape, xy[:3].tolist(), int(s[-1, 0])
    ((84, 2), (84, 1), [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]], 32)
    """
    height, width = size
    grids, steps = [], []
    for stride in strides:
        gh, gw = height // stride, width // stride
        ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        grids.append(np.stack([xs, ys], -1).reshape(-1, 2))
        steps.append(np.full((gh * gw, 1), stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(steps).astype(np.float32)


def decode_grids(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Raw YOLOX head output ``[A, 5 + C]`` -> ``(cx, cy, w, h, ...)`` in input pixels (scores untouched)."""
    xy, stride = grid_points(size)
    if raw.shape[0] != len(xy):
        raise DetectorError(
            f"YOLOX output has {raw.shape[0]} anchor points, but an input of {size[0]}x{size[1]} at strides "
            f"{STRIDES} has {len(xy)}: the input size does not match the model (give input=HxW)"
        )
    out = raw.astype(np.float32, copy=True)
    out[:, :2] = (out[:, :2] + xy) * stride
    out[:, 2:4] = np.exp(np.minimum(out[:, 2:4], 20.0)) * stride
    return out


def looks_decoded(raw: np.ndarray) -> bool:
    """Whether an output is already in pixels (an export with ``--decode_in_inference``).

    Raw outputs hold ``log(w / stride)``, a few units at most; decoded ones hold widths in pixels,
    of which the largest is always far above that.
    """
    return bool(raw.shape[0] and float(np.max(raw[:, 2:4])) > 20.0)


def person_boxes(decoded: np.ndarray, person_class: int, score: float) -> tuple[np.ndarray, np.ndarray]:
    """``(xyxy [N, 4], scores [N])`` of the person class above ``score`` from decoded rows."""
    num_classes = decoded.shape[1] - 5
    if not 0 <= person_class < num_classes:
        raise DetectorError(f"YOLOX person class {person_class} does not exist: the model has {num_classes} classes")
    scores = decoded[:, 4] * decoded[:, 5 + person_class]
    keep = scores >= score
    cx, cy, w, h = (decoded[keep, k] for k in range(4))
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    return xyxy, scores[keep]


# ---------------------------------------------------------------------------------------------
class YoloxDetector:
    """Person boxes from a YOLOX ONNX model (ONNX Runtime); one instance may serve several threads."""

    def __init__(self, config: YoloxConfig):
        self.config = config
        path = Path(config.path)
        if not path.is_file():
            raise DetectorError(f"YOLOX model {path} does not exist" if not path.exists() else f"YOLOX model {path} is not a file")
        import onnxruntime as ort

        from dslnet_edge.backends.onnxruntime_backend import providers_for_device

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if config.threads is not None:
            options.intra_op_num_threads = config.threads
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers_for_device(config.device))
        except Exception as exc:  # ORT raises its own exception classes
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DetectorError(f"YOLOX model {path} could not be loaded by ONNX Runtime (not ONNX, or truncated?): {first}") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 4 or len(outputs[0].shape) != 3:
            raise DetectorError(
                f"YOLOX model {path}: expected one NCHW image input and one [1, anchors, 5 + classes] output, found inputs "
                f"{[(i.name, i.shape) for i in inputs]} and outputs {[(o.name, o.shape) for o in outputs]}"
            )
        self._input = inputs[0].name
        self.input_size = config.input_size or _static_size(inputs[0].shape, path)
        classes = outputs[0].shape[2]
        self.num_classes = classes - 5 if isinstance(classes, int) else None
        if self.num_classes is not None and not 0 <= config.person_class < self.num_classes:
            raise DetectorError(f"YOLOX model {path} has {self.num_classes} classes; person class {config.person_class} does not exist")
        metadata = self._session.get_modelmeta().custom_metadata_map
        self.norm = config.norm or metadata.get(METADATA_NORM_KEY) or ("imagenet" if self.num_classes == 1 else "raw")
        if self.norm not in NORMALIZATIONS:
            raise DetectorError(f"YOLOX model {path}: metadata {METADATA_NORM_KEY}={self.norm!r} is not one of {sorted(NORMALIZATIONS)}")
        self._decoded: bool | None = None

    def detect(self, frame: np.ndarray, frame_index: int | None = None) -> list[Box]:
        frame = _check_frame(frame)
        image, ratio = letterbox(frame, self.input_size)
        (raw,) = self._session.run(None, {self._input: to_tensor(image, self.norm)})
        raw = np.asarray(raw)[0]
        if self._decoded is None:
            self._decoded = looks_decoded(raw)
        decoded = raw if self._decoded else decode_grids(raw, self.input_size)
        xyxy, scores = person_boxes(decoded, self.config.person_class, self.config.score)
        boxes = np.concatenate([xyxy / ratio, scores[:, None]], 1)
        return check_boxes(boxes.tolist(), frame.shape, iou_threshold=self.config.nms_iou, containment=None, source="YOLOX")

    def __repr__(self) -> str:
        return f"YoloxDetector({self.config.path!r}, input={self.input_size[0]}x{self.input_size[1]}, norm={self.norm})"


def _static_size(shape: list, path: Path) -> tuple[int, int]:
    height, width = shape[2], shape[3]
    if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
        raise DetectorError(f"YOLOX model {path} has a dynamic input size {shape}; give it as yolox:{path},input=HxW")
    return height, width


# ---------------------------------------------------------------------------------------------
_OPTIONS = ("input", "norm", "person", "score", "nms", "device", "threads")


def parse_yolox_spec(text: str) -> YoloxConfig:
    """``PATH[,key=value,...]`` (the part after ``yolox:``) -> :class:`YoloxConfig`.

    >>> parse_yolox_spec("m.onnx,score=0.3,input=608x1088").input_size
    (608, 1088)
    """
    if os.path.isfile(text):  # a path that itself contains commas
        return YoloxConfig(text)
    path, *items = text.split(",")
    if not path:
        raise DetectorError("--detector yolox: needs an ONNX file, e.g. --detector yolox:yolox_nano.onnx")
    kwargs: dict = {}
    for item in filter(None, (i.strip() for i in items)):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in _OPTIONS:
            raise DetectorError(f"--detector yolox:{text}: {item!r} is not KEY=VALUE with KEY one of {list(_OPTIONS)}")
        value = value.strip()
        try:
            if key == "input":
                h, _, w = value.lower().partition("x")
                kwargs["input_size"] = (int(h), int(w))
            elif key in ("person", "threads"):
                kwargs["person_class" if key == "person" else key] = int(value)
            elif key in ("score", "nms"):
                number = float(value)
                if not math.isfinite(number):
                    raise ValueError
                kwargs["score" if key == "score" else "nms_iou"] = number
            else:
                kwargs[key] = value
        except ValueError:
            raise DetectorError(f"--detector yolox:{text}: {key}={value!r} is not a valid value") from None
    return YoloxConfig(path, **kwargs)
