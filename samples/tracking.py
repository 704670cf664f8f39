"""Trackers behind one small interface: detections of consecutive frames -> track ids.

Two come with the samples, both with ``update(boxes) -> list[TrackedBox]`` (one per box, in
the order given), ``reset()`` and ``num_started``, so any other tracker plugs in the same way:

* :class:`ByteTracker` (``--tracker bytetrack``, the default): ByteTrack (Zhang et al.,
  "ByteTrack: Multi-Object Tracking by Associating Every Detection Box", ECCV 2022) from
  Roboflow's maintained ``trackers`` package (Apache-2.0): Kalman-predicted boxes, Hungarian
  IoU association of the confident detections first, then of the low-score ones, so a person
  whose score dips under occlusion keeps the track. Install it with ``--no-deps`` (see
  README): it declares ``opencv-python``, which must not sit beside the project's
  ``opencv-python-headless`` (two packages writing one ``cv2``).
* :class:`IouTracker` (``--tracker iou``): the dependency-free IoU tracker below.

The IoU tracker:

The Matcher aggregates a person's crops over a track (a running mean of the embeddings), so one
blurred or half-occluded crop does not flip an identity; it needs a stable ``track_id`` per
person and camera. This tracker gives one with the classic IoU recipe (as in Bochinski et al.,
"High-Speed Tracking-by-Detection Without Using Image Information", AVSS 2017, plus SORT's
max-age and min-hits rules):

1. every live track predicts its box (its last box moved by its centre's velocity);
2. (track, detection) pairs with IoU >= ``iou_threshold`` are taken greedily, best IoU first,
   each track and detection at most once;
3. a detection left over starts a new track (ids 1, 2, 3, ... never reused);
4. a track not matched for more than ``max_age`` consecutive updates is dropped.

A track is *confirmed* once it has ``min_hits`` detections: the samples send only confirmed
tracks' crops to the Matcher, so a one-frame false detection does not enrol a new identity.
No appearance model: an occlusion longer than ``max_age`` frames, or two people crossing,
can swap or restart ids; the Matcher's gallery then re-identifies the person anyway.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from dslnet_edge.errors import MissingDependencyError
from samples.detect import Box, box_iou

__all__ = ["Tracker", "IouTracker", "ByteTracker", "TrackedBox", "TRACKERS", "check_single_opencv", "opencv_distributions"]


@dataclasses.dataclass(frozen=True)
class TrackedBox:
    """A detection with the track it was given.

    Attributes:
        box: the detection itself (frame pixels, score).
        track_id: the track's id (unique within one tracker, never reused); 0 for a box the
            tracker has not given a track yet (ByteTrack: a low-score box that continues no
            track, or the first frames of a new one).
        hits: detections in the track so far, this one included.
        confirmed: the track has had ``min_hits`` detections.
    """

    box: Box
    track_id: int
    hits: int
    confirmed: bool

    def __post_init__(self) -> None:
        if isinstance(self.track_id, bool) or not isinstance(self.track_id, int) or self.track_id < 0:
            raise ValueError(f"TrackedBox.track_id must be an integer >= 0 (0: no track yet), got {self.track_id!r}")
        if self.track_id == 0 and self.confirmed:
            raise ValueError("TrackedBox: a box without a track (track_id 0) cannot be confirmed")
        if isinstance(self.hits, bool) or not isinstance(self.hits, int) or self.hits < 1:
            raise ValueError(f"TrackedBox.hits must be an integer >= 1, got {self.hits!r}")


@runtime_checkable
class Tracker(Protocol):
    """What the samples need from a tracker (one instance per camera, frames in order)."""

    def update(self, boxes: Sequence[Box]) -> list[TrackedBox]:
        """Feed the detections of the next processed frame; one :class:`TrackedBox` per box, in order."""
        ...

    def reset(self) -> None: ...


@dataclasses.dataclass
class _Track:
    track_id: int
    box: np.ndarray  # x1, y1, x2, y2
    velocity: np.ndarray  # centre motion per update (dx, dy)
    hits: int = 1
    misses: int = 0
    confirmed: bool = False

    def predicted(self) -> np.ndarray:
        shift = self.velocity * (self.misses + 1)
        return self.box + np.array([shift[0], shift[1], shift[0], shift[1]])


class IouTracker:
    """Greedy IoU association with track ids, max age and min hits (see the module docstring).

    Args:
        iou_threshold: IoU between a track's predicted box and a detection needed to continue it.
        max_age: updates a track survives without a detection.
        min_hits: detections before a track is confirmed (1: at once).
        velocity_momentum: smoothing of the centre velocity, in [0, 1) (0: the last step only).
        motion: predict boxes from the velocity (False: a track's box stays where it was last seen).

    One tracker per camera; not thread-safe (a camera's frames come in order from one thread).
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_age: int = 5,
        min_hits: int = 2,
        velocity_momentum: float = 0.5,
        motion: bool = True,
    ):
        if not (0.0 < iou_threshold <= 1.0):
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
        for name, value, low in (("max_age", max_age, 0), ("min_hits", min_hits, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (0.0 <= velocity_momentum < 1.0):
            raise ValueError(f"velocity_momentum must be in [0, 1), got {velocity_momentum!r}")
        self.iou_threshold = float(iou_threshold)
        self.max_age = max_age
        self.min_hits = min_hits
        self.velocity_momentum = float(velocity_momentum)
        self.motion = bool(motion)
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def num_tracks(self) -> int:
        """Live tracks (matched recently enough not to be dropped)."""
        return len(self._tracks)

    @property
    def num_started(self) -> int:
        """Tracks started so far."""
        return self._next_id - 1

    def update(self, boxes: Sequence[Box | Sequence[float]]) -> list[TrackedBox]:
        """Feed the detections of the next frame; returns one :class:`TrackedBox` per box, in order."""
        boxes = [b if isinstance(b, Box) else Box(*(float(v) for v in b)) for b in boxes]
        detections = np.array([b[:4] for b in boxes], np.float64).reshape(-1, 4)
        assigned = self._associate(detections)
        results: list[TrackedBox | None] = [None] * len(boxes)
        matched_tracks = set()
        for det, track in assigned.items():
            self._continue(track, detections[det])
            matched_tracks.add(id(track))
            results[det] = TrackedBox(boxes[det], track.track_id, track.hits, track.confirmed)
        for track in self._tracks:
            if id(track) not in matched_tracks:
                track.misses += 1
        self._tracks = [t for t in self._tracks if t.misses <= self.max_age]
        for det, box in enumerate(boxes):
            if results[det] is None:
                track = self._start(detections[det])
                results[det] = TrackedBox(box, track.track_id, track.hits, track.confirmed)
        return results  # type: ignore[return-value]

    def reset(self) -> None:
        """Forget all tracks (ids keep counting up, so old ids are never reused)."""
        self._tracks = []

    # -- steps -------------------------------------------------------------------------------
    def _associate(self, detections: np.ndarray) -> dict[int, _Track]:
        if not self._tracks or not len(detections):
            return {}
        predicted = np.stack([t.predicted() for t in self._tracks])
        iou = box_iou(predicted, detections)
        pairs = sorted(
            ((iou[t, d], t, d) for t, d in zip(*np.nonzero(iou >= self.iou_threshold))),
            key=lambda p: (-p[0], p[1], p[2]),
        )
        used_tracks: set[int] = set()
        assigned: dict[int, _Track] = {}
        for _, t, d in pairs:
            if t in used_tracks or d in assigned:
                continue
            used_tracks.add(t)
            assigned[int(d)] = self._tracks[t]
        return assigned

    def _continue(self, track: _Track, box: np.ndarray) -> None:
        if self.motion:
            step = (_centre(box) - _centre(track.box)) / (track.misses + 1)
            m = self.velocity_momentum
            track.velocity = step if track.hits == 1 else m * track.velocity + (1 - m) * step
        track.box = box.copy()
        track.hits += 1
        track.misses = 0
        track.confirmed = track.confirmed or track.hits >= self.min_hits

    def _start(self, box: np.ndarray) -> _Track:
        track = _Track(self._next_id, box.copy(), np.zeros(2), confirmed=self.min_hits <= 1)
        self._next_id += 1
        self._tracks.append(track)
        return track

    def __repr__(self) -> str:
        return (
            f"IouTracker(iou_threshold={self.iou_threshold}, max_age={self.max_age}, min_hits={self.min_hits}, "
            f"{self.num_tracks} live tracks)"
        )


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


class ByteTracker:
    """ByteTrack from the ``trackers`` package behind the samples' tracker interface.

    Args:
        frame_rate: processed frames per second (the video's fps divided by ``--every``).
        max_age: processed frames a lost track is kept for re-association (None: one second,
            ByteTrack's 30 frames at 30 fps).
        min_hits: consecutive detections before a track gets an id and is confirmed.
        high_score: detections at or above this score are associated first and may start tracks
            (ByteTrack's two stages; lower-score boxes only continue existing tracks).
        new_track_score: the score a detection needs to start a track.
        iou_threshold: IoU between a predicted track box and a detection needed to associate them.

    ``trackers`` numbers tracks from 0; ids here are that + 1, so 0 means "no track".
    """

    def __init__(
        self,
        frame_rate: float,
        max_age: int | None = None,
        min_hits: int = 2,
        high_score: float = 0.5,
        new_track_score: float = 0.6,
        iou_threshold: float = 0.2,
    ):
        if not (isinstance(frame_rate, (int, float)) and math.isfinite(frame_rate) and frame_rate > 0):
            raise ValueError(f"frame_rate must be a positive number of frames per second, got {frame_rate!r}")
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0):
            raise ValueError(f"max_age must be an integer >= 0 or None, got {max_age!r}")
        if isinstance(min_hits, bool) or not isinstance(min_hits, int) or min_hits < 1:
            raise ValueError(f"min_hits must be an integer >= 1, got {min_hits!r}")
        for name, value in (("high_score", high_score), ("new_track_score", new_track_score), ("iou_threshold", iou_threshold)):
            if not (0.0 < value <= 1.0):
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        self.frame_rate = float(frame_rate)
        self.max_age = max(1, round(self.frame_rate)) if max_age is None else max_age
        self.min_hits = min_hits
        self.high_score, self.new_track_score, self.iou_threshold = float(high_score), float(new_track_score), float(iou_threshold)
        self._hits: dict[int, int] = {}
        self._offset = 0  # ids given before the last reset(), so ids are never reused
        self._tracker = self._build()

    def _build(self):
        check_single_opencv()
        try:
            from trackers import ByteTrackTracker
        except ImportError as exc:
            raise MissingDependencyError(
                f"--tracker bytetrack needs the 'trackers' package ({exc}); install it without its opencv-python "
                "dependency: pip install --no-deps 'trackers>=2.6,<3' (see README), or use --tracker iou"
            ) from None
        # lost_track_buffer counts 30 fps frames; scaled back by frame_rate/30 it is max_age processed frames
        return ByteTrackTracker(
            lost_track_buffer=max(0, math.floor(self.max_age * 30.0 / self.frame_rate)) if self.max_age else 0,
            frame_rate=self.frame_rate,
            track_activation_threshold=self.new_track_score,
            minimum_consecutive_frames=self.min_hits,
            minimum_iou_threshold=self.iou_threshold,
            high_conf_det_threshold=self.high_score,
        )

    @property
    def num_started(self) -> int:
        """Tracks given an id so far."""
        return len(self._hits)

    def update(self, boxes: Sequence[Box | Sequence[float]]) -> list[TrackedBox]:
        import supervision as sv

        boxes = [b if isinstance(b, Box) else Box(*(float(v) for v in b)) for b in boxes]
        detections = sv.Detections(
            xyxy=np.array([b[:4] for b in boxes], np.float32).reshape(-1, 4),
            confidence=np.array([b.score for b in boxes], np.float32),
            data={"index": np.arange(len(boxes))},
        )
        result = self._tracker.update(detections)
        track_of = {int(i): int(t) + 1 + self._offset if t >= 0 else 0 for i, t in zip(result.data.get("index", []), result.tracker_id)} if len(result) else {}
        out = []
        for i, box in enumerate(boxes):
            track_id = max(track_of.get(i, 0), 0)
            if track_id:
                self._hits[track_id] = self._hits.get(track_id, self.min_hits - 1) + 1
                out.append(TrackedBox(box, track_id, self._hits[track_id], True))
            else:
                out.append(TrackedBox(box, 0, 1, False))
        return out

    def reset(self) -> None:
        """Forget all tracks (ids keep counting up, so old ids are never reused)."""
        self._tracker.reset()
        self._offset = max(self._hits, default=self._offset)

    def __repr__(self) -> str:
        return f"ByteTracker(frame_rate={self.frame_rate:g}, max_age={self.max_age}, min_hits={self.min_hits}, {self.num_started} tracks)"


def opencv_distributions() -> list[str]:
    """The installed pip distributions that provide the ``cv2`` package (there should be exactly one)."""
    import importlib.metadata

    names = {(d.metadata["Name"] or "").lower() for d in importlib.metadata.distributions()}
    return sorted(n for n in names if n.startswith("opencv-") and n.replace("_", "-") in _OPENCV_DISTRIBUTIONS)


_OPENCV_DISTRIBUTIONS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")


def check_single_opencv() -> None:
    """``ImportError`` naming the fix when several OpenCV distributions share the one ``cv2`` package.

    That happens when ``trackers`` is installed with its dependencies: it pulls ``opencv-python``
    in beside the project's ``opencv-python-headless``; uninstalling either then breaks ``cv2``.
    """
    found = opencv_distributions()
    if len(found) > 1:
        raise MissingDependencyError(
            f"several OpenCV packages are installed ({', '.join(found)}) and overwrite each other's cv2: "
            f"pip uninstall -y {' '.join(found)} && pip install 'opencv-python-headless>=4.8,<5' "
            "(install trackers with --no-deps, see README)"
        )


#: ``--tracker`` names -> what they are
TRACKERS = {"bytetrack": "ByteTrack (trackers package, Apache-2.0)", "iou": "greedy IoU tracker (no dependency)"}
