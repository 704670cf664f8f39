"""k-reciprocal re-ranking: neighbour sets, limits, and a case it must fix."""

from __future__ import annotations

import numpy as np
import pytest

from dslnet_edge.metrics import euclidean_distance, evaluate_rank
from train.rerank import k_reciprocal_neighbours, k_reciprocal_rerank

# identity 0 around (0, 0), identity 1 around (1, 0); the query (identity 0) sits between them and
# the nearest gallery image (0.82, 0) belongs to identity 1, but it is not a reciprocal neighbour of
# the query: its own neighbours are the other identity-1 images.
QUERY = np.array([[0.45, 0.0]])
GALLERY = np.array([[0.0, 0.0], [0.05, 0.1], [-0.05, -0.1], [0.0, 0.12],
                    [0.82, 0.0], [1.0, 0.1], [1.0, -0.1], [1.1, 0.0], [1.05, 0.05]])
IDS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])


def distances():
    return euclidean_distance(QUERY, GALLERY), euclidean_distance(QUERY, QUERY), euclidean_distance(GALLERY, GALLERY)


def test_reciprocal_neighbours_by_hand():
    # rows list neighbours by distance; 0<->1 are mutual, 2 points at 1 but 1 does not point back
    ranked = np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0]])
    assert k_reciprocal_neighbours(ranked, 0, 2).tolist() == [0, 1]
    assert k_reciprocal_neighbours(ranked, 1, 2).tolist() == [1, 0]
    assert k_reciprocal_neighbours(ranked, 2, 2).tolist() == [2]
    assert k_reciprocal_neighbours(ranked, 2, 3).tolist() == [2, 1, 0]


def test_rerank_fixes_a_non_reciprocal_nearest_neighbour():
    q_g, q_q, g_g = distances()
    cams = (np.array([0]), np.ones(len(IDS), int))
    before = evaluate_rank(q_g, np.array([0]), IDS, *cams)
    after = evaluate_rank(k_reciprocal_rerank(q_g, q_q, g_g), np.array([0]), IDS, *cams)
    assert before.first_match.tolist() == [1] and before.mAP < 0.7
    assert after.first_match.tolist() == [0] and after.mAP == pytest.approx(1.0)


def test_lambda_one_returns_the_original_distances_and_output_is_bounded():
    q_g, q_q, g_g = distances()
    np.testing.assert_allclose(k_reciprocal_rerank(q_g, q_q, g_g, lambda_value=1.0), q_g)
    out = k_reciprocal_rerank(q_g, q_q, g_g, lambda_value=0.0)
    assert out.shape == q_g.shape and np.all((out >= 0) & (out <= 1 + 1e-12))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"lambda_value": 1.5}, "lambda_value"), ({"k1": 0}, "k1 and k2"), ({"g_g": np.zeros((2, 2))}, "shapes")],
)
def test_bad_arguments(kwargs, message):
    q_g, q_q, g_g = distances()
    args = {"q_g": q_g, "q_q": q_q, "g_g": g_g, **kwargs}
    with pytest.raises(ValueError, match=message):
        k_reciprocal_rerank(args.pop("q_g"), args.pop("q_q"), args.pop("g_g"), **args)
