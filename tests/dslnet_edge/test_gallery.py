"""Gallery: bounded storage, eviction, exact search (NumPy and faiss agree), SQLite persistence,
foreign/corrupt files, and crash safety (a save killed with SIGKILL never damages the old file)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from dslnet_edge.gallery import GALLERY_VERSION, Gallery, GalleryError, GalleryFileError


def _unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_force(gallery: Gallery, queries: np.ndarray, k: int):
    """Reference search: every identity's best exemplar, by hand."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    out = []
    for row in q:
        scores = [(name, float((gallery.features(name) @ row).max())) for name in gallery.identities()]
        out.append(sorted(scores, key=lambda p: -p[1])[:k])
    return out


# -- storage and bounds ----------------------------------------------------------------------
def test_add_search_and_info(rng):
    g = Gallery(max_exemplars=3)
    a, b = _unit(rng, 2), _unit(rng, 1)
    g.add("alice", a, camera="gate", timestamp=10.0)
    g.add("bob", b[0], camera="lobby", timestamp=12.0)
    assert len(g) == 2 and g.num_exemplars == 3 and g.feature_dim == 16
    (hits,) = g.search(a[0], top_k=5)
    assert hits[0][0] == "alice" and hits[0][1] == pytest.approx(1.0, abs=1e-6)
    assert [name for name, _ in hits] == ["alice", "bob"]
    info = g.info("alice")
    assert (info.num_exemplars, info.first_seen, info.last_seen, info.cameras) == (2, 10.0, 10.0, ("gate",))
    np.testing.assert_allclose(g.features("alice"), a, atol=1e-6)
    assert "alice" in g and "carol" not in g


def test_features_are_normalized_and_validated(rng):
    g = Gallery()
    g.add("x", np.array([3.0, 4.0]))
    np.testing.assert_allclose(g.features("x"), [[0.6, 0.8]], atol=1e-7)
    for bad, error in [
        (np.array([0.0, 0.0]), "all zeros"),
        (np.array([np.nan, 1.0]), "NaN/inf"),
        (np.array([1.0, 2.0, 3.0]), "3 dimensions but this gallery holds 2-d"),
        (np.array(["a", "b"]), "must be a float array"),
        (np.zeros((0, 2)), "N, D >= 1"),
    ]:
        with pytest.raises(GalleryError, match=error):
            g.add("y", bad)
    with pytest.raises(GalleryError, match="identity must be a non-empty string"):
        g.add("", np.array([1.0, 0.0]))
    with pytest.raises(GalleryError, match="'nobody' is not in the gallery"):
        g.info("nobody")


def test_exemplars_per_identity_are_bounded_oldest_replaced(rng):
    g = Gallery(max_exemplars=3)
    feats = _unit(rng, 5)
    for i, f in enumerate(feats):
        g.add("p", f, timestamp=float(i))
    assert g.num_exemplars == 3
    np.testing.assert_allclose(g.features("p"), feats[2:], atol=1e-6)  # the three newest, oldest first
    assert g.info("p").last_seen == 4.0 and g.info("p").first_seen == 0.0


def test_capacity_evicts_the_least_recently_seen(rng):
    g = Gallery(capacity=3)
    for name in "abc":
        g.add(name, _unit(rng, 1))
    g.touch("a")  # a is now the most recently seen
    evicted = g.add("d", _unit(rng, 1))
    assert evicted == ["b"] and g.identities() == ["c", "a", "d"]
    g.add("c", _unit(rng, 1))  # adding to c counts as seeing it
    assert g.add("e", _unit(rng, 1)) == ["a"]


def test_endless_stream_stays_within_capacity_and_memory(rng):
    g = Gallery(capacity=50, max_exemplars=4)
    sizes = []
    for i in range(2000):
        g.add(f"id{i}", _unit(rng, 1 + i % 6))
        if i % 100 == 99:
            sizes.append(g.memory_bytes)
        assert len(g) <= 50
    assert g.num_exemplars <= 50 * 4
    assert len(set(sizes)) == 1, sizes  # storage stopped growing once the capacity was reached
    assert g.identities() == [f"id{i}" for i in range(1950, 2000)]
    assert g.search(_unit(rng, 1), top_k=3)[0]  # still searchable


def test_new_identity_names_are_unique(rng):
    g = Gallery()
    g.add("person-000001", _unit(rng, 1))
    names = [g.new_identity() for _ in range(3)]
    assert names == ["person-000002", "person-000003", "person-000004"]


def test_remove_and_clear(rng):
    g = Gallery()
    for name in "abc":
        g.add(name, _unit(rng, 2))
    g.remove("b")
    assert g.identities() == ["a", "c"] and g.num_exemplars == 4
    assert all(name != "b" for name, _ in g.search(_unit(rng, 1), 5)[0])
    g.clear()
    assert len(g) == 0 and g.search(_unit(rng, 2), 3) == [[], []]


# -- search ------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 10, 100])
def test_numpy_search_equals_brute_force(rng, k):
    g = Gallery(max_exemplars=4, capacity=40)
    for i in range(60):  # with evictions, freed slots and partly filled identities
        g.add(f"id{i}", _unit(rng, 1 + i % 5))
    queries = rng.standard_normal((7, 16))
    for got, want in zip(g.search(queries, top_k=k), _brute_force(g, queries, k)):
        assert [n for n, _ in got] == [n for n, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


@pytest.mark.parametrize(("k", "exemplars"), [(1, 1), (5, 4), (20, 8), (500, 3)])
def test_faiss_and_numpy_return_the_same_results(rng, k, exemplars):
    pytest.importorskip("faiss", reason="faiss is optional (pip install faiss-cpu)")
    by_numpy = Gallery(max_exemplars=exemplars, capacity=300, index="numpy")
    by_faiss = Gallery(max_exemplars=exemplars, capacity=300, index="faiss")
    for i in range(400):
        feats = _unit(rng, 1 + i % (exemplars + 2), d=32)
        by_numpy.add(f"id{i}", feats)
        by_faiss.add(f"id{i}", feats)
    queries = rng.standard_normal((25, 32)).astype(np.float32)
    a, b = by_numpy.search(queries, k), by_faiss.search(queries, k)
    for got_numpy, got_faiss in zip(a, b):
        assert [n for n, _ in got_numpy] == [n for n, _ in got_faiss]
        np.testing.assert_allclose([s for _, s in got_numpy], [s for _, s in got_faiss], atol=1e-5)
    by_faiss.add("late", queries[0])  # the faiss index follows changes
    assert by_faiss.search(queries[0], 1)[0][0][0] == "late"


def test_bad_search_arguments(rng):
    g = Gallery(16)
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        g.search(_unit(rng, 1), top_k=0)
    with pytest.raises(GalleryError, match="8 dimensions"):
        g.search(np.ones(8), top_k=1)
    assert g.search(_unit(rng, 2), 3) == [[], []]
    with pytest.raises(ValueError, match="index must be one of"):
        Gallery(index="annoy")


# -- persistence -------------------------------------------------------------------------------
def _filled(rng, n=6, exemplars=3) -> Gallery:
    g = Gallery(max_exemplars=exemplars, capacity=100)
    for i in range(n):
        g.add(f"id{i}", _unit(rng, 1 + i % 4), camera=f"cam{i % 2}", timestamp=100.0 + i)
    g.touch("id0", timestamp=200.0)
    g.new_identity()
    return g


def test_save_load_round_trip(tmp_path, rng):
    g = _filled(rng)
    path = g.save(tmp_path / "gallery.db")
    h = Gallery.load(path)
    assert h.identities() == g.identities()  # recency order survives
    assert (h.max_exemplars, h.capacity, h.feature_dim) == (g.max_exemplars, g.capacity, g.feature_dim)
    for name in g.identities():
        np.testing.assert_array_equal(h.features(name), g.features(name))
        assert h.info(name) == g.info(name)
    assert h.new_identity() == g.new_identity()  # the name counter survives too
    queries = rng.standard_normal((4, 16))
    assert h.search(queries, 3) == g.search(queries, 3)
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == GALLERY_VERSION
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x44534C47


def test_load_with_smaller_limits_keeps_the_most_recent(tmp_path, rng):
    path = _filled(rng, n=6).save(tmp_path / "g.db")
    with pytest.warns(RuntimeWarning, match="kept 3 of 6 identities"):
        h = Gallery.load(path, capacity=3, max_exemplars=1)
    assert h.identities() == ["id4", "id5", "id0"] and h.num_exemplars == 3


def test_loading_never_modifies_the_file(tmp_path, rng):
    path = _filled(rng).save(tmp_path / "g.db")
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    Gallery.load(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.db"]  # no journal, no temp files


def _foreign_sqlite(path):
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
        con.execute("INSERT INTO invoices VALUES (1, 9.5)")
    return path


def _newer_gallery(path, rng):
    _filled(rng).save(path)
    with sqlite3.connect(path) as con:
        con.execute(f"UPDATE dslnet_edge_gallery SET format_version = {GALLERY_VERSION + 1}")
    return path


def _bad_blob(path, rng):
    _filled(rng).save(path)
    with sqlite3.connect(path) as con:
        con.execute("UPDATE exemplars SET feature = X'0000' WHERE id = 2")
    return path


def _truncated(path, rng):
    g = _filled(rng, n=60)
    g.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda p, rng: p.write_text("identity,feature\nalice,0.1\n" * 20), "is not a SQLite database"),
        (lambda p, rng: p.write_bytes(b""), r"is empty \(0 bytes\)"),
        (lambda p, rng: _foreign_sqlite(p), r"is a SQLite database but not a dslnet_edge gallery.*invoices"),
        (_newer_gallery, "format version 2; this dslnet_edge reads up to 1"),
        (_bad_blob, "has 2 bytes; expected 64"),
        (_truncated, "corrupt gallery database"),
    ],
    ids=["text", "empty", "foreign-sqlite", "newer", "bad-blob", "truncated"],
)
def test_foreign_or_corrupt_files_are_clear_errors_and_never_overwritten(tmp_path, rng, make, error):
    path = tmp_path / "gallery.db"
    make(path, rng)
    before = path.read_bytes()
    with pytest.raises(GalleryFileError, match=error):
        Gallery.load(path)
    if before:  # an empty file holds nothing to lose; anything else is protected
        with pytest.raises(GalleryFileError, match="refusing to overwrite"):
            _filled(rng).save(path)
        assert path.read_bytes() == before
        _filled(rng).save(path, overwrite=True)  # only when asked
        assert len(Gallery.load(path)) == 6


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.db does not exist"):
        Gallery.load(tmp_path / "nope.db")
    with pytest.raises(GalleryFileError, match="is a directory"):
        Gallery.load(tmp_path)


def test_saving_over_an_older_gallery_replaces_it(tmp_path, rng):
    path = tmp_path / "g.db"
    _filled(rng, n=2).save(path)
    _filled(rng, n=5).save(path)
    assert len(Gallery.load(path)) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.db"]


def test_empty_gallery_round_trip(tmp_path):
    h = Gallery.load(Gallery(max_exemplars=2, capacity=7).save(tmp_path / "empty.db"))
    assert len(h) == 0 and h.feature_dim is None and h.capacity == 7


# -- crash safety --------------------------------------------------------------------------------
_SAVER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from dslnet_edge.gallery import Gallery

    path, mode = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    g = Gallery(max_exemplars=4, capacity=100_000)
    for i in range(3000):
        g.add(f"id{i}", rng.standard_normal((4, 128)))
    if mode == "pause-before-rename":
        real_replace = os.replace
        def slow_replace(src, dst):
            print("renaming", flush=True)
            time.sleep(60)
            real_replace(src, dst)
    version = 0
    while True:
        print(f"saving {version}", flush=True)
        t0 = time.perf_counter()
        g.save(path)
        print(f"saved {version} {time.perf_counter() - t0:.4f}", flush=True)
        if mode == "pause-before-rename":
            os.replace = slow_replace
        version += 1
        g.add(f"extra{version}", rng.standard_normal(128))
    """
)


def _start_saver(tmp_path, mode):
    script = tmp_path / "saver.py"
    script.write_text(_SAVER)
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "gallery.db"), mode], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )


def _read_until(proc, prefix, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"saver exited early (code {proc.poll()})")
        if line.startswith(prefix):
            return line.split()
    raise AssertionError(f"no {prefix!r} line in {timeout} s")


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX-only")
def test_kill_before_rename_keeps_the_previous_gallery(tmp_path):
    proc = _start_saver(tmp_path, "pause-before-rename")
    try:
        _read_until(proc, "saved 0")
        _read_until(proc, "renaming")  # save 1 is fully written to its temp file, not yet renamed
    finally:
        _kill(proc)
    g = Gallery.load(tmp_path / "gallery.db")
    assert len(g) == 3000 and "extra1" not in g  # exactly version 0
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".gallery.db.")]
    assert leftovers, "the kill should have interrupted a save (a temp file is left behind)"


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX-only")
@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
def test_kill_during_save_never_leaves_a_corrupt_gallery(tmp_path, fraction):
    proc = _start_saver(tmp_path, "loop")
    try:
        seconds = float(_read_until(proc, "saved 0")[2])
        _read_until(proc, "saving 1")
        time.sleep(seconds * fraction)  # somewhere inside the second save
    finally:
        _kill(proc)
    g = Gallery.load(tmp_path / "gallery.db")
    assert len(g) in (3000, 3001, 3002)  # a complete version: before or after one of the saves
    assert g.num_exemplars == 4 * 3000 + (len(g) - 3000)


# -- threads -------------------------------------------------------------------------------------
def test_concurrent_adds_and_searches_stay_consistent(rng):
    g = Gallery(capacity=200, max_exemplars=2)
    errors: list[BaseException] = []

    def writer(w):
        local = np.random.default_rng(w)
        try:
            for i in range(300):
                g.add(f"w{w}-{i}", _unit(local, 1))
        except BaseException as exc:
            errors.append(exc)

    def reader():
        local = np.random.default_rng(99)
        try:
            for _ in range(200):
                for hits in g.search(_unit(local, 3), 5):
                    assert all(name in g or True for name, _ in hits)
                    assert hits == sorted(hits, key=lambda p: (-p[1], p[0]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(g) == 200 and g.num_exemplars == 200


# -- issue 14: bounded search memory, hostile gallery files, symlinks, unencodable names -----
def test_search_of_many_queries_is_done_in_bounded_blocks(rng):
    """4,000 queries against 8,000 exemplar slots: the whole similarity matrix would be 128 MB."""
    import tracemalloc

    from dslnet_edge import gallery as gallery_module

    g = Gallery(max_exemplars=8, capacity=1000)
    feats = _unit(rng, 8000)
    for i in range(1000):
        g.add(f"id{i}", feats[8 * i : 8 * i + 8], timestamp=float(i))
    queries = _unit(rng, 4000)
    full_matrix = 8000 * 4000 * 4
    tracemalloc.start()
    try:
        results = g.search(queries, top_k=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < gallery_module.SEARCH_BLOCK_ELEMENTS * 4 + 16 * 2**20 < full_matrix
    assert len(results) == 4000
    # blocks change nothing: the same answers as the reference, on a sample of the queries
    for i in (0, 1, 1999, 3999):
        expected = _brute_force(g, queries[i : i + 1], 3)[0]
        assert [n for n, _ in results[i]] == [n for n, _ in expected]
        np.testing.assert_allclose([s for _, s in results[i]], [s for _, s in expected], atol=1e-5)


def _saved_gallery(rng, path):
    g = Gallery(max_exemplars=2)
    g.add("alice", _unit(rng, 2), camera="gate", timestamp=1.0)
    g.add("bob", _unit(rng, 1), camera="lobby", timestamp=2.0)
    g.save(path)
    return path


@pytest.mark.parametrize(
    "edit, expected",
    [
        ("UPDATE dslnet_edge_gallery SET max_exemplars = 100000000000", "invalid max_exemplars 100000000000"),
        ("UPDATE dslnet_edge_gallery SET capacity = 'many'", "invalid capacity 'many'"),
        ("UPDATE dslnet_edge_gallery SET feature_dim = 10000000", "invalid feature_dim 10000000"),
        ("UPDATE dslnet_edge_gallery SET next_anonymous = 'seven'", "invalid next_anonymous 'seven'"),
        ("UPDATE identities SET first_seen = 'yesterday' WHERE identity = 'bob'", "invalid first_seen 'yesterday'"),
        ("UPDATE identities SET last_seen = 'tomorrow' WHERE identity = 'bob'", "invalid last_seen 'tomorrow'"),
        ("UPDATE exemplars SET timestamp = 'noon' WHERE identity = 'bob'", "invalid timestamp 'noon'"),
        ("UPDATE exemplars SET camera = x'00ff' WHERE identity = 'bob'", "camera of type bytes"),
        ("UPDATE identities SET identity = x'626f62' WHERE identity = 'bob'", "identity must be a non-empty string, got b'bob'"),
    ],
)
def test_hand_edited_bad_values_are_gallery_file_errors(rng, tmp_path, edit, expected):
    path = _saved_gallery(rng, tmp_path / "g.db")
    con = sqlite3.connect(path)
    con.execute("PRAGMA foreign_keys=OFF")
    con.execute(edit)
    con.commit()
    con.close()
    with pytest.raises(GalleryFileError, match=expected):
        Gallery.load(path)


def test_huge_max_exemplars_is_refused_before_allocating():
    with pytest.raises(ValueError, match="max_exemplars must be at most"):
        Gallery(4, max_exemplars=10**11)
    with pytest.raises(ValueError, match="feature_dim must be at most"):
        Gallery(10**9)


def test_saving_through_a_symlink_writes_the_target(rng, tmp_path):
    (tmp_path / "real").mkdir()
    target = _saved_gallery(rng, tmp_path / "real" / "g.db")
    link = tmp_path / "current.db"
    link.symlink_to(target)
    g = Gallery.load(link)
    g.add("carol", _unit(rng, 1), timestamp=3.0)
    g.save(link)
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert sorted(Gallery.load(target).identities()) == ["alice", "bob", "carol"]


@pytest.mark.parametrize("identity, camera, what", [("bad\udc80name", None, "identity"), ("ok", "gate\ud800", "camera")])
def test_lone_surrogates_are_refused_at_entry(rng, tmp_path, identity, camera, what):
    g = Gallery()
    with pytest.raises(GalleryError, match=f"{what} .* is not valid Unicode"):
        g.add(identity, _unit(rng, 1), camera=camera)
    with pytest.raises(GalleryError, match="not valid Unicode"):
        g.new_identity("p\udfff-")
    g.add("fine", _unit(rng, 1), camera="gate")
    g.save(tmp_path / "g.db")  # nothing unencodable got in, so saving still works
    assert Gallery.load(tmp_path / "g.db").identities() == ["fine"]


def test_numpy_timestamps_are_seconds_like_floats():
    gallery = Gallery(feature_dim=4)
    feature = np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)
    gallery.add("a", feature, camera="c1", timestamp=np.int64(1_700_000_000))
    gallery.add("b", feature, camera="c1", timestamp=np.float32(5.0))
    with pytest.raises(ValueError, match="finite number of seconds"):
        gallery.add("c", feature, timestamp=np.float64("nan"))
