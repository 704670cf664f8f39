"""Re-identification metrics: distances, Rank-k (CMC) and mAP, as pure numpy functions.

Training, the evaluation CLI, calibration's accuracy gate and the peer comparison all rank
with these functions, so every number in the project is computed the same way.

Protocol (Market-1501, single query): for each query, the gallery images of the *same identity
seen by the same camera* are removed (they would be trivially easy), the rest is sorted by
ascending distance; a query whose identity has no remaining gallery image is skipped. Ties are
broken by gallery order (a stable sort), so results are deterministic. Identity 0 in a gallery
is an ordinary identity (the Market-1501 "distractors" never match a query); junk images
(identity -1) are the readers' business and should not be passed here.

numpy only: importing this module never imports torch.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["RankResult", "cosine_distance", "euclidean_distance", "evaluate_rank", "average_precision"]


@dataclasses.dataclass(frozen=True)
class RankResult:
    """What :func:`evaluate_rank` returns.

    Attributes:
        cmc: ``[max_rank]`` float array; ``cmc[k-1]`` is the fraction of valid queries whose first
            correct match is within the top k (Rank-k).
        mAP: mean over valid queries of the average precision.
        ap: ``[num_queries]`` average precision per query (NaN for skipped queries).
        first_match: ``[num_queries]`` 0-based rank of the first correct match (-1 for skipped queries).
        num_valid: queries that had at least one correct gallery match.
    """

    cmc: np.ndarray
    mAP: float
    ap: np.ndarray
    first_match: np.ndarray
    num_valid: int

    def __post_init__(self) -> None:
        if self.cmc.ndim != 1 or self.cmc.size == 0:
            raise ValueError(f"cmc must be a non-empty 1-D array, got shape {self.cmc.shape}")
        if self.ap.shape != self.first_match.shape:
            raise ValueError(f"ap {self.ap.shape} and first_match {self.first_match.shape} must have the same shape")
        if not 0 <= self.num_valid <= self.ap.size:
            raise ValueError(f"num_valid {self.num_valid} outside 0..{self.ap.size}")

    def rank(self, k: int) -> float:
        """Rank-k accuracy (k is 1-based)."""
        if not 1 <= k <= self.cmc.size:
            raise ValueError(f"rank {k} outside 1..{self.cmc.size} (max_rank)")
        return float(self.cmc[k - 1])

    @property
    def rank1(self) -> float:
        return self.rank(1)

    def to_dict(self, ranks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
        """``{"rank1": .., "rank5": .., "rank10": .., "mAP": .., "num_valid": ..}`` (ranks clipped to max_rank)."""
        out = {f"rank{k}": self.rank(k) for k in ranks if k <= self.cmc.size}
        out["mAP"] = self.mAP
        out["num_valid"] = self.num_valid
        return out


def _as_2d_float(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [N, D] array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    return x


def cosine_distance(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """``1 - cos(q, g)`` for every pair, ``[Nq, Ng]`` in [0, 2]. Rows are L2-normalized first.

    Example:
        >>> q = np.array([[1.0, 0.0]]); g = np.array([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> cosine_distance(q, g).round(6).tolist()
        [[0.0, 1.0, 2.0]]
    """
    q = _as_2d_float(query, "query")
    g = _as_2d_float(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query has {q.shape[1]} features but gallery has {g.shape[1]}")
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    return np.clip(1.0 - q @ g.T, 0.0, 2.0)


def euclidean_distance(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Euclidean distance for every pair, ``[Nq, Ng]``.

    Example:
        >>> euclidean_distance(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0], [0.0, 1.0]])).tolist()
        [[5.0, 1.0]]
    """
    q = _as_2d_float(query, "query")
    g = _as_2d_float(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query has {q.shape[1]} features but gallery has {g.shape[1]}")
    sq = (q * q).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2.0 * (q @ g.T)
    return np.sqrt(np.maximum(sq, 0.0))


def average_precision(matches: np.ndarray) -> float:
    """AP of one ranked list of booleans (True = correct): mean of precision@k over the hits.

    Example:
        >>> average_precision(np.array([True, False, True]))  # (1/1 + 2/3) / 2
        0.8333333333333333
    """
    matches = np.asarray(matches, dtype=bool)
    hits = np.flatnonzero(matches)
    if hits.size == 0:
        raise ValueError("average precision needs at least one correct match")
    precision_at_hits = np.arange(1, hits.size + 1) / (hits + 1)
    return float(precision_at_hits.mean())


def evaluate_rank(
    distmat: np.ndarray,
    query_ids: np.ndarray,
    gallery_ids: np.ndarray,
    query_cams: np.ndarray,
    gallery_cams: np.ndarray,
    *,
    max_rank: int = 50,
) -> RankResult:
    """CMC and mAP under the Market-1501 single-query protocol.

    Args:
        distmat: ``[Nq, Ng]`` distances (smaller = more similar).
        query_ids, gallery_ids: identity labels, ``[Nq]`` and ``[Ng]``.
        query_cams, gallery_cams: camera labels; a gallery image with the query's identity *and*
            camera is removed from that query's ranking.
        max_rank: length of the CMC curve (clipped to the gallery size).

    Raises:
        ValueError: on mismatched shapes, non-finite distances, or when no query has a match.

    Example (two queries, three gallery images; query 0's only same-camera match is removed):
        >>> d = np.array([[0.1, 0.2, 0.3], [0.3, 0.1, 0.2]])
        >>> r = evaluate_rank(d, np.array([1, 2]), np.array([1, 2, 1]), np.array([0, 0]), np.array([0, 1, 1]))
        >>> r.cmc.tolist(), round(r.mAP, 4), r.first_match.tolist()
        ([0.5, 1.0, 1.0], 0.75, [1, 0])
    """
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D [num_query, num_gallery], got shape {distmat.shape}")
    nq, ng = distmat.shape
    arrays = {"query_ids": (query_ids, nq), "query_cams": (query_cams, nq),
              "gallery_ids": (gallery_ids, ng), "gallery_cams": (gallery_cams, ng)}
    checked = {}
    for name, (values, expected) in arrays.items():
        values = np.asarray(values)
        if values.shape != (expected,):
            raise ValueError(f"{name} has shape {values.shape}; distmat {distmat.shape} needs ({expected},)")
        checked[name] = values
    if nq == 0 or ng == 0:
        raise ValueError(f"distmat {distmat.shape} is empty: need at least one query and one gallery image")
    if not np.all(np.isfinite(distmat)):
        raise ValueError("distmat contains NaN or infinite distances (a model producing NaN embeddings?)")
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
    max_rank = min(int(max_rank), ng)

    order = np.argsort(distmat, axis=1, kind="stable")
    g_ids = checked["gallery_ids"][order]  # [Nq, Ng] gallery ids in ranked order
    g_cams = checked["gallery_cams"][order]
    q_ids = checked["query_ids"][:, None]
    q_cams = checked["query_cams"][:, None]
    keep = ~((g_ids == q_ids) & (g_cams == q_cams))
    correct = (g_ids == q_ids) & keep

    cmc_sum = np.zeros(max_rank, dtype=np.float64)
    ap = np.full(nq, np.nan)
    first_match = np.full(nq, -1, dtype=np.int64)
    for i in range(nq):
        matches = correct[i][keep[i]]
        if not matches.any():
            continue
        first = int(np.argmax(matches))
        first_match[i] = first
        if first < max_rank:
            cmc_sum[first:] += 1.0
        ap[i] = average_precision(matches)
    num_valid = int((first_match >= 0).sum())
    if num_valid == 0:
        raise ValueError("no query has a correct match in the gallery (check identities and cameras)")
    return RankResult(cmc=cmc_sum / num_valid, mAP=float(np.nanmean(ap)), ap=ap, first_match=first_match,
                      num_valid=num_valid)
