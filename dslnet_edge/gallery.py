"""The gallery: who has been seen, as a few embedding exemplars per identity, searchable and persistent.

Memory is bounded by design, so a matcher can run on an endless camera stream:

* at most ``max_exemplars`` embeddings per identity (a new one replaces the oldest);
* at most ``capacity`` identities; adding one more evicts the identity seen least recently
  (``add`` and ``touch`` count as seen).

:class:`GalleryStore` is the interface the :class:`~dslnet_edge.matcher.Matcher` uses; this module's
:class:`Gallery` (in memory, one SQLite file on disk) is the embedded default, and
:class:`dslnet_edge.milvus_gallery.MilvusGallery` keeps the same semantics in Milvus for galleries
shared by many processes and boxes.

Search is exact cosine similarity: an identity scores the best similarity over its exemplars
(optionally only the exemplars of some cameras or a time window). NumPy does it with matrix
products over preallocated storage (the default), in blocks of queries so that memory stays
bounded however many crops are matched at once (:data:`SEARCH_BLOCK_ELEMENTS`). ``index="faiss"``
uses a ``faiss.IndexFlatIP`` (exact inner product; optional dependency, ``pip install
faiss-cpu``) built from the same rows, which returns the same identities and similarities. The
faiss index is rebuilt lazily after the gallery changes (a copy of every exemplar), so it pays off
only for large galleries that are searched much more often than they change (a pre-enrolled
watch list with ``auto_enroll=False``); on the CPU measured in ``benchmarks/bench_runtime.py``
exact NumPy search was as fast or faster up to 50,000 exemplars.

Persistence is one SQLite file (:meth:`Gallery.save` / :meth:`Gallery.load`): float32 feature
blobs with their identity, camera and time, a marker table ``dslnet_edge_gallery`` holding the
format version and settings, and SQLite's ``application_id``. Saving writes a fresh database to
a temporary file in the destination folder, fsyncs it and renames it over the old file
(:func:`dslnet_edge._io.atomic_write`), so a crash or ``kill -9`` mid-save leaves the previous
gallery intact. Loading opens the file read-only; a file that is not SQLite, a SQLite file
that is not a gallery, or a corrupt gallery raises :class:`GalleryFileError` and is never
overwritten unless ``save(..., overwrite=True)`` says so. Every value read from a file is checked
(types, finite times, valid text, sizes within :data:`MAX_EXEMPLARS` / :data:`MAX_FEATURE_DIM` /
:data:`MAX_CAPACITY` before anything is allocated), so a hand-edited file fails with
:class:`GalleryFileError`, not a bare ``ValueError`` or ``MemoryError``. Saving through a symbolic
link writes the file it points to and leaves the link in place.

Standard library and NumPy only (faiss imported on first use). Thread-safe: one re-entrant
lock guards every method.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import os
import sqlite3
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dslnet_edge._checks import timestamp_seconds
from dslnet_edge._io import atomic_write
from dslnet_edge.errors import DslnetError, MissingDependencyError

__all__ = ["Gallery", "GalleryStore", "GalleryError", "GalleryFileError", "IdentityInfo", "GALLERY_FORMAT", "GALLERY_VERSION"]

GALLERY_FORMAT = "dslnet_edge.gallery"
GALLERY_VERSION = 1
#: SQLite ``PRAGMA application_id`` of gallery files ("DSLG"), so ``file(1)`` and tools can tell them apart.
APPLICATION_ID = 0x44534C47
_MARKER_TABLE = "dslnet_edge_gallery"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_INDEXES = ("numpy", "faiss")
_INITIAL_SLOTS = 16
#: Upper bounds a gallery (or a gallery file) may ask for, checked before anything is allocated.
MAX_EXEMPLARS = 4096
MAX_FEATURE_DIM = 65536
MAX_CAPACITY = 100_000_000
#: Similarities computed at once by a search (float32: 64 MB): queries are matched in blocks of this size.
SEARCH_BLOCK_ELEMENTS = 16 * 1024 * 1024


class GalleryError(DslnetError, ValueError):
    """Invalid use of a gallery: bad features, an unknown identity, a feature size that does not match."""


class GalleryFileError(GalleryError):
    """A file that is not a readable dslnet_edge gallery (foreign, corrupt, or from a newer version)."""


@dataclasses.dataclass(frozen=True)
class IdentityInfo:
    """What the gallery knows about one identity."""

    identity: str
    num_exemplars: int
    first_seen: float
    last_seen: float
    cameras: tuple[str, ...]


class GalleryStore(abc.ABC):
    """The storage interface every gallery implements; :class:`~dslnet_edge.matcher.Matcher` uses only this.

    Two implementations share one set of semantics (and one test suite):

    * :class:`Gallery`: in memory, searched with NumPy (or faiss), saved to one SQLite file; the
      embedded default for one box.
    * :class:`dslnet_edge.milvus_gallery.MilvusGallery`: the rows live in Milvus, through
      ``pymilvus``: a ``milvus-lite`` file for tests and single boxes, or a Milvus server
      (``http://host:19530``) shared by many boxes and processes.

    Semantics: identities hold at most ``max_exemplars`` L2-normalized exemplars (a new one
    replaces the oldest); at most ``capacity`` identities (adding one more evicts the least
    recently seen; ``add`` and ``touch`` count as seen); search is exact cosine similarity, an
    identity scoring its best exemplar, optionally filtered by camera and time; names must be
    valid Unicode text.

    Implementations keep their limits in ``_dim`` (None until the first exemplar fixes it),
    ``_max_exemplars`` and ``_capacity``; the properties below read them.
    """

    _dim: int | None
    _max_exemplars: int
    _capacity: int

    @property
    def feature_dim(self) -> int | None:
        return self._dim

    @property
    def max_exemplars(self) -> int:
        return self._max_exemplars

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    @abc.abstractmethod
    def num_exemplars(self) -> int: ...

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def __contains__(self, identity: object) -> bool: ...

    @abc.abstractmethod
    def identities(self) -> list[str]:
        """All identities, least recently seen first."""

    @abc.abstractmethod
    def info(self, identity: str) -> IdentityInfo: ...

    @abc.abstractmethod
    def features(self, identity: str) -> np.ndarray:
        """The identity's exemplars, oldest first (float32 ``[n, D]``)."""

    @abc.abstractmethod
    def add(self, identity: str, features: np.ndarray, *, camera: str | None = None, timestamp: float | None = None) -> list[str]:
        """Add exemplars to ``identity`` (created if new); returns the identities evicted to make room."""

    @abc.abstractmethod
    def touch(self, identity: str, *, timestamp: float | None = None) -> None: ...

    @abc.abstractmethod
    def remove(self, identity: str) -> None: ...

    @abc.abstractmethod
    def clear(self) -> None: ...

    @abc.abstractmethod
    def new_identity(self, prefix: str = "person-") -> str:
        """A fresh identity name not used in this gallery."""

    @abc.abstractmethod
    def search(self, queries: np.ndarray, top_k: int = 5, *, cameras: Iterable[str] | None = None,
               since: float | None = None, until: float | None = None) -> list[list[tuple[str, float]]]: ...

    @abc.abstractmethod
    def similarity(self, identity: str, queries: np.ndarray) -> np.ndarray:
        """Best cosine similarity of each query to ``identity``'s exemplars (float32 ``[Q]``)."""


class Gallery(GalleryStore):
    """Bounded, searchable, persistent store of identity exemplars (in memory; one SQLite file on disk).

    Args:
        feature_dim: embedding length; None takes it from the first features added.
        max_exemplars: embeddings kept per identity (the oldest is replaced when full).
        capacity: identities kept; the least recently seen is evicted beyond it.
        index: ``"numpy"`` (exact, default) or ``"faiss"`` (exact ``IndexFlatIP``; needs faiss; for
            large, rarely changing galleries, see the module docstring).
    """

    def __init__(self, feature_dim: int | None = None, *, max_exemplars: int = 8, capacity: int = 10_000, index: str = "numpy"):
        for name, value, limit in (("max_exemplars", max_exemplars, MAX_EXEMPLARS), ("capacity", capacity, MAX_CAPACITY)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            if value > limit:
                raise ValueError(f"{name} must be at most {limit:,}, got {value:,}")
        if feature_dim is not None and (isinstance(feature_dim, bool) or not isinstance(feature_dim, int) or feature_dim < 1):
            raise ValueError(f"feature_dim must be a positive integer or None, got {feature_dim!r}")
        if feature_dim is not None and feature_dim > MAX_FEATURE_DIM:
            raise ValueError(f"feature_dim must be at most {MAX_FEATURE_DIM:,}, got {feature_dim:,}")
        if index not in _INDEXES:
            raise ValueError(f"index must be one of {_INDEXES}, got {index!r}")
        if index == "faiss":
            _import_faiss()  # fail now, not at the first search
        self._dim = feature_dim
        self._max_exemplars = max_exemplars
        self._capacity = capacity
        self._index = index
        self._lock = threading.RLock()
        self._slots: OrderedDict[str, int] = OrderedDict()  # identity -> slot, least recently seen first
        self._slot_identity: list[str | None] = []
        self._free: list[int] = []
        self._high = 0  # slots ever used (search looks at [:high])
        self._seq = 0  # insertion counter: the oldest exemplar of a full identity is replaced
        self._version = 0  # bumped by every change (invalidates the faiss index)
        self._next_anonymous = 1
        self._faiss_cache: tuple[int, object, np.ndarray] | None = None
        self._known_files: dict[str, tuple[int, int, int]] = {}  # files this gallery loaded or wrote
        self._allocate(0)

    # -- storage -----------------------------------------------------------------------------
    def _allocate(self, slots: int) -> None:
        """(Re)size the per-row arrays to ``slots`` identity slots, keeping the contents."""
        rows, dim = slots * self._max_exemplars, self._dim or 0
        old_rows = len(getattr(self, "_valid", ()))

        def grow(old, shape, dtype, fill):
            new = np.full(shape, fill, dtype=dtype)
            if old is not None and len(old) and old.shape[1:] == new.shape[1:]:
                new[: len(old)] = old
            return new

        self._feats = grow(getattr(self, "_feats", None) if old_rows else None, (rows, dim), np.float32, 0.0)
        self._valid = grow(getattr(self, "_valid", None), (rows,), bool, False)
        self._row_seq = grow(getattr(self, "_row_seq", None), (rows,), np.int64, -1)
        self._row_time = grow(getattr(self, "_row_time", None), (rows,), np.float64, np.nan)
        self._row_camera = grow(getattr(self, "_row_camera", None), (rows,), object, None)
        self._first_seen = grow(getattr(self, "_first_seen", None), (slots,), np.float64, np.nan)
        self._last_seen = grow(getattr(self, "_last_seen", None), (slots,), np.float64, np.nan)
        self._slot_identity.extend([None] * (slots - len(self._slot_identity)))

    def _new_slot(self) -> int:
        if self._free:
            return self._free.pop()
        slots = len(self._slot_identity)
        if self._high == slots:
            self._allocate(min(self._capacity, max(_INITIAL_SLOTS, slots * 2)))
        self._high += 1
        return self._high - 1

    def _rows(self, slot: int) -> slice:
        return slice(slot * self._max_exemplars, (slot + 1) * self._max_exemplars)

    # -- properties --------------------------------------------------------------------------
    @property
    def index(self) -> str:
        return self._index

    @property
    def num_exemplars(self) -> int:
        with self._lock:
            return int(self._valid.sum())

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the feature storage (bounded by capacity x max_exemplars x feature_dim x 4)."""
        with self._lock:
            return int(self._feats.nbytes + self._valid.nbytes + self._row_seq.nbytes + self._row_time.nbytes + self._row_camera.nbytes)

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)

    def __contains__(self, identity: object) -> bool:
        with self._lock:
            return identity in self._slots

    def identities(self) -> list[str]:
        """All identities, least recently seen first."""
        with self._lock:
            return list(self._slots)

    def info(self, identity: str) -> IdentityInfo:
        with self._lock:
            slot = self._slot_of(identity)
            rows = self._rows(slot)
            valid = self._valid[rows]
            cameras = sorted({c for c in self._row_camera[rows][valid] if c is not None})
            return IdentityInfo(
                identity=identity,
                num_exemplars=int(valid.sum()),
                first_seen=float(self._first_seen[slot]),
                last_seen=float(self._last_seen[slot]),
                cameras=tuple(cameras),
            )

    def features(self, identity: str) -> np.ndarray:
        """The identity's exemplars, oldest first (a copy, float32 ``[n, D]``)."""
        with self._lock:
            span = self._rows(self._slot_of(identity))
            rows = np.arange(span.start, span.stop)
            rows = rows[self._valid[rows]]
            return self._feats[rows[np.argsort(self._row_seq[rows])]].copy()

    def _slot_of(self, identity: str) -> int:
        try:
            return self._slots[identity]
        except KeyError:
            raise GalleryError(f"identity {identity!r} is not in the gallery") from None

    # -- changes -----------------------------------------------------------------------------
    def add(self, identity: str, features: np.ndarray, *, camera: str | None = None, timestamp: float | None = None) -> list[str]:
        """Add exemplars (``[D]`` or ``[N, D]``, L2-normalized here) to ``identity``, creating it if new.

        Returns the identities evicted to make room (least recently seen first), usually none.
        """
        _check_identity(identity)
        camera = _check_camera(camera)
        stamp = timestamp_seconds(timestamp)
        with self._lock:
            feats = self._as_features(features, "features", set_dim=True)
            return self._add_rows(identity, feats, [camera] * len(feats), [stamp] * len(feats))

    def _add_rows(self, identity: str, feats: np.ndarray, cameras: list, stamps: list[float]) -> list[str]:
        evicted = []
        slot = self._slots.get(identity)
        if slot is None:
            while len(self._slots) >= self._capacity:
                evicted.append(self._evict_oldest())
            slot = self._new_slot()
            self._slots[identity] = slot
            self._slot_identity[slot] = identity
            self._first_seen[slot] = min(stamps)
        for feat, camera, stamp in zip(feats[-self._max_exemplars :], cameras[-self._max_exemplars :], stamps[-self._max_exemplars :]):
            self._put(slot, feat, camera, stamp)
        self._seen(identity, slot, max(stamps))
        return evicted

    def _put(self, slot: int, feat: np.ndarray, camera: str | None, stamp: float) -> None:
        rows = self._rows(slot)
        valid = self._valid[rows]
        offset = int(np.argmin(valid)) if not valid.all() else int(np.argmin(self._row_seq[rows]))
        row = rows.start + offset
        self._feats[row] = feat
        self._valid[row] = True
        self._row_seq[row] = self._seq
        self._row_time[row] = stamp
        self._row_camera[row] = camera
        self._seq += 1
        self._version += 1

    def _seen(self, identity: str, slot: int, stamp: float) -> None:
        self._slots.move_to_end(identity)
        last = self._last_seen[slot]
        self._last_seen[slot] = stamp if math.isnan(last) else max(last, stamp)

    def touch(self, identity: str, *, timestamp: float | None = None) -> None:
        """Mark ``identity`` as seen now (it moves to the back of the eviction queue)."""
        stamp = timestamp_seconds(timestamp)
        with self._lock:
            self._seen(identity, self._slot_of(identity), stamp)

    def remove(self, identity: str) -> None:
        """Forget ``identity`` and all its exemplars."""
        with self._lock:
            self._release(identity)

    def _evict_oldest(self) -> str:
        identity = next(iter(self._slots))
        self._release(identity)
        return identity

    def _release(self, identity: str) -> None:
        slot = self._slot_of(identity)
        del self._slots[identity]
        rows = self._rows(slot)
        self._feats[rows] = 0.0
        self._valid[rows] = False
        self._row_seq[rows] = -1
        self._row_time[rows] = np.nan
        self._row_camera[rows] = None
        self._first_seen[slot] = self._last_seen[slot] = np.nan
        self._slot_identity[slot] = None
        self._free.append(slot)
        self._version += 1

    def new_identity(self, prefix: str = "person-") -> str:
        """A fresh identity name (``person-000001``, ...) not used in this gallery; the counter is saved with it."""
        _check_identity(prefix or "x")
        with self._lock:
            while True:
                name = f"{prefix}{self._next_anonymous:06d}"
                self._next_anonymous += 1
                if name not in self._slots:
                    return name

    def clear(self) -> None:
        with self._lock:
            for identity in list(self._slots):
                self._release(identity)

    # -- search ------------------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        top_k: int = 5,
        *,
        cameras: Iterable[str] | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[list[tuple[str, float]]]:
        """The ``top_k`` most similar identities for every query, best first.

        Args:
            queries: ``[D]`` or ``[Q, D]`` embeddings (L2-normalized here).
            top_k: candidates per query (fewer when the gallery holds fewer identities).
            cameras, since, until: metadata filters: only exemplars seen by one of ``cameras``
                and with ``since <= timestamp <= until`` count (None: no filter).

        Returns:
            one list per query of ``(identity, cosine similarity)`` tuples, highest first (ties by
            name); identities score their best (matching) exemplar.
        """
        k, filters = _check_search_args(top_k, cameras, since, until)
        with self._lock:
            q = self._as_features(queries, "queries")
            if not self._slots:
                return [[] for _ in range(len(q))]
            k = min(k, len(self._slots))
            if filters:
                return self._search_numpy(q, k, self._filter_mask(*filters))
            if self._index == "faiss":
                return self._search_faiss(q, k)
            return self._search_numpy(q, k)

    def _filter_mask(self, cameras: frozenset | None, since: float | None, until: float | None) -> np.ndarray:
        rows = self._high * self._max_exemplars
        mask = np.ones(rows, bool)
        if cameras is not None:
            mask &= np.fromiter((c in cameras for c in self._row_camera[:rows]), bool, rows)
        with np.errstate(invalid="ignore"):
            if since is not None:
                mask &= self._row_time[:rows] >= since
            if until is not None:
                mask &= self._row_time[:rows] <= until
        return mask

    def _search_numpy(self, q: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[list[tuple[str, float]]]:
        """Exact search in blocks of queries, so memory stays bounded by :data:`SEARCH_BLOCK_ELEMENTS`.

        One block holds ``rows x block`` similarities (``rows`` = exemplar slots in use); a full
        10k-identity gallery matched against 10,000 crops at once never builds the whole
        ``rows x queries`` matrix (3.8 GB at 8 exemplars), only 64 MB blocks of it.
        """
        rows = self._high * self._max_exemplars
        usable = self._valid[:rows] if mask is None else self._valid[:rows] & mask[:rows]
        block = max(1, SEARCH_BLOCK_ELEMENTS // max(rows, 1))
        results = []
        for start in range(0, len(q), block):
            sims = self._feats[:rows] @ q[start : start + block].T  # [rows, block]
            sims[~usable] = -np.inf
            per_slot = sims.reshape(self._high, self._max_exemplars, -1).max(axis=1)  # [slots, block]
            del sims
            for column in per_slot.T:
                top = np.argpartition(-column, k - 1)[:k] if k < len(column) else np.arange(len(column))
                top = top[np.isfinite(column[top])]
                results.append(self._ranked([(self._slot_identity[s], float(column[s])) for s in top]))
        return results

    def _search_faiss(self, q: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        index, row_slot = self._faiss_index()
        # The k-th best identity's best exemplar ranks at most (k-1)*max_exemplars + 1 among the
        # rows (only exemplars of better identities can rank above it), so that many rows suffice.
        n_rows = min(index.ntotal, (k - 1) * self._max_exemplars + 1)
        sims, rows = index.search(q, n_rows)
        results = []
        for row_sims, row_ids in zip(sims, rows):
            best: dict[int, float] = {}
            for sim, row in zip(row_sims, row_ids):
                if row >= 0 and row_slot[row] not in best:
                    best[int(row_slot[row])] = float(sim)
            results.append(self._ranked([(self._slot_identity[s], v) for s, v in best.items()])[:k])
        return results

    def _faiss_index(self):
        if self._faiss_cache is None or self._faiss_cache[0] != self._version:
            faiss = _import_faiss()
            rows = np.flatnonzero(self._valid[: self._high * self._max_exemplars])
            index = faiss.IndexFlatIP(self._dim)
            index.add(np.ascontiguousarray(self._feats[rows]))
            self._faiss_cache = (self._version, index, rows // self._max_exemplars)
        return self._faiss_cache[1], self._faiss_cache[2]

    @staticmethod
    def _ranked(pairs: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
        return sorted(pairs, key=lambda p: (-p[1], p[0]))

    def similarity(self, identity: str, queries: np.ndarray) -> np.ndarray:
        """Best cosine similarity of each query to ``identity``'s exemplars (float32 ``[Q]``)."""
        with self._lock:
            q = self._as_features(queries, "queries")
            rows = self._rows(self._slot_of(identity))
            sims = self._feats[rows] @ q.T
            sims[~self._valid[rows]] = -np.inf
            return sims.max(axis=0).astype(np.float32)

    # -- validation --------------------------------------------------------------------------
    def _as_features(self, x: np.ndarray, what: str, *, set_dim: bool = False) -> np.ndarray:
        """Validate ``[D]``/``[N, D]`` features and L2-normalize them (float32 ``[N, D]``)."""
        x = unit_features(x, what, self._dim)
        if self._dim is None and set_dim:
            self._dim = int(x.shape[1])
            self._allocate(len(self._slot_identity))
        return x

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the gallery to one SQLite file, atomically (a crash mid-save keeps the old file).

        An existing file at ``path`` that this gallery did not itself load or write is read in
        full first; if it is not a valid dslnet_edge gallery (another database, any other file,
        a corrupt or newer gallery) it is refused with :class:`GalleryFileError` unless
        ``overwrite=True``.
        """
        path = Path(path)
        if path.is_symlink():  # write the file the link points to; the link stays a link
            path = path.resolve()
        if path.exists() and not overwrite and self._known_files.get(str(path.resolve())) != _fingerprint(path):
            _refuse_foreign_destination(path)
        snapshot = self._snapshot()
        with atomic_write(path) as tmp:
            _write_database(tmp, snapshot)
        self._known_files[str(path.resolve())] = _fingerprint(path)
        return path

    def _snapshot(self) -> dict:
        with self._lock:
            identities = []
            for rank, (identity, slot) in enumerate(self._slots.items()):
                rows = np.arange(self._rows(slot).start, self._rows(slot).stop)
                rows = rows[self._valid[rows]]
                rows = rows[np.argsort(self._row_seq[rows])]
                identities.append(
                    (
                        identity,
                        rank,
                        float(self._first_seen[slot]),
                        float(self._last_seen[slot]),
                        [(self._feats[r].tobytes(), self._row_camera[r], float(self._row_time[r])) for r in rows],
                    )
                )
            return {
                "feature_dim": self._dim or 0,
                "max_exemplars": self._max_exemplars,
                "capacity": self._capacity,
                "next_anonymous": self._next_anonymous,
                "identities": identities,
            }

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        capacity: int | None = None,
        max_exemplars: int | None = None,
        index: str = "numpy",
    ) -> Gallery:
        """Read a gallery saved by :meth:`save` (opened read-only; the file is never modified).

        ``capacity`` / ``max_exemplars`` override the saved settings; when they are smaller than
        what the file holds, the least recently seen identities / oldest exemplars are dropped
        (with a warning).
        """
        data = _read_database(Path(path))
        gallery = cls(
            data["feature_dim"] or None,
            max_exemplars=max_exemplars or data["max_exemplars"],
            capacity=capacity or data["capacity"],
            index=index,
        )
        dropped = 0
        for identity, first_seen, last_seen, exemplars in data["identities"]:  # least recently seen first
            if not exemplars:
                raise GalleryFileError(f"{path}: identity {identity!r} has no exemplars (corrupt)")
            kept = exemplars[-gallery.max_exemplars :]
            dropped += len(exemplars) - len(kept)
            with gallery._lock:
                try:
                    feats = gallery._as_features(np.stack([f for f, _, _ in kept]), "features", set_dim=True)
                except GalleryError as exc:
                    raise GalleryFileError(f"{path}: identity {identity!r}: {exc}") from None
                gallery._add_rows(identity, feats, [c for _, c, _ in kept], [t for _, _, t in kept])
            slot = gallery._slots[identity]
            gallery._first_seen[slot] = first_seen
            gallery._last_seen[slot] = last_seen
        evicted = len(data["identities"]) - len(gallery)
        if evicted or dropped:
            warnings.warn(
                f"gallery {path}: kept {len(gallery)} of {len(data['identities'])} identities and dropped {dropped} "
                "exemplars to fit the requested capacity/max_exemplars",
                RuntimeWarning,
                stacklevel=2,
            )
        gallery._next_anonymous = max(gallery._next_anonymous, data["next_anonymous"])
        gallery._known_files[str(Path(path).resolve())] = data["fingerprint"]
        return gallery

    def __repr__(self) -> str:
        return (
            f"Gallery({len(self)} identities, {self.num_exemplars} exemplars, dim={self._dim}, "
            f"max_exemplars={self._max_exemplars}, capacity={self._capacity}, index={self._index!r})"
        )


# ---------------------------------------------------------------------------------------------
# SQLite file format
# ---------------------------------------------------------------------------------------------
_SCHEMA = f"""
CREATE TABLE {_MARKER_TABLE} (
    format TEXT NOT NULL,
    format_version INTEGER NOT NULL,
    feature_dim INTEGER NOT NULL,
    max_exemplars INTEGER NOT NULL,
    capacity INTEGER NOT NULL,
    next_anonymous INTEGER NOT NULL,
    saved_at REAL NOT NULL
);
CREATE TABLE identities (
    identity TEXT PRIMARY KEY,
    recency INTEGER NOT NULL,       -- 0 = least recently seen
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE exemplars (
    id INTEGER PRIMARY KEY,         -- insertion order within an identity
    identity TEXT NOT NULL REFERENCES identities(identity),
    feature BLOB NOT NULL,          -- float32, little-endian, feature_dim values
    camera TEXT,
    timestamp REAL NOT NULL
);
"""


def _write_database(path: Path, snapshot: dict) -> None:
    con = sqlite3.connect(str(path))
    try:
        # A fresh temporary file that atomic_write fsyncs and renames: no journal needed.
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute(f"PRAGMA application_id={APPLICATION_ID}")
        con.execute(f"PRAGMA user_version={GALLERY_VERSION}")
        con.executescript(_SCHEMA)
        con.execute(
            f"INSERT INTO {_MARKER_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                GALLERY_FORMAT,
                GALLERY_VERSION,
                snapshot["feature_dim"],
                snapshot["max_exemplars"],
                snapshot["capacity"],
                snapshot["next_anonymous"],
                time.time(),
            ),
        )
        for identity, rank, first_seen, last_seen, exemplars in snapshot["identities"]:
            con.execute("INSERT INTO identities VALUES (?, ?, ?, ?)", (identity, rank, first_seen, last_seen))
            con.executemany(
                "INSERT INTO exemplars (identity, feature, camera, timestamp) VALUES (?, ?, ?, ?)",
                [(identity, blob, camera, stamp) for blob, camera, stamp in exemplars],
            )
        con.commit()
    finally:
        con.close()


def _check_header(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"gallery file {path} does not exist")
    if path.is_dir():
        raise GalleryFileError(f"gallery path {path} is a directory; expected a .db file")
    with open(path, "rb") as f:
        header = f.read(len(_SQLITE_MAGIC))
    if not header:
        raise GalleryFileError(f"{path} is empty (0 bytes); it is not a dslnet_edge gallery")
    if header != _SQLITE_MAGIC:
        raise GalleryFileError(f"{path} is not a SQLite database, so it is not a dslnet_edge gallery")


def _open_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)


def _read_marker(con: sqlite3.Connection, path: Path) -> tuple:
    tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if _MARKER_TABLE not in tables:
        raise GalleryFileError(
            f"{path} is a SQLite database but not a dslnet_edge gallery (it has no {_MARKER_TABLE} table; "
            f"its tables: {sorted(tables)[:8]})"
        )
    rows = con.execute(
        f"SELECT format, format_version, feature_dim, max_exemplars, capacity, next_anonymous FROM {_MARKER_TABLE}"
    ).fetchall()
    if len(rows) != 1 or rows[0][0] != GALLERY_FORMAT:
        raise GalleryFileError(f"{path}: its {_MARKER_TABLE} table does not hold one {GALLERY_FORMAT!r} row; not a gallery this code wrote")
    version = rows[0][1]
    if not isinstance(version, int) or version > GALLERY_VERSION:
        raise GalleryFileError(f"{path} is a gallery of format version {version!r}; this dslnet_edge reads up to {GALLERY_VERSION}: upgrade it")
    return rows[0]


def _refuse_foreign_destination(path: Path) -> None:
    """Raise unless ``path`` is an empty file or a gallery that loads completely."""
    if path.is_file() and path.stat().st_size == 0:
        return  # nothing to lose
    try:
        _read_database(path)
    except (GalleryFileError, sqlite3.DatabaseError) as exc:
        raise GalleryFileError(f"refusing to overwrite {path}: {exc}. Pass overwrite=True to replace it") from None


def _fingerprint(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _read_database(path: Path) -> dict:
    _check_header(path)
    fingerprint = _fingerprint(path)
    try:
        con = _open_read_only(path)
        try:
            _, _, dim, max_exemplars, capacity, next_anonymous = _read_marker(con, path)
            identities = con.execute("SELECT identity, first_seen, last_seen FROM identities ORDER BY recency").fetchall()
            rows = con.execute("SELECT identity, feature, camera, timestamp FROM exemplars ORDER BY id").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise GalleryFileError(f"{path} is a corrupt gallery database: {exc}") from None
    limits = (("feature_dim", dim, 0, MAX_FEATURE_DIM), ("max_exemplars", max_exemplars, 1, MAX_EXEMPLARS),
              ("capacity", capacity, 1, MAX_CAPACITY), ("next_anonymous", next_anonymous, 0, 2**62))
    for name, value, low, high in limits:  # checked before anything is allocated from them
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise GalleryFileError(f"{path} has an invalid {name} {value!r} (expected an integer in [{low}, {high:,}])")
    for identity, first, last in identities:
        _file_check(path, _check_identity, identity)
        for what, value in (("first_seen", first), ("last_seen", last)):
            if not _is_finite_number(value):
                raise GalleryFileError(f"{path}: identity {identity!r} has an invalid {what} {value!r}")
    by_identity: dict[str, list] = {identity: [] for identity, _, _ in identities}
    for identity, blob, camera, stamp in rows:
        if camera is not None and not isinstance(camera, str):
            raise GalleryFileError(f"{path}: an exemplar of {identity!r} has a camera of type {type(camera).__name__}, not text")
        _file_check(path, _check_camera, camera)
        if not _is_finite_number(stamp):
            raise GalleryFileError(f"{path}: an exemplar of {identity!r} has an invalid timestamp {stamp!r}")
        if identity not in by_identity:
            raise GalleryFileError(f"{path}: an exemplar belongs to identity {identity!r}, which is not in its identities table")
        if not isinstance(blob, bytes) or len(blob) != 4 * dim:
            size = len(blob) if isinstance(blob, bytes) else type(blob).__name__
            raise GalleryFileError(f"{path}: an exemplar of {identity!r} has {size} bytes; expected {4 * dim} ({dim} float32)")
        feat = np.frombuffer(blob, dtype="<f4").astype(np.float32)
        if not np.isfinite(feat).all() or not np.any(feat):
            raise GalleryFileError(f"{path}: an exemplar of {identity!r} is NaN/inf or all zeros (corrupt)")
        by_identity[identity].append((feat, camera, float(stamp)))
    return {
        "feature_dim": dim,
        "max_exemplars": max_exemplars,
        "capacity": capacity,
        "next_anonymous": int(next_anonymous),
        "fingerprint": fingerprint,
        "identities": [(identity, float(first), float(last), by_identity[identity]) for identity, first, last in identities],
    }


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def unit_features(x: np.ndarray, what: str, dim: int | None) -> np.ndarray:
    """Validate ``[D]``/``[N, D]`` features (``D == dim`` unless None) and L2-normalize them (float32 ``[N, D]``)."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
        raise GalleryError(f"{what} must be a float array, got dtype {x.dtype}")
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise GalleryError(f"{what} must have shape [D] or [N, D] with N, D >= 1, got {np.shape(x)}")
    if dim is not None and x.shape[1] != dim:
        raise GalleryError(f"{what} have {x.shape[1]} dimensions but this gallery holds {dim}-d embeddings (another model?)")
    if dim is None and x.shape[1] > MAX_FEATURE_DIM:
        raise GalleryError(f"{what} have {x.shape[1]} dimensions; at most {MAX_FEATURE_DIM:,} are supported")
    x = x.astype(np.float64)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise GalleryError(f"{what} row {int(np.argmin(finite))} contains NaN/inf")
    norms = np.linalg.norm(x, axis=1)
    if (norms < 1e-12).any():
        raise GalleryError(f"{what} row {int(np.argmax(norms < 1e-12))} is all zeros; it has no direction to compare")
    return (x / norms[:, None]).astype(np.float32)


def _check_search_args(top_k, cameras, since, until) -> tuple[int, tuple | None]:
    """Validate search arguments shared by every gallery; returns ``(top_k, filters or None)``."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    if isinstance(cameras, str):
        raise ValueError(f"cameras must be a collection of camera names, got the string {cameras!r} (wrap it in a list)")
    if cameras is not None:
        cameras = frozenset(_check_camera(c) for c in cameras)
    for name, value in (("since", since), ("until", until)):
        if value is not None and not _is_finite_number(value):
            raise ValueError(f"{name} must be a finite number of seconds or None, got {value!r}")
    if cameras is None and since is None and until is None:
        return top_k, None
    return top_k, (cameras, None if since is None else float(since), None if until is None else float(until))


def _check_identity(identity: object) -> None:
    if not isinstance(identity, str) or not identity:
        raise GalleryError(f"identity must be a non-empty string, got {identity!r}")
    _check_encodable(identity, "identity")


def _check_camera(camera: object) -> str | None:
    if camera is None:
        return None
    camera = str(camera)
    _check_encodable(camera, "camera")
    return camera


def _check_encodable(text: str, what: str) -> None:
    """Refuse text that SQLite (UTF-8) cannot store, such as lone surrogates, when it arrives, not at save time."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise GalleryError(f"{what} {text!r} is not valid Unicode text ({exc.reason} at {exc.start}); it could not be saved") from None


def _file_check(path: Path, check, value) -> None:
    try:
        check(value)
    except GalleryError as exc:
        raise GalleryFileError(f"{path}: {exc}") from None


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _import_faiss():
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError(f"Gallery(index='faiss') needs faiss (pip install faiss-cpu): {exc}") from None
    return faiss
