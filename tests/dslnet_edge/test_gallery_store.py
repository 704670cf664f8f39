"""One set of semantics, two gallery stores: the SQLite/NumPy ``Gallery`` and ``MilvusGallery`` on real milvus-lite.

Every test here runs against both stores; the Matcher gets the same top-1 on real crops with either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dslnet_edge.gallery import Gallery, GalleryError, GalleryStore

pytest.importorskip("pymilvus", reason="needs pymilvus + milvus-lite (pip install 'dslnet-edge[milvus]')")


def _milvus(tmp_path: Path, **kwargs):
    from dslnet_edge.milvus_gallery import MilvusGallery

    return MilvusGallery(str(tmp_path / "gallery_milvus.db"), **kwargs)


@pytest.fixture(params=["sqlite", "milvus"])
def make_store(request, tmp_path):
    made = []

    def make(**kwargs) -> GalleryStore:
        store = Gallery(**kwargs) if request.param == "sqlite" else _milvus(tmp_path, **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        if hasattr(store, "close"):
            store.close()


def _unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exemplars_are_bounded_oldest_replaced(make_store, rng):
    g = make_store(max_exemplars=3)
    feats = _unit(rng, 5)
    g.add("a", feats[:2], camera="gate", timestamp=1.0)
    g.add("a", feats[2:], camera="lobby", timestamp=2.0)
    np.testing.assert_allclose(g.features("a"), feats[2:], atol=1e-6)
    info = g.info("a")
    assert (info.num_exemplars, info.first_seen, info.last_seen, info.cameras) == (3, 1.0, 2.0, ("lobby",))
    assert g.num_exemplars == 3 and len(g) == 1 and "a" in g and "b" not in g


def test_capacity_evicts_the_least_recently_seen(make_store, rng):
    g = make_store(capacity=3)
    for t, name in enumerate("abc", start=1):
        assert g.add(name, _unit(rng, 1), timestamp=float(t)) == []
    g.touch("a", timestamp=4.0)
    assert g.add("d", _unit(rng, 1), timestamp=5.0) == ["b"]
    assert g.identities() == ["c", "a", "d"]
    g.remove("c")
    assert g.identities() == ["a", "d"] and "c" not in g
    with pytest.raises(GalleryError, match="not in the gallery"):
        g.touch("c")


def test_search_is_exact_cosine_over_best_exemplars(make_store, rng):
    g = make_store(max_exemplars=3)
    feats = _unit(rng, 60)
    for i in range(20):
        g.add(f"id{i:02d}", feats[3 * i : 3 * i + 1 + i % 3], timestamp=float(i))
    queries = _unit(rng, 7)
    got = g.search(queries, top_k=4)
    for q, hits in zip(queries, got):
        scores = sorted(((n, float((g.features(n) @ q).max())) for n in g.identities()), key=lambda p: (-p[1], p[0]))[:4]
        assert [n for n, _ in hits] == [n for n, _ in scores]
        np.testing.assert_allclose([s for _, s in hits], [s for _, s in scores], atol=1e-5)
    np.testing.assert_allclose(g.similarity("id05", queries), (g.features("id05") @ queries.T).max(axis=0), atol=1e-6)


def test_camera_and_time_filters(make_store, rng):
    g = make_store()
    e = _unit(rng, 3)
    g.add("x", e[0], camera="gate", timestamp=10.0)
    g.add("x", e[1], camera="lobby", timestamp=20.0)
    g.add("y", e[2], camera='odd "name" \\ ü', timestamp=30.0)
    near_e1 = float(e[0] @ e[1])

    def best(**filters):
        (hits,) = g.search(e[1], top_k=2, **filters)
        return {n: round(s, 5) for n, s in hits}

    assert best()["x"] == pytest.approx(1.0, abs=1e-5)
    assert best(cameras=["gate"]) == {"x": pytest.approx(near_e1, abs=1e-5)}
    assert best(since=15.0)["x"] == pytest.approx(1.0, abs=1e-5)
    assert best(until=15.0) == {"x": pytest.approx(near_e1, abs=1e-5)}
    assert best(cameras=["nowhere"]) == {}
    assert set(best(cameras=['odd "name" \\ ü'])) == {"y"}
    assert set(best(since=25.0, until=35.0)) == {"y"}
    with pytest.raises(ValueError, match="wrap it in a list"):
        g.search(e[0], cameras="gate")


def test_names_are_validated_and_new_names_unique(make_store, rng):
    g = make_store()
    for bad in ("", "bad\udc80"):
        with pytest.raises(GalleryError):
            g.add(bad, _unit(rng, 1))
    with pytest.raises(GalleryError, match="camera .* is not valid Unicode"):
        g.add("ok", _unit(rng, 1), camera="c\ud800")
    names = {g.new_identity() for _ in range(20)}
    assert len(names) == 20 and all(n.startswith("person-") for n in names)
    g.add('we"ird\\ näme', _unit(rng, 1))
    assert g.identities() == ['we"ird\\ näme']
    with pytest.raises(GalleryError, match="dimensions"):
        g.add("other", _unit(rng, 1, d=8))
    g.clear()
    assert len(g) == 0 and g.num_exemplars == 0 and g.search(_unit(rng, 1)) == [[]]


def test_milvus_gallery_persists_and_keeps_its_settings(tmp_path, rng):
    feats = _unit(rng, 2)
    with _milvus(tmp_path, max_exemplars=4, capacity=50) as g:
        g.add("alice", feats, camera="gate", timestamp=5.0)
    with _milvus(tmp_path) as again:
        assert (again.feature_dim, again.max_exemplars, again.capacity) == (16, 4, 50)
        np.testing.assert_allclose(again.features("alice"), feats, atol=1e-6)
        assert again.info("alice").cameras == ("gate",)
    with pytest.raises(GalleryError, match="has max_exemplars 4, not 8"):
        _milvus(tmp_path, max_exemplars=8)


@pytest.mark.realdata
def test_matcher_top1_is_the_same_with_sqlite_and_milvus(real_data, tmp_path):
    """CUHK03 camera pair 1: 20 identities enrolled from camera 2, their camera-1 query crops matched."""
    import cv2

    import dslnet_edge
    from dslnet_edge.weights import demo_weights

    if not Path(demo_weights("onnx")).exists():
        pytest.skip("demo weights absent")
    root = Path(real_data) / "cuhk03-pair1"
    ids = sorted({p.name[:4] for p in (root / "query").glob("*.jpg")})[:20]
    enrol = [(pid, cv2.imread(str(p))) for pid in ids for p in sorted((root / "bounding_box_test").glob(f"{pid}_*.jpg"))[:2]]
    queries = [cv2.imread(str(sorted((root / "query").glob(f"{pid}_*.jpg"))[0])) for pid in ids]
    with dslnet_edge.Engine() as engine:
        results = {}
        for kind, gallery in (("sqlite", Gallery(engine.feature_dim)), ("milvus", _milvus(tmp_path, feature_dim=engine.feature_dim))):
            matcher = dslnet_edge.Matcher(engine, gallery, auto_enroll=False)
            matcher.enroll([img for _, img in enrol], [pid for pid, _ in enrol], camera="c2", timestamp=1.0)
            matches = matcher.match(queries, camera="c1", timestamp=2.0)
            results[kind] = [(m.identity, m.candidates[0][0], round(m.candidates[0][1], 4)) for m in matches]
    assert results["milvus"] == results["sqlite"]
    top1 = [c for _, c, _ in results["sqlite"]]
    assert np.mean([c == pid for c, pid in zip(top1, ids)]) > 0.3  # real re-identification, not noise
