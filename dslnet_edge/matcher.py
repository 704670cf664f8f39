"""``Matcher``: who is in this frame? Open-set matching of person crops against a gallery.

::

    matcher = dslnet_edge.Matcher(dslnet_edge.Engine(), threshold=0.5)
    matcher.enroll(alice_crops, "alice")                    # known people (optional)
    for match in matcher.match(crops, camera="gate", track_ids=tracker_ids):
        print(match.identity, match.similarity, match.is_new)

What happens to each crop of a ``match`` call:

1. It is embedded (outside any lock, so several camera threads embed in parallel).
2. With a ``track_id`` (from your tracker), the crop updates that track's running feature (a
   mean for the first frames, then an exponential moving average) and the *track* feature is
   matched, so one blurred or occluded crop does not flip an identity (as DeepStream and boxmot
   aggregate per track). Tracks are per camera, bounded in number, and dropped when stale.
3. The feature is searched in the gallery (exact cosine). Crops of one call are people of one
   frame, so no two of them get the same identity (greedy one-to-one assignment, best pairs
   first; ``exclusive=False`` switches that off).
4. A crop whose best free candidate reaches ``threshold`` gets that identity (and refreshes its
   exemplars when the view is new); otherwise a crop whose track already has an identity keeps
   it (a track never enrols a second identity), and any other crop is enrolled as a new identity
   (``auto_enroll=True``) or reported unknown (``identity=None``). With ``min_track_crops``, a
   track's crops are ``pending`` (no decision, nothing enrolled) until it has that many.

Steps 2-4 run under one lock, so concurrent ``match`` calls from several threads are safe and
the gallery never sees half an update.

The threshold default :data:`DEFAULT_THRESHOLD` was calibrated on CUHK03 with the bundled weights;
recalibrate it on your cameras (and for other weights) with ``python -m dslnet_edge.threshold``.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence

import numpy as np

from dslnet_edge._checks import int_at_least, positive_int, timestamp_seconds
from dslnet_edge.gallery import Gallery, GalleryError

__all__ = ["Matcher", "Match", "DEFAULT_THRESHOLD"]

#: Cosine similarity at or above which a crop is taken to show a gallery identity.
#: Measured with the bundled (distilled) weights on ``cuhk03-pair1`` (query/ + bounding_box_test/,
#: 938 crops of 100 people in 2 cameras): ``python -m dslnet_edge.threshold --data-root .../query
#: --data-root .../bounding_box_test`` scores each crop's nearest same-person and nearest
#: different-person crop in the other camera (the decision this matcher makes) and the balanced
#: threshold is 0.689: 51.7% of single crops reach their own identity, 13.6% of strangers are merged
#: into someone (balanced accuracy 0.690). Tracks decide on the mean of several crops; the same
#: calibration on such means (``--crops-per-track 3`` / ``5``) gives 0.685 / 0.707 (68% / 23% and
#: 59% / 6%), so one threshold serves both. Users recalibrate on their own cameras and weights:
#: ``python -m dslnet_edge.threshold --data-root ... [--crops-per-track K]``.
DEFAULT_THRESHOLD = 0.69


@dataclasses.dataclass(frozen=True)
class Match:
    """The decision for one crop.

    Attributes:
        identity: the gallery identity, a newly enrolled one (``is_new``), or None (unknown:
            below the threshold with ``auto_enroll=False``).
        similarity: cosine similarity to ``identity``'s best exemplar when an existing identity
            was matched; None for new and unknown crops (their best scores are in ``candidates``).
        is_new: True when this crop was enrolled as a new identity.
        candidates: the top-k gallery identities before any enrolment, ``(identity, similarity)``
            best first (may include identities given to other crops of the frame).
        camera: the camera passed to ``match``.
        track_id: the crop's track id, if any.
        index: the crop's position in the ``match`` call.
        pending: the crop's track has fewer than ``min_track_crops`` crops, so no decision was
            made yet (``identity`` is None, nothing enrolled; ``candidates`` are filled).
    """

    identity: str | None
    similarity: float | None
    is_new: bool
    candidates: tuple[tuple[str, float], ...] = ()
    camera: str | None = None
    track_id: Hashable | None = None
    index: int = 0
    pending: bool = False

    def __post_init__(self) -> None:
        if self.identity is not None and (not isinstance(self.identity, str) or not self.identity):
            raise ValueError(f"Match.identity must be a non-empty string or None, got {self.identity!r}")
        if not isinstance(self.is_new, bool):
            raise ValueError(f"Match.is_new must be a bool, got {self.is_new!r}")
        if self.identity is None and self.is_new:
            raise ValueError("Match: a newly enrolled crop must have an identity")
        if self.pending and self.identity is not None:
            raise ValueError("Match: a pending crop (track not decided yet) has no identity")
        if self.identity is None or self.is_new:
            if self.similarity is not None:
                raise ValueError("Match.similarity must be None for new or unknown crops (see candidates)")
        else:
            if not _is_similarity(self.similarity):
                raise ValueError(f"Match.similarity must be a finite number in [-1, 1] for a matched crop, got {self.similarity!r}")
            object.__setattr__(self, "similarity", float(self.similarity))
        candidates = tuple(tuple(c) for c in self.candidates)
        for c in candidates:
            if len(c) != 2 or not isinstance(c[0], str) or not _is_similarity(c[1]):
                raise ValueError(f"Match.candidates must be (identity, similarity) pairs, got {c!r}")
        candidates = tuple((c[0], float(c[1])) for c in candidates)
        if any(a[1] < b[1] for a, b in zip(candidates, candidates[1:])):
            raise ValueError("Match.candidates must be sorted by similarity, best first")
        object.__setattr__(self, "candidates", candidates)
        object.__setattr__(self, "index", int_at_least(self.index, "Match.index", 0))

    @property
    def is_known(self) -> bool:
        """Matched an identity that was already in the gallery."""
        return self.identity is not None and not self.is_new

    @property
    def is_unknown(self) -> bool:
        return self.identity is None


def _is_similarity(value: object) -> bool:
    return (
        isinstance(value, (int, float, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and -1.0001 <= value <= 1.0001
    )


@dataclasses.dataclass
class _Track:
    feature: np.ndarray
    count: int
    last_time: float
    identity: str | None = None


class Matcher:
    """Open-set person matching with a gallery, track aggregation and thread safety.

    Args:
        engine: an :class:`~dslnet_edge.engine.Engine` (anything with ``embed(crops)`` and ``feature_dim``).
        gallery: the :class:`~dslnet_edge.gallery.Gallery` to match against (a new empty one if None).
        threshold: cosine similarity needed to match an identity (see :data:`DEFAULT_THRESHOLD`).
        top_k: candidates reported per crop.
        auto_enroll: enrol crops below the threshold as new identities (else report them unknown).
        update_exemplars: add a matched crop's feature to its identity when it is a new view
            (similarity to the identity's exemplars below ``novelty``), keeping the gallery
            current as appearance drifts; otherwise the identity is only marked as seen.
        novelty: see ``update_exemplars``.
        exclusive: one identity per crop within one ``match`` call (crops of one frame).
        track_momentum: EMA weight of a track's past feature (after its first 1/(1-m) frames,
            which are averaged).
        max_tracks: tracks remembered over all cameras (least recently updated dropped first).
        track_ttl: seconds after which a camera's track that was not seen is dropped.
        min_track_crops: crops a track needs before it is matched or enrolled; until then its
            matches are ``pending`` (so one early, partial view never becomes an identity).
            Crops without a track id are decided at once.
    """

    def __init__(
        self,
        engine,
        gallery: Gallery | None = None,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        top_k: int = 5,
        auto_enroll: bool = True,
        update_exemplars: bool = True,
        novelty: float = 0.9,
        exclusive: bool = True,
        track_momentum: float = 0.9,
        max_tracks: int = 1024,
        track_ttl: float = 30.0,
        min_track_crops: int = 1,
    ):
        if not hasattr(engine, "embed") or not hasattr(engine, "feature_dim"):
            raise TypeError(f"engine must be a dslnet_edge.Engine (with embed() and feature_dim), got {type(engine).__name__}")
        if not _is_similarity(threshold):
            raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {threshold!r}")
        if not _is_similarity(novelty):
            raise ValueError(f"novelty must be a cosine similarity in [-1, 1], got {novelty!r}")
        top_k, max_tracks, min_track_crops = (positive_int(value, name) for name, value in (
            ("top_k", top_k), ("max_tracks", max_tracks), ("min_track_crops", min_track_crops)))
        if not (0.0 <= track_momentum < 1.0):
            raise ValueError(f"track_momentum must be in [0, 1), got {track_momentum!r}")
        if not (track_ttl > 0):
            raise ValueError(f"track_ttl must be > 0 seconds, got {track_ttl!r}")
        self.engine = engine
        self.gallery = gallery if gallery is not None else Gallery(engine.feature_dim)
        if self.gallery.feature_dim not in (None, engine.feature_dim):
            raise GalleryError(
                f"the gallery holds {self.gallery.feature_dim}-d embeddings but the engine makes {engine.feature_dim}-d ones: "
                "a gallery only works with the model that filled it"
            )
        self.threshold = float(threshold)
        self.top_k = top_k
        self.auto_enroll = bool(auto_enroll)
        self.update_exemplars = bool(update_exemplars)
        self.novelty = float(novelty)
        self.exclusive = bool(exclusive)
        self.track_momentum = float(track_momentum)
        self.max_tracks = max_tracks
        self.track_ttl = float(track_ttl)
        self.min_track_crops = min_track_crops
        self._tracks: OrderedDict[tuple[str | None, Hashable], _Track] = OrderedDict()
        self._lock = threading.Lock()

    # -- public API --------------------------------------------------------------------------
    def match(
        self,
        frame_crops: Sequence[np.ndarray],
        camera: str | None = None,
        timestamp: float | None = None,
        track_ids: Sequence[Hashable | None] | None = None,
    ) -> list[Match]:
        """Match the person crops of one frame; returns one :class:`Match` per crop, in order.

        Args:
            frame_crops: a list of ``HxWx3`` uint8 BGR crops, or one ``NxHxWx3`` array (an empty
                list gives an empty result; one crop is ``[crop]``).
            camera: the camera's name (tracks and exemplars are kept per camera).
            timestamp: the frame's time in seconds (default: now); used for last-seen and track expiry.
            track_ids: one tracker id per crop (None entries: no track), or None.
        """
        frame_crops = _crop_list(frame_crops, "frame_crops")
        camera = None if camera is None else str(camera)
        stamp = timestamp_seconds(timestamp)
        n = len(frame_crops)
        track_ids = self._check_track_ids(track_ids, n)
        if n == 0:
            return []
        feats = self.engine.embed(frame_crops)  # outside the lock: cameras embed in parallel
        with self._lock:
            queries = self._track_features(feats, camera, track_ids, stamp)
            candidates = self.gallery.search(queries, self.top_k)
            tracks = [self._tracks.get((camera, t)) if t is not None else None for t in track_ids]
            pending = [t is not None and t.count < self.min_track_crops for t in tracks]
            assigned = self._assign([[] if p else c for p, c in zip(pending, candidates)])
            taken = {identity for identity, _ in assigned.values()}
            matches = []
            for i in range(n):
                if pending[i]:
                    matches.append(Match(None, None, False, tuple(candidates[i]), camera, track_ids[i], i, pending=True))
                    continue
                identity, similarity, is_new = self._decide(i, assigned, queries[i], camera, stamp, tracks[i], taken)
                if tracks[i] is not None and identity is not None:
                    tracks[i].identity = identity
                matches.append(
                    Match(identity, similarity, is_new, tuple(candidates[i]), camera, track_ids[i], i)
                )
            return matches

    def enroll(
        self,
        crops: Sequence[np.ndarray],
        identities: str | Sequence[str],
        *,
        camera: str | None = None,
        timestamp: float | None = None,
    ) -> None:
        """Add known people: ``identities`` is one name for all crops, or one name per crop.

        ``crops`` is what :meth:`match` takes: a list of ``HxWx3`` uint8 BGR crops or one ``NxHxWx3`` array.
        """
        crops = _crop_list(crops, "crops")
        if isinstance(identities, str):
            identities = [identities] * len(crops)
        identities = list(identities)
        if len(identities) != len(crops):
            raise ValueError(f"enroll got {len(crops)} crops but {len(identities)} identities")
        for i, identity in enumerate(identities):
            if not isinstance(identity, str) or not identity:
                raise ValueError(f"identity {i} must be a non-empty string, got {identity!r}")
        if not crops:
            return
        stamp = timestamp_seconds(timestamp)
        feats = self.engine.embed(crops)
        with self._lock:
            for identity in dict.fromkeys(identities):
                rows = [k for k, name in enumerate(identities) if name == identity]
                self.gallery.add(identity, feats[rows], camera=camera, timestamp=stamp)

    @property
    def num_tracks(self) -> int:
        with self._lock:
            return len(self._tracks)

    def reset_tracks(self, camera: str | None = None) -> None:
        """Forget the tracks of ``camera`` (all tracks when None), e.g. after a camera restarts."""
        with self._lock:
            if camera is None:
                self._tracks.clear()
            else:
                for key in [k for k in self._tracks if k[0] == camera]:
                    del self._tracks[key]

    # -- steps -------------------------------------------------------------------------------
    @staticmethod
    def _check_track_ids(track_ids, n: int) -> list:
        if track_ids is None:
            return [None] * n
        track_ids = list(track_ids)
        if len(track_ids) != n:
            raise ValueError(f"track_ids has {len(track_ids)} entries for {n} crops; give one per crop (None for no track)")
        for i, t in enumerate(track_ids):
            if t is not None and not isinstance(t, Hashable):
                raise ValueError(f"track_ids[{i}] is a {type(t).__name__}; track ids must be hashable (int or str)")
        seen = [t for t in track_ids if t is not None]
        if len(set(seen)) != len(seen):
            raise ValueError("track_ids repeats an id within one frame; a tracker gives each box its own id")
        return track_ids

    def _track_features(self, feats: np.ndarray, camera, track_ids: list, stamp: float) -> np.ndarray:
        """Per crop: its own feature, or its track's running feature updated with it."""
        self._drop_stale_tracks(camera, stamp)
        queries = feats.copy()
        for i, track_id in enumerate(track_ids):
            if track_id is None:
                continue
            key = (camera, track_id)
            track = self._tracks.get(key)
            if track is None:
                track = self._tracks[key] = _Track(feats[i].copy(), 1, stamp)
            else:
                weight = max(1.0 - self.track_momentum, 1.0 / (track.count + 1))
                mixed = (1.0 - weight) * track.feature + weight * feats[i]
                track.feature = (mixed / max(float(np.linalg.norm(mixed)), 1e-12)).astype(np.float32)
                track.count += 1
                track.last_time = max(track.last_time, stamp)
                self._tracks.move_to_end(key)
            queries[i] = track.feature
        while len(self._tracks) > self.max_tracks:
            self._tracks.popitem(last=False)
        return queries

    def _drop_stale_tracks(self, camera, stamp: float) -> None:
        stale = [k for k, t in self._tracks.items() if k[0] == camera and t.last_time < stamp - self.track_ttl]
        for key in stale:
            del self._tracks[key]

    def _assign(self, candidates: list[list[tuple[str, float]]]) -> dict[int, tuple[str, float]]:
        """Greedy assignment, best (crop, identity) pairs first; one identity per crop when exclusive."""
        pairs = sorted(
            ((sim, i, identity) for i, cands in enumerate(candidates) for identity, sim in cands if sim >= self.threshold),
            key=lambda p: (-p[0], p[1], p[2]),
        )
        assigned: dict[int, tuple[str, float]] = {}
        taken: set[str] = set()
        for sim, i, identity in pairs:
            if i in assigned or (self.exclusive and identity in taken):
                continue
            assigned[i] = (identity, sim)
            taken.add(identity)
        return assigned

    def _decide(
        self, i: int, assigned: dict, query: np.ndarray, camera, stamp: float, track: _Track | None = None, taken: set | None = None
    ) -> tuple[str | None, float | None, bool]:
        if i in assigned:
            identity, similarity = assigned[i]
            if identity in self.gallery:  # (it cannot vanish under our lock, but stay defensive)
                if self.update_exemplars and self.gallery.similarity(identity, query)[0] < self.novelty:
                    self.gallery.add(identity, query, camera=camera, timestamp=stamp)
                else:
                    self.gallery.touch(identity, timestamp=stamp)
            return identity, similarity, False
        if track is not None and track.identity is not None and track.identity in self.gallery:
            # a decided track keeps its identity when nothing reaches the threshold (the tracker says
            # it is the same person): it never enrols a second one; unknown for this frame if
            # another crop of the frame holds that identity
            if self.exclusive and taken is not None and track.identity in taken:
                return None, None, False
            if taken is not None:
                taken.add(track.identity)
            self.gallery.touch(track.identity, timestamp=stamp)
            similarity = float(np.clip(self.gallery.similarity(track.identity, query)[0], -1.0, 1.0))
            return track.identity, similarity, False
        if not self.auto_enroll:
            return None, None, False
        identity = self.gallery.new_identity()
        self.gallery.add(identity, query, camera=camera, timestamp=stamp)
        return identity, None, True

    def __repr__(self) -> str:
        return (
            f"Matcher(threshold={self.threshold}, top_k={self.top_k}, auto_enroll={self.auto_enroll}, "
            f"gallery={self.gallery!r})"
        )


def _crop_list(crops: object, name: str) -> list:
    """The crops of a ``match``/``enroll`` call as a list (what ``Engine.embed`` and ``preprocess`` take).

    A list or tuple of crops, or one ``NxHxWx3`` array; a single crop (one ``HxWx3`` array) and
    generators are refused with a message saying what to pass, as ``embed`` refuses them.
    """
    if isinstance(crops, np.ndarray):
        if crops.ndim == 4:
            return list(crops)
        raise ValueError(
            f"{name} is one array of shape {crops.shape}; pass a list of HxWx3 crops ([crop] for a single one) "
            "or one NxHxWx3 array"
        )
    if isinstance(crops, (list, tuple)):
        return list(crops)
    hint = ": pass list(...) so the crops can be counted and paired with track ids" if isinstance(crops, Iterator) else ""
    raise ValueError(f"{name} must be a list of HxWx3 uint8 crops or one NxHxWx3 array, got {type(crops).__name__}{hint}")
