"""A gallery kept in Milvus, shared by many processes and boxes (``pip install "dslnet-edge[milvus]"``).

::

    gallery = MilvusGallery("gallery_milvus.db")           # milvus-lite: one file, one box, the tests
    gallery = MilvusGallery("http://milvus.site:19530")    # a Milvus server shared by every box
    matcher = dslnet_edge.Matcher(engine, gallery)

Same semantics as :class:`dslnet_edge.gallery.Gallery` (see :class:`~dslnet_edge.gallery.GalleryStore`):
bounded exemplars per identity (oldest replaced), bounded identities (least recently seen evicted),
exact top-k cosine search where an identity scores its best exemplar, camera/time filters. The
same code runs against a milvus-lite file and a Milvus server; only the URI differs.

Layout: three collections named after ``collection``:

* ``<collection>_exemplars``: one row per exemplar (identity key, camera key, timestamp, insertion
  order, the float32 embedding; a ``FLAT`` inner-product index: exact search on unit vectors);
* ``<collection>_identities``: one row per identity (first/last seen);
* ``<collection>_meta``: the settings (format, feature_dim, max_exemplars, capacity), so every
  process that opens the gallery uses the same ones.

Names are stored twice: as text, and as a hex key (UTF-8 bytes in hex) that filter expressions
use, so no identity or camera name (quotes, backslashes, any script) can break or inject into a
Milvus expression. Collections are created with ``Strong`` consistency: a process sees the rows
another one wrote before.

Across processes there are no transactions: two processes adding exemplars to one identity at the
same moment may briefly hold more than ``max_exemplars`` (the next add trims them), and two
processes filling the last free place may both evict. A track belongs to one camera process, so
the Matcher never creates one identity twice for a track; :meth:`new_identity` names are random
(``person-3f9a0c1d2e4b``), never a counter that two boxes could both take.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterable

import numpy as np

from dslnet_edge._checks import timestamp_seconds
from dslnet_edge.errors import MissingDependencyError
from dslnet_edge.gallery import (
    GALLERY_FORMAT,
    MAX_EXEMPLARS,
    GalleryError,
    GalleryFileError,
    GalleryStore,
    IdentityInfo,
    _check_camera,
    _check_identity,
    _check_search_args,
    unit_features,
)

__all__ = ["MilvusGallery", "MAX_MILVUS_CAPACITY"]

#: Milvus returns at most 16,384 rows per query or search (its ``topk`` limit).
_MILVUS_LIMIT = 16384
#: Identities a MilvusGallery may hold (listed in one query for eviction).
MAX_MILVUS_CAPACITY = _MILVUS_LIMIT
_MAX_NAME_BYTES = 1024
_KEY_LENGTH = 2 * _MAX_NAME_BYTES


def _key(name: str) -> str:
    """The hex key of a name: safe inside any Milvus expression."""
    data = name.encode("utf-8")
    if len(data) > _MAX_NAME_BYTES:
        raise GalleryError(f"name {name[:40]!r}... is {len(data)} bytes in UTF-8; a Milvus gallery stores up to {_MAX_NAME_BYTES}")
    return data.hex()


def _keys(names: Iterable[str]) -> str:
    return "[" + ", ".join(f'"{_key(n)}"' for n in names) + "]"


class MilvusGallery(GalleryStore):
    """Gallery rows in Milvus (see the module docstring).

    Args:
        uri: a milvus-lite file (``gallery.db``; its folder must exist) or a server
            (``http://host:19530``).
        collection: base name of the three collections (letters, digits, ``_``).
        feature_dim: embedding length; None takes it from the gallery or the first features added.
        max_exemplars, capacity: the bounds for a new gallery (default 8 and 10,000); an existing
            gallery keeps its own, and asking for others is an error.
        token: Milvus credentials (``user:password`` or an API key), if the server wants them.
    """

    def __init__(
        self,
        uri: str | os.PathLike,
        *,
        collection: str = "dslnet_gallery",
        feature_dim: int | None = None,
        max_exemplars: int | None = None,
        capacity: int | None = None,
        token: str | None = None,
    ):
        if not collection or not all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in collection) or collection[0].isdigit():
            raise ValueError(f"collection must be letters, digits and '_' (not starting with a digit), got {collection!r}")
        for name, value, limit in (("max_exemplars", max_exemplars, MAX_EXEMPLARS), ("capacity", capacity, MAX_MILVUS_CAPACITY),
                                   ("feature_dim", feature_dim, 65536)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit):
                raise ValueError(f"{name} must be an integer in [1, {limit:,}] or None, got {value!r}")
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:
            raise MissingDependencyError(f"MilvusGallery needs pymilvus (pip install 'dslnet-edge[milvus]'): {exc}") from None
        self.uri = os.fspath(uri)
        self.collection = collection
        self._names = {part: f"{collection}_{part}" for part in ("exemplars", "identities", "meta")}
        self._lock = threading.RLock()
        self._last_seq = 0
        try:
            self._client = MilvusClient(uri=self.uri, token=token or "")
        except Exception as exc:  # pymilvus raises its own exception types
            raise GalleryFileError(f"cannot open the Milvus gallery at {self.uri}: {_message(exc)}") from None
        settings = self._read_settings()
        if settings is None:
            self._dim = feature_dim
            self._max_exemplars = max_exemplars or 8
            self._capacity = capacity or 10_000
            if feature_dim is not None:
                self._create()
        else:
            self._dim, self._max_exemplars, self._capacity = settings
            for name, asked, have in (("feature_dim", feature_dim, self._dim), ("max_exemplars", max_exemplars, self._max_exemplars),
                                      ("capacity", capacity, self._capacity)):
                if asked is not None and asked != have:
                    raise GalleryError(f"the Milvus gallery {self.collection!r} at {self.uri} has {name} {have}, not {asked}")

    # -- collections ---------------------------------------------------------------------------
    def _read_settings(self) -> tuple[int, int, int] | None:
        if not self._client.has_collection(self._names["meta"]):
            return None
        rows = self._client.query(self._names["meta"], filter='key == "settings"', output_fields=["value"])
        try:
            data = json.loads(rows[0]["value"])
            if data.get("format") != GALLERY_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            values = tuple(int(data[k]) for k in ("feature_dim", "max_exemplars", "capacity"))
        except (IndexError, KeyError, TypeError, ValueError) as exc:
            raise GalleryFileError(f"{self._names['meta']} at {self.uri} does not hold dslnet_edge gallery settings: {exc}") from None
        return values

    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        client, dim = self._client, self._dim
        specs = {
            "exemplars": [("pk", DataType.INT64, {"is_primary": True}), ("key", DataType.VARCHAR, {"max_length": _KEY_LENGTH}),
                          ("camera_key", DataType.VARCHAR, {"max_length": _KEY_LENGTH, "nullable": True}),
                          ("camera", DataType.VARCHAR, {"max_length": 4 * _MAX_NAME_BYTES, "nullable": True}),
                          ("timestamp", DataType.DOUBLE, {}), ("seq", DataType.INT64, {}),
                          ("vector", DataType.FLOAT_VECTOR, {"dim": dim})],
            "identities": [("key", DataType.VARCHAR, {"is_primary": True, "max_length": _KEY_LENGTH}),
                           ("name", DataType.VARCHAR, {"max_length": 4 * _MAX_NAME_BYTES}),
                           ("first_seen", DataType.DOUBLE, {}), ("last_seen", DataType.DOUBLE, {}),
                           ("vector", DataType.FLOAT_VECTOR, {"dim": 2})],  # Milvus wants a vector in every collection
            "meta": [("key", DataType.VARCHAR, {"is_primary": True, "max_length": 64}),
                     ("value", DataType.VARCHAR, {"max_length": 4096}), ("vector", DataType.FLOAT_VECTOR, {"dim": 2})],
        }
        for part in ("exemplars", "identities", "meta"):  # meta last: its presence says the others exist
            name = self._names[part]
            if client.has_collection(name):
                continue
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            for field, kind, options in specs[part]:
                schema.add_field(field, kind, **options)
            index = client.prepare_index_params()
            index.add_index("vector", index_type="FLAT", metric_type="IP")
            client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
        settings = {"format": GALLERY_FORMAT, "feature_dim": dim, "max_exemplars": self._max_exemplars, "capacity": self._capacity}
        client.upsert(self._names["meta"], [{"key": "settings", "value": json.dumps(settings), "vector": [1.0, 0.0]}])

    # -- properties ----------------------------------------------------------------------------
    @property
    def index(self) -> str:
        return "milvus"

    @property
    def num_exemplars(self) -> int:
        return self._count("exemplars")

    def _count(self, part: str) -> int:
        if self._dim is None:
            return 0
        rows = self._client.query(self._names[part], filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def __len__(self) -> int:
        return self._count("identities")

    def __contains__(self, identity: object) -> bool:
        if not isinstance(identity, str) or not identity or self._dim is None:
            return False
        try:
            return self._identity_row(identity) is not None
        except GalleryError:
            return False

    def _identity_row(self, identity: str) -> dict | None:
        rows = self._client.get(self._names["identities"], ids=[_key(identity)], output_fields=["name", "first_seen", "last_seen"])
        return dict(rows[0]) if rows else None

    def _require(self, identity: str) -> dict:
        _check_identity(identity)
        row = self._identity_row(identity) if self._dim is not None else None
        if row is None:
            raise GalleryError(f"identity {identity!r} is not in the gallery")
        return row

    def _identity_rows(self) -> list[dict]:
        if self._dim is None:
            return []
        rows = self._client.query(self._names["identities"], filter='key != ""', output_fields=["name", "first_seen", "last_seen"],
                                  limit=_MILVUS_LIMIT)
        return sorted((dict(r) for r in rows), key=lambda r: (r["last_seen"], r["name"]))

    def identities(self) -> list[str]:
        """All identities, least recently seen first (by last-seen time, then name)."""
        return [r["name"] for r in self._identity_rows()]

    def _exemplar_rows(self, identity: str, fields: list[str]) -> list[dict]:
        rows = self._client.query(self._names["exemplars"], filter=f'key == "{_key(identity)}"', output_fields=["pk", "seq", *fields],
                                  limit=_MILVUS_LIMIT)
        return sorted((dict(r) for r in rows), key=lambda r: r["seq"])

    def info(self, identity: str) -> IdentityInfo:
        with self._lock:
            row = self._require(identity)
            exemplars = self._exemplar_rows(identity, ["camera"])
            cameras = sorted({r["camera"] for r in exemplars if r.get("camera") is not None})
            return IdentityInfo(identity, len(exemplars), float(row["first_seen"]), float(row["last_seen"]), tuple(cameras))

    def features(self, identity: str) -> np.ndarray:
        with self._lock:
            self._require(identity)
            rows = self._exemplar_rows(identity, ["vector"])
            return np.array([r["vector"] for r in rows], dtype=np.float32).reshape(len(rows), self._dim)

    # -- changes -------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._last_seq = max(self._last_seq + 1, time.time_ns())
        return self._last_seq

    def add(self, identity: str, features: np.ndarray, *, camera: str | None = None, timestamp: float | None = None) -> list[str]:
        _check_identity(identity)
        camera = _check_camera(camera)
        stamp = timestamp_seconds(timestamp)
        key = _key(identity)
        camera_key = None if camera is None else _key(camera)
        with self._lock:
            feats = unit_features(features, "features", self._dim)
            if self._dim is None:
                self._dim = int(feats.shape[1])
                self._create()
            feats = feats[-self._max_exemplars :]
            row = self._identity_row(identity)
            evicted: list[str] = []
            if row is None:
                ranked = self._identity_rows()
                while len(ranked) >= self._capacity:
                    oldest = ranked.pop(0)["name"]
                    self._delete(oldest)
                    evicted.append(oldest)
                first, last = stamp, stamp
            else:
                first, last = min(row["first_seen"], stamp), max(row["last_seen"], stamp)
            self._client.insert(self._names["exemplars"], [
                {"pk": uuid.uuid4().int >> 65, "key": key, "camera_key": camera_key, "camera": camera, "timestamp": stamp,
                 "seq": self._next_seq(), "vector": f.tolist()} for f in feats
            ])
            self._upsert_identity(identity, first, last)
            existing = self._exemplar_rows(identity, [])
            if len(existing) > self._max_exemplars:  # the oldest are replaced
                old = [r["pk"] for r in existing[: len(existing) - self._max_exemplars]]
                self._client.delete(self._names["exemplars"], ids=old)
            return evicted

    def _upsert_identity(self, identity: str, first: float, last: float) -> None:
        self._client.upsert(self._names["identities"], [
            {"key": _key(identity), "name": identity, "first_seen": float(first), "last_seen": float(last), "vector": [1.0, 0.0]}
        ])

    def touch(self, identity: str, *, timestamp: float | None = None) -> None:
        stamp = timestamp_seconds(timestamp)
        with self._lock:
            row = self._require(identity)
            self._upsert_identity(identity, row["first_seen"], max(row["last_seen"], stamp))

    def remove(self, identity: str) -> None:
        with self._lock:
            self._require(identity)
            self._delete(identity)

    def _delete(self, identity: str) -> None:
        self._client.delete(self._names["exemplars"], filter=f'key == "{_key(identity)}"')
        self._client.delete(self._names["identities"], ids=[_key(identity)])

    def clear(self) -> None:
        with self._lock:
            if self._dim is not None:
                self._client.delete(self._names["exemplars"], filter="pk >= 0 or pk < 0")
                self._client.delete(self._names["identities"], filter='key != ""')

    def new_identity(self, prefix: str = "person-") -> str:
        """A fresh random name (``person-3f9a0c1d2e4b``): unique across the processes sharing the gallery."""
        _check_identity(prefix or "x")
        with self._lock:
            while True:
                name = f"{prefix}{uuid.uuid4().hex[:12]}"
                if name not in self:
                    return name

    # -- search --------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, top_k: int = 5, *, cameras: Iterable[str] | None = None,
               since: float | None = None, until: float | None = None) -> list[list[tuple[str, float]]]:
        """The ``top_k`` most similar identities per query, best first (see :meth:`Gallery.search`)."""
        k, filters = _check_search_args(top_k, cameras, since, until)
        with self._lock:
            q = unit_features(queries, "queries", self._dim)
            if self._dim is None:
                return [[] for _ in range(len(q))]
            # The k-th best identity's best exemplar ranks at most (k-1)*max_exemplars + 1 among the rows.
            limit = min(_MILVUS_LIMIT, (k - 1) * self._max_exemplars + 1)
            expression = _filter_expression(filters)
            results = []
            for start in range(0, len(q), 256):  # bounded requests
                hits = self._client.search(self._names["exemplars"], data=q[start : start + 256].tolist(), anns_field="vector",
                                           limit=limit, filter=expression, output_fields=["key"],
                                           search_params={"metric_type": "IP"})
                for row in hits:
                    best: dict[str, float] = {}
                    for hit in row:
                        name = bytes.fromhex(hit["entity"]["key"]).decode("utf-8")
                        best.setdefault(name, float(hit["distance"]))
                    results.append(sorted(best.items(), key=lambda p: (-p[1], p[0]))[:k])
            return results

    def similarity(self, identity: str, queries: np.ndarray) -> np.ndarray:
        with self._lock:
            feats = self.features(identity)
            q = unit_features(queries, "queries", self._dim)
            return (feats @ q.T).max(axis=0).astype(np.float32)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> MilvusGallery:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"MilvusGallery({self.uri!r}, collection={self.collection!r}, dim={self._dim}, "
                f"max_exemplars={self._max_exemplars}, capacity={self._capacity})")


def _filter_expression(filters: tuple | None) -> str:
    if filters is None:
        return ""
    cameras, since, until = filters
    parts = []
    if cameras is not None:
        parts.append(f"camera_key in {_keys(c for c in cameras if c is not None)}" if cameras else "pk < -1")
    if since is not None:
        parts.append(f"timestamp >= {since!r}")
    if until is not None:
        parts.append(f"timestamp <= {until!r}")
    return " and ".join(f"({p})" for p in parts)


def _message(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return " ".join(str(text).split()) or type(exc).__name__

