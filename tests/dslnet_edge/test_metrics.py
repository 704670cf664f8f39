"""Rank-k / mAP / CMC against a brute-force reference on hand-made and random matrices."""

from __future__ import annotations

import numpy as np
import pytest

from dslnet_edge.metrics import RankResult, average_precision, cosine_distance, euclidean_distance, evaluate_rank


def brute_force(dist, q_ids, g_ids, q_cams, g_cams, max_rank):
    """Straight from the definitions, one query at a time, with plain Python lists."""
    cmc_hits = [0] * max_rank
    aps = []
    for i in range(len(q_ids)):
        ranked = sorted(range(len(g_ids)), key=lambda j: (dist[i][j], j))
        ranked = [j for j in ranked if not (g_ids[j] == q_ids[i] and g_cams[j] == q_cams[i])]
        flags = [g_ids[j] == q_ids[i] for j in ranked]
        if not any(flags):
            continue
        first = flags.index(True)
        for k in range(max_rank):
            if first <= k:
                cmc_hits[k] += 1
        hits, precisions = 0, []
        for pos, ok in enumerate(flags, 1):
            if ok:
                hits += 1
                precisions.append(hits / pos)
        aps.append(sum(precisions) / len(precisions))
    return [h / len(aps) for h in cmc_hits], sum(aps) / len(aps)


def test_hand_made_matrix_values_worked_out_by_hand():
    # query 0 (id 1, cam 0): gallery order by distance 2,0,1,3 ; gallery 0 (id 1, cam 0) is removed
    #   remaining order: g2 (id 1, cam 1) correct, g1 (id 2) wrong, g3 (id 1) correct
    #   first match at rank 1; AP = (1/1 + 2/3) / 2 = 5/6
    # query 1 (id 2, cam 1): gallery order 3,1,... ; g3 wrong, g1 (id 2, cam 0) correct -> rank 2, AP = 1/2
    dist = np.array([[0.2, 0.5, 0.1, 0.9],
                     [0.8, 0.3, 0.9, 0.1]])
    r = evaluate_rank(dist, np.array([1, 2]), np.array([1, 2, 1, 1]), np.array([0, 1]), np.array([0, 0, 1, 1]),
                      max_rank=3)
    assert r.cmc.tolist() == [0.5, 1.0, 1.0]
    assert r.mAP == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert r.first_match.tolist() == [0, 1]
    assert r.ap.tolist() == pytest.approx([5 / 6, 1 / 2])
    assert r.rank1 == 0.5 and r.rank(2) == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    nq, ng = int(rng.integers(1, 9)), int(rng.integers(2, 15))
    q_ids, g_ids = rng.integers(0, 4, nq), rng.integers(0, 4, ng)
    q_ids[0] = g_ids[0]  # at least one query has a match
    q_cams, g_cams = rng.integers(0, 2, nq), rng.integers(0, 2, ng)
    g_cams[0] = 1 - q_cams[0]
    # coarse values so that ties occur and the tie rule (gallery order) is exercised
    dist = rng.integers(0, 4, size=(nq, ng)).astype(float)
    max_rank = int(rng.integers(1, ng + 1))
    cmc, mAP = brute_force(dist.tolist(), q_ids.tolist(), g_ids.tolist(), q_cams.tolist(), g_cams.tolist(), max_rank)
    r = evaluate_rank(dist, q_ids, g_ids, q_cams, g_cams, max_rank=max_rank)
    np.testing.assert_allclose(r.cmc, cmc)
    assert r.mAP == pytest.approx(mAP)


def test_queries_without_a_match_are_skipped():
    dist = np.array([[0.1, 0.2], [0.3, 0.4]])
    # query 1 (id 9) has no gallery match; query 0's match is in another camera
    r = evaluate_rank(dist, np.array([1, 9]), np.array([1, 2]), np.array([0, 0]), np.array([1, 1]))
    assert r.num_valid == 1 and r.rank1 == 1.0 and r.first_match.tolist() == [0, -1]
    assert np.isnan(r.ap[1])


def test_same_identity_other_camera_is_kept_same_camera_removed():
    dist = np.array([[0.0, 0.5]])
    same_cam = evaluate_rank(dist, np.array([3]), np.array([3, 3]), np.array([0]), np.array([0, 1]))
    assert same_cam.first_match.tolist() == [0]  # g0 removed, g1 becomes rank 1
    other_cam = evaluate_rank(dist, np.array([3]), np.array([3, 3]), np.array([0]), np.array([1, 1]))
    assert other_cam.ap[0] == 1.0


@pytest.mark.parametrize(
    "dist, q_ids, g_ids, q_cams, g_cams, kwargs, message",
    [
        (np.zeros(3), [0], [0], [0], [1], {}, "2-D"),
        (np.zeros((1, 2)), [0], [0], [0], [1, 1], {}, "gallery_ids"),
        (np.zeros((2, 1)), [0], [0], [0, 1], [1], {}, "query_ids"),
        (np.full((1, 1), np.nan), [0], [0], [0], [1], {}, "NaN"),
        (np.zeros((1, 1)), [0], [0], [0], [1], {"max_rank": 0}, "max_rank"),
        (np.zeros((1, 1)), [0], [1], [0], [1], {}, "no query has a correct match"),
        (np.zeros((1, 1)), [0], [0], [0], [0], {}, "no query has a correct match"),
        (np.zeros((0, 3)), [], [0, 0, 0], [], [0, 0, 0], {}, "empty"),
    ],
)
def test_bad_inputs_raise_clear_errors(dist, q_ids, g_ids, q_cams, g_cams, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_rank(dist, np.array(q_ids), np.array(g_ids), np.array(q_cams), np.array(g_cams), **kwargs)


def test_max_rank_is_clipped_to_the_gallery_and_rank_checks_bounds():
    r = evaluate_rank(np.array([[0.1, 0.2]]), np.array([1]), np.array([1, 2]), np.array([0]), np.array([1, 1]))
    assert r.cmc.size == 2
    with pytest.raises(ValueError, match="rank 3"):
        r.rank(3)
    assert r.to_dict() == {"rank1": 1.0, "mAP": 1.0, "num_valid": 1}


def test_average_precision_by_hand_and_without_hits():
    assert average_precision(np.array([False, True, False, True])) == pytest.approx((1 / 2 + 2 / 4) / 2)
    with pytest.raises(ValueError, match="at least one"):
        average_precision(np.array([False, False]))


def test_distances_against_definitions(rng):
    q, g = rng.normal(size=(3, 5)), rng.normal(size=(4, 5))
    for i in range(3):
        for j in range(4):
            cos = q[i] @ g[j] / np.linalg.norm(q[i]) / np.linalg.norm(g[j])
            assert cosine_distance(q, g)[i, j] == pytest.approx(1 - cos)
            assert euclidean_distance(q, g)[i, j] == pytest.approx(np.linalg.norm(q[i] - g[j]))
    with pytest.raises(ValueError, match="features"):
        cosine_distance(q, g[:, :4])
    with pytest.raises(ValueError, match="2-D"):
        euclidean_distance(q[0], g)


def test_rank_result_validates_shapes():
    with pytest.raises(ValueError, match="cmc"):
        RankResult(np.zeros((2, 2)), 0.0, np.zeros(1), np.zeros(1, int), 0)
    with pytest.raises(ValueError, match="num_valid"):
        RankResult(np.zeros(2), 0.0, np.zeros(1), np.zeros(1, int), 2)
