"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li: "Re-ranking Person Re-identification with
k-reciprocal Encoding", CVPR 2017), written from the paper's description.

Steps, for every probe ``p`` over the pooled set (queries and gallery together):

1. ``N(p, k)``: the k nearest neighbours of ``p`` (``p`` itself included, as rank 0).
2. ``R(p, k) = {g in N(p, k) : p in N(g, k)}`` - the *k-reciprocal* neighbours (Eq. 4).
3. Expansion (Eq. 6): for every ``q in R(p, k1)``, if ``|R(p, k1) ∩ R(q, k1/2)| >= 2/3 |R(q, k1/2)|``
   then ``R*(p, k1) = R*(p, k1) ∪ R(q, k1/2)``.
4. Encoding (Eq. 7): ``V[p, g] = exp(-d(p, g))`` for ``g in R*(p, k1)``, else 0; each row is
   normalized to sum to one so that Jaccard distances compare like with like.
5. Local query expansion (Eq. 11): ``V[p] = mean of V[g] over g in N(p, k2)``.
6. Jaccard distance (Eq. 10): ``d_J(p, g) = 1 - sum_j min(V[p,j], V[g,j]) / sum_j max(V[p,j], V[g,j])``.
7. Final distance (Eq. 12): ``d* = (1 - lambda) d_J + lambda d`` with the defaults k1 = 20, k2 = 6,
   lambda = 0.3 of the paper.

The original distance ``d`` is whatever the caller ranks with (cosine distance here). numpy only,
O((Nq + Ng)^2) memory: fine for the evaluation sets of a few thousand images.
"""

from __future__ import annotations

import numpy as np

__all__ = ["k_reciprocal_rerank", "k_reciprocal_neighbours"]


def k_reciprocal_neighbours(ranked: np.ndarray, i: int, k: int) -> np.ndarray:
    """``R(i, k)``: the members of ``i``'s top-k (row ``ranked[i]``) whose own top-k contains ``i``.

    Example:
        >>> ranked = np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0]])   # each row: neighbours by distance
        >>> k_reciprocal_neighbours(ranked, 0, 2).tolist()          # 1's top-2 holds 0; 0 is itself
        [0, 1]
        >>> k_reciprocal_neighbours(ranked, 2, 2).tolist()          # 1's top-2 is {1, 0}: not reciprocal
        [2]
    """
    forward = ranked[i, :k]
    backward = ranked[forward, :k]
    return forward[np.any(backward == i, axis=1)]


def k_reciprocal_rerank(
    q_g: np.ndarray,
    q_q: np.ndarray,
    g_g: np.ndarray,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked ``[Nq, Ng]`` distances from the query-gallery, query-query and gallery-gallery distances."""
    q_g, q_q, g_g = (np.asarray(a, dtype=np.float64) for a in (q_g, q_q, g_g))
    nq, ng = q_g.shape
    if q_q.shape != (nq, nq) or g_g.shape != (ng, ng):
        raise ValueError(f"distance shapes disagree: q_g {q_g.shape}, q_q {q_q.shape}, g_g {g_g.shape}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got {k1}, {k2}")
    n = nq + ng
    k1, k2 = min(k1, n), min(k2, n)
    full = np.block([[q_q, q_g], [q_g.T, g_g]])
    ranked = np.argsort(full, axis=1, kind="stable")
    # make each point its own first neighbour even when duplicates tie with it at distance 0
    for i in range(n):
        if ranked[i, 0] != i:
            row = ranked[i][ranked[i] != i]
            ranked[i] = np.concatenate([[i], row])

    half = max(1, int(round(k1 / 2)))
    encoded = np.zeros((n, n))
    for i in range(n):
        r = k_reciprocal_neighbours(ranked, i, k1)
        expanded = r
        for candidate in r:
            rc = k_reciprocal_neighbours(ranked, int(candidate), half)
            if len(np.intersect1d(rc, r)) >= 2.0 / 3.0 * len(rc):
                expanded = np.union1d(expanded, rc)
        weights = np.exp(-full[i, expanded])
        encoded[i, expanded] = weights / weights.sum()

    if k2 > 1:
        encoded = encoded[ranked[:, :k2]].mean(axis=1)

    v_q, v_g = encoded[:nq], encoded[nq:]
    jaccard = np.empty((nq, ng))
    for i in range(nq):
        inter = np.minimum(v_q[i][None, :], v_g).sum(1)
        union = np.maximum(v_q[i][None, :], v_g).sum(1)
        jaccard[i] = 1.0 - inter / np.maximum(union, 1e-12)
    return (1.0 - lambda_value) * jaccard + lambda_value * q_g
