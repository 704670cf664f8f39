"""Matcher and Match: open-set matching, enrolment, one-to-one assignment, track aggregation,
thread safety, and (with the demo weights) real cross-camera matching on CUHK03.

The engine is real: ONNX Runtime on a tiny random-projection ONNX (``testutils``), under which a
crop and a slightly noisy copy have cosine ~0.99 and different random crops ~0 +- 0.15, so the
threshold 0.7 used here separates "same person" from "different people" cleanly.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from testutils import random_crops, tiny_embedding_onnx

from dslnet_edge.engine import Engine
from dslnet_edge.gallery import Gallery, GalleryError
from dslnet_edge.matcher import DEFAULT_THRESHOLD, Match, Matcher
from dslnet_edge.spec import InputSpec
from dslnet_edge.weights import DEMO_ONNX

SPEC = InputSpec(height=16, width=8, feature_dim=64)
THRESHOLD = 0.7


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(tiny_embedding_onnx(tmp_path_factory.mktemp("matcher") / "tiny.onnx", SPEC))


@pytest.fixture
def people(rng):
    return random_crops(rng, 12, min_hw=(32, 16), max_hw=(64, 32))


def noisy(crop, rng, amount=12):
    return np.clip(crop.astype(np.int16) + rng.integers(-amount, amount + 1, crop.shape), 0, 255).astype(np.uint8)


# -- Match -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(identity="a", similarity=0.9, is_new=False, candidates=[("a", 0.9), ("b", 0.2)]), None),
        (dict(identity="a", similarity=None, is_new=True, candidates=[("b", 0.2)]), None),
        (dict(identity=None, similarity=None, is_new=False), None),
        (dict(identity="", similarity=0.9, is_new=False), "non-empty string"),
        (dict(identity=None, similarity=None, is_new=True), "must have an identity"),
        (dict(identity="a", similarity=0.5, is_new=True), "must be None for new or unknown"),
        (dict(identity=None, similarity=0.5, is_new=False), "must be None for new or unknown"),
        (dict(identity="a", similarity=None, is_new=False), "finite number in"),
        (dict(identity="a", similarity=float("nan"), is_new=False), "finite number in"),
        (dict(identity="a", similarity=1.5, is_new=False), "finite number in"),
        (dict(identity="a", similarity=0.9, is_new=1), "is_new must be a bool"),
        (dict(identity="a", similarity=0.9, is_new=False, candidates=[("b", 0.2), ("a", 0.9)]), "sorted by similarity"),
        (dict(identity="a", similarity=0.9, is_new=False, candidates=[("a",)]), r"\(identity, similarity\) pairs"),
        (dict(identity="a", similarity=0.9, is_new=False, candidates=[(3, 0.9)]), r"\(identity, similarity\) pairs"),
        (dict(identity="a", similarity=0.9, is_new=False, index=-1), "index must be an integer >= 0"),
        (dict(identity=None, similarity=None, is_new=False, pending=True), None),
        (dict(identity="a", similarity=0.9, is_new=False, pending=True), "pending crop"),
    ],
)
def test_match_is_validated(kwargs, error):
    if error is None:
        match = Match(**kwargs)
        assert isinstance(match.candidates, tuple) and all(isinstance(c, tuple) for c in match.candidates)
        assert match.is_known == (match.identity is not None and not match.is_new)
        with pytest.raises(AttributeError):
            match.identity = "other"  # frozen
    else:
        with pytest.raises(ValueError, match=error):
            Match(**kwargs)


# -- open-set matching -------------------------------------------------------------------------
def test_unknown_people_are_enrolled_and_recognised_later(engine, people, rng):
    matcher = Matcher(engine, threshold=THRESHOLD)
    first = matcher.match(people[:3], camera="gate", timestamp=1.0)
    assert [m.is_new for m in first] == [True, True, True]
    assert len({m.identity for m in first}) == 3 and len(matcher.gallery) == 3
    again = matcher.match([noisy(people[2], rng), noisy(people[0], rng), noisy(people[5], rng)], camera="lobby", timestamp=2.0)
    assert again[0].identity == first[2].identity and again[0].is_known and again[0].similarity > 0.95
    assert again[1].identity == first[0].identity
    assert again[2].is_new and again[2].identity not in {m.identity for m in first}
    assert again[2].candidates and again[2].candidates[0][1] < THRESHOLD  # why it was new
    assert [m.index for m in again] == [0, 1, 2] and {m.camera for m in again} == {"lobby"}


def test_without_auto_enroll_strangers_are_unknown(engine, people, rng):
    matcher = Matcher(engine, threshold=THRESHOLD, auto_enroll=False)
    matcher.enroll(people[:2], ["alice", "bob"], camera="desk")
    result = matcher.match([noisy(people[1], rng), people[7]])
    assert (result[0].identity, result[0].is_new) == ("bob", False)
    assert result[1].identity is None and result[1].similarity is None and result[1].is_unknown
    assert len(matcher.gallery) == 2  # nothing enrolled


def test_enroll_several_crops_per_person(engine, people, rng):
    matcher = Matcher(engine, threshold=THRESHOLD)
    matcher.enroll([people[0], noisy(people[0], rng), people[1]], ["alice", "alice", "bob"])
    assert matcher.gallery.info("alice").num_exemplars == 2 and matcher.gallery.info("bob").num_exemplars == 1
    matcher.enroll([people[3]], "carol")
    assert "carol" in matcher.gallery
    with pytest.raises(ValueError, match="2 crops but 1 identities"):
        matcher.enroll(people[:2], ["dave"])
    with pytest.raises(ValueError, match="identity 1 must be a non-empty string"):
        matcher.enroll(people[:2], ["dave", ""])
    matcher.enroll([], [])  # nothing to do


def test_one_identity_per_crop_within_a_frame(engine, people, rng):
    matcher = Matcher(engine, threshold=THRESHOLD, auto_enroll=False)
    matcher.enroll([people[0]], "alice")
    twins = [noisy(people[0], rng, 4), noisy(people[0], rng, 20)]  # both look like alice
    exclusive = matcher.match(twins)
    sims = [c[0][1] for c in (m.candidates for m in exclusive)]
    best = int(np.argmax(sims))
    assert exclusive[best].identity == "alice" and exclusive[1 - best].identity is None
    shared = Matcher(engine, matcher.gallery, threshold=THRESHOLD, auto_enroll=False, exclusive=False).match(twins)
    assert [m.identity for m in shared] == ["alice", "alice"]


def test_matched_views_refresh_exemplars_only_when_new(engine, people, rng):
    matcher = Matcher(engine, threshold=0.5, novelty=0.97)
    matcher.enroll([people[0]], "alice")
    matcher.match([noisy(people[0], rng, 2)])  # nearly the same view: only marked as seen
    assert matcher.gallery.info("alice").num_exemplars == 1
    view = noisy(people[0], rng, 60)  # a different-looking view that still matches
    (m,) = matcher.match([view])
    assert m.identity == "alice" and m.similarity < 0.97
    assert matcher.gallery.info("alice").num_exemplars == 2
    frozen = Matcher(engine, matcher.gallery, threshold=0.5, update_exemplars=False)
    frozen.match([noisy(people[0], rng, 80)])
    assert matcher.gallery.info("alice").num_exemplars == 2


def test_empty_and_bad_inputs(engine, people):
    matcher = Matcher(engine, threshold=THRESHOLD)
    assert matcher.match([]) == []
    assert matcher.match([], track_ids=[]) == []
    with pytest.raises(ValueError, match="crop 1 is None"):
        matcher.match([people[0], None])
    with pytest.raises(ValueError, match="frame_crops must be a list"):
        matcher.match(None)
    with pytest.raises(ValueError, match="track_ids has 1 entries for 2 crops"):
        matcher.match(people[:2], track_ids=[1])
    with pytest.raises(ValueError, match="repeats an id"):
        matcher.match(people[:2], track_ids=[4, 4])
    with pytest.raises(ValueError, match=r"track_ids\[0\] is a list"):
        matcher.match(people[:1], track_ids=[[1]])
    with pytest.raises(ValueError, match="timestamp must be a finite number"):
        matcher.match(people[:1], timestamp=float("inf"))
    assert len(matcher.gallery) == 0  # nothing half-done


def test_enroll_and_match_take_what_embed_takes(engine, people, rng):
    """One NxHxWx3 array works for enroll as it does for embed and match; numpy timestamps are numbers."""
    same_size = [np.ascontiguousarray(c[:32, :16]) for c in people[:3]]
    stack = np.stack(same_size)
    matcher = Matcher(engine, threshold=THRESHOLD)
    matcher.enroll(stack, ["a", "b", "c"], timestamp=np.int64(100))  # was "truth value ... is ambiguous"
    matcher.enroll(stack[:1], "a", timestamp=np.float32(101.5))
    assert sorted(matcher.gallery.identities()) == ["a", "b", "c"]
    matches = matcher.match(np.stack([noisy(c, rng) for c in same_size]), timestamp=np.int64(102), track_ids=[7, 8, 9])
    assert [m.identity for m in matches] == ["a", "b", "c"] and [m.track_id for m in matches] == [7, 8, 9]
    assert matcher.match([same_size[0]], track_ids=[1])[0].identity == "a"  # one crop, in a list
    np.testing.assert_array_equal(engine.embed(stack), engine.embed(same_size))


@pytest.mark.parametrize(
    ("call", "error"),
    [
        # a single crop: the message says to wrap it (was "track_ids has 1 entries for 32 crops")
        (lambda m, c: m.match(c[0], track_ids=[1]), r"frame_crops is one array of shape \(32, 16, 3\); pass a list .*\[crop\]"),
        (lambda m, c: m.enroll(c[0], "a"), r"crops is one array of shape \(32, 16, 3\)"),
        # generators: a clear message, the same for match and enroll (was "has no len()")
        (lambda m, c: m.match(x for x in c), r"frame_crops must be a list .* got generator: pass list\(\.\.\.\)"),
        (lambda m, c: m.enroll((x for x in c), "a"), r"crops must be a list .* got generator: pass list\(\.\.\.\)"),
        (lambda m, c: m.enroll(c, "a", timestamp=np.bool_(True)), "timestamp must be a finite number"),
        (lambda m, c: m.enroll(c, "a", timestamp=np.float64("nan")), "timestamp must be a finite number"),
    ],
)
def test_crop_containers_are_checked_with_a_clear_message(engine, people, call, error):
    matcher = Matcher(engine, threshold=THRESHOLD)
    crops = np.stack([np.ascontiguousarray(c[:32, :16]) for c in people[:2]])
    with pytest.raises(ValueError, match=error):
        call(matcher, crops)
    assert len(matcher.gallery) == 0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        (dict(threshold=1.5), "threshold must be a cosine similarity"),
        (dict(threshold="0.5"), "threshold must be a cosine similarity"),
        (dict(top_k=0), "top_k must be a positive integer"),
        (dict(max_tracks=0), "max_tracks must be a positive integer"),
        (dict(track_momentum=1.0), r"track_momentum must be in \[0, 1\)"),
        (dict(track_ttl=0), "track_ttl must be > 0"),
    ],
)
def test_matcher_arguments_are_validated(engine, kwargs, error):
    with pytest.raises(ValueError, match=error):
        Matcher(engine, **kwargs)


def test_gallery_from_another_model_is_refused(engine, rng):
    other = Gallery()
    other.add("x", rng.standard_normal(128))
    with pytest.raises(GalleryError, match="holds 128-d embeddings but the engine makes 64-d"):
        Matcher(engine, other)
    with pytest.raises(TypeError, match="engine must be a dslnet_edge.Engine"):
        Matcher("model.onnx")


def test_default_threshold_is_one_named_constant(engine):
    assert Matcher(engine).threshold == DEFAULT_THRESHOLD and -1.0 <= DEFAULT_THRESHOLD <= 1.0


# -- tracks ------------------------------------------------------------------------------------
def test_track_feature_outvotes_one_bad_crop(engine, people, rng):
    kwargs = dict(threshold=THRESHOLD, auto_enroll=False, update_exemplars=False)
    by_track = Matcher(engine, **kwargs)
    by_crop = Matcher(engine, by_track.gallery, **kwargs)
    by_track.enroll([people[0]], "alice")
    for t in range(5):
        (m,) = by_track.match([noisy(people[0], rng)], camera="c1", timestamp=float(t), track_ids=[17])
        assert m.identity == "alice" and m.track_id == 17
    glitch = people[9]  # e.g. the box jumped onto someone else for one frame
    (crop_decision,) = by_crop.match([glitch], camera="c1", timestamp=5.0)
    (track_decision,) = by_track.match([glitch], camera="c1", timestamp=5.0, track_ids=[17])
    assert crop_decision.identity is None
    assert track_decision.identity == "alice"


def test_min_track_crops_defers_decisions_until_the_track_has_enough_crops(engine, people, rng):
    matcher = Matcher(engine, threshold=THRESHOLD, min_track_crops=3)
    matcher.enroll([people[0]], "alice")
    # a new person's track: pending (nothing enrolled) for two crops, enrolled from the third
    for t in range(2):
        first, second = matcher.match([noisy(people[1], rng), noisy(people[0], rng)], camera="c1", timestamp=float(t), track_ids=[5, 6])
        assert first.pending and first.identity is None and not first.is_new and first.candidates
        assert second.pending and second.identity is None
        assert len(matcher.gallery) == 1
    first, second = matcher.match([noisy(people[1], rng), noisy(people[0], rng)], camera="c1", timestamp=2.0, track_ids=[5, 6])
    assert first.is_new and not first.pending and second.identity == "alice" and not second.pending
    assert len(matcher.gallery) == 2
    # crops without a track are decided at once
    (lone,) = matcher.match([noisy(people[2], rng)], camera="c1", timestamp=3.0)
    assert lone.is_new and not lone.pending
    with pytest.raises(ValueError, match="min_track_crops"):
        Matcher(engine, min_track_crops=0)


def test_a_decided_track_keeps_its_identity_and_never_enrols_a_second_one(engine, people, rng):
    matcher = Matcher(engine, threshold=THRESHOLD, update_exemplars=False)
    (first,) = matcher.match([noisy(people[0], rng)], camera="c1", timestamp=0.0, track_ids=[3])
    assert first.is_new
    # the track's crops change beyond recognition (its EMA feature drifts below the threshold)
    for t in range(1, 30):
        (m,) = matcher.match([noisy(people[1], rng)], camera="c1", timestamp=float(t), track_ids=[3])
        assert m.identity == first.identity and not m.is_new
    assert m.similarity < THRESHOLD and len(matcher.gallery) == 1
    # a crop of another track that takes the identity in the same frame leaves this one unknown for the frame
    other, mine = matcher.match([noisy(people[0], rng), noisy(people[1], rng)], camera="c1", timestamp=31.0, track_ids=[4, 3])
    assert other.identity == first.identity and mine.identity is None and not mine.is_new
    assert len(matcher.gallery) == 1
    # without a track, the same crop is a new person
    (lone,) = matcher.match([noisy(people[1], rng)], camera="c1", timestamp=32.0)
    assert lone.is_new


def test_tracks_are_per_camera_bounded_and_expire(engine, people, rng):
    matcher = Matcher(engine, threshold=THRESHOLD, max_tracks=4, track_ttl=10.0)
    matcher.match(people[:2], camera="a", timestamp=0.0, track_ids=[1, 2])
    matcher.match(people[2:4], camera="b", timestamp=0.0, track_ids=[1, 2])  # same ids, other camera
    assert matcher.num_tracks == 4
    matcher.match(people[4:5], camera="b", timestamp=1.0, track_ids=[3])
    assert matcher.num_tracks == 4  # bounded: the least recently updated track was dropped
    matcher.match(people[5:6], camera="a", timestamp=20.0, track_ids=[9])
    assert matcher.num_tracks == 4  # camera a's stale track (a, 2) expired and (a, 9) came; b's are untouched
    matcher.match(people[6:7], camera="b", timestamp=20.0)
    assert matcher.num_tracks == 1  # b's next frame expires b's stale tracks; (a, 9) stays
    for t in range(200):  # an endless stream of new track ids stays bounded
        matcher.match([noisy(people[t % 12], rng)], camera="c", timestamp=30.0 + t, track_ids=[1000 + t])
        assert matcher.num_tracks <= 4
    matcher.match(people[:1], camera="a", timestamp=231.0, track_ids=[10])
    matcher.reset_tracks("c")
    assert matcher.num_tracks == 1
    matcher.reset_tracks()
    assert matcher.num_tracks == 0


def test_endless_stream_of_strangers_keeps_memory_bounded(engine, rng):
    matcher = Matcher(engine, Gallery(SPEC.feature_dim, capacity=20, max_exemplars=2), threshold=THRESHOLD, max_tracks=8)
    sizes = set()
    for frame in range(150):
        matches = matcher.match(random_crops(rng, 2, max_hw=(40, 20)), camera="street", timestamp=float(frame), track_ids=[2 * frame, 2 * frame + 1])
        assert all(m.is_new for m in matches)
        assert len(matcher.gallery) <= 20 and matcher.num_tracks <= 8
        if frame >= 20:
            sizes.add(matcher.gallery.memory_bytes)
    assert len(sizes) == 1  # storage stopped growing


# -- threads -----------------------------------------------------------------------------------
def _camera_frames(people, camera_index, n_frames=8):
    """Deterministic frames of one camera: 3 people per frame, with track ids."""
    rng = np.random.default_rng(100 + camera_index)
    frames = []
    for f in range(n_frames):
        who = rng.choice(len(people), size=3, replace=False)
        frames.append(([noisy(people[i], rng) for i in who], [int(i) for i in who], float(f)))
    return frames


def _prepared(engine, people):
    matcher = Matcher(engine, threshold=THRESHOLD, auto_enroll=False, update_exemplars=False)
    matcher.enroll(people[:8], [f"p{i}" for i in range(8)])
    return matcher


def _summary(matches):
    return [(m.identity, None if m.similarity is None else round(m.similarity, 5), m.track_id) for m in matches]


def test_concurrent_cameras_give_the_same_results_as_serial(engine, people):
    cameras = {f"cam{c}": _camera_frames(people, c) for c in range(4)}
    serial_matcher = _prepared(engine, people)
    serial = {cam: [_summary(serial_matcher.match(crops, cam, ts, ids)) for crops, ids, ts in frames] for cam, frames in cameras.items()}

    matcher = _prepared(engine, people)
    results: dict[str, list] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(cameras))

    def run(cam):
        try:
            start.wait()
            results[cam] = [_summary(matcher.match(crops, cam, ts, ids)) for crops, ids, ts in cameras[cam]]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(cam,)) for cam in cameras]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results == serial
    known = [m for frames in serial.values() for frame in frames for m in frame if m[0] is not None]
    assert len(known) > 40  # the comparison covered real matches, not just unknowns


def test_concurrent_auto_enrolment_never_duplicates_a_person(engine, people):
    matcher = Matcher(engine, threshold=THRESHOLD)
    pool = people[:6]
    seen: dict[int, set[str]] = {i: set() for i in range(len(pool))}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(cam):
        rng = np.random.default_rng(cam)
        try:
            for _ in range(10):
                who = rng.choice(len(pool), size=2, replace=False)
                for i, m in zip(who, matcher.match([noisy(pool[i], rng) for i in who], camera=f"cam{cam}")):
                    with lock:
                        seen[int(i)].add(m.identity)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(len(names) == 1 for names in seen.values()), seen  # each person got exactly one identity
    assert len(matcher.gallery) == len(pool)


def test_gallery_survives_a_restart(engine, people, rng, tmp_path):
    matcher = Matcher(engine, threshold=THRESHOLD)
    first = matcher.match(people[:3], camera="gate")
    matcher.gallery.save(tmp_path / "gallery.db")
    restarted = Matcher(engine, Gallery.load(tmp_path / "gallery.db"), threshold=THRESHOLD)
    again = restarted.match([noisy(people[1], rng)])
    assert again[0].identity == first[1].identity and again[0].is_known
    new = restarted.match([people[10]])[0]
    assert new.is_new and new.identity not in {m.identity for m in first}


# -- real data -----------------------------------------------------------------------------------
@pytest.mark.realdata
def test_same_person_across_cameras_matches_more_often_than_different_people(real_data):
    """CUHK03 camera pair 1: query (camera 1) vs gallery (camera 2) images of 30 identities."""
    if not DEMO_ONNX.exists():
        pytest.skip(f"demo weights {DEMO_ONNX} not there yet (the training run produces them); random weights cannot re-identify")
    import cv2

    root = Path(real_data) / "cuhk03-pair1"
    ids = sorted({p.name[:4] for p in (root / "query").glob("*.jpg")})[:30]

    def first_images(folder, per_id):
        out = []
        for pid in ids:
            out += [(pid, cv2.imread(str(p))) for p in sorted((root / folder).glob(f"{pid}_*.jpg"))[:per_id]]
        return out

    queries, gallery = first_images("query", 1), first_images("bounding_box_test", 2)
    with Engine() as demo:
        q = demo.embed([img for _, img in queries])
        g = demo.embed([img for _, img in gallery])
    sims = q @ g.T
    same = np.array([[qa == ga for ga, _ in gallery] for qa, _ in queries])
    matched = sims >= DEFAULT_THRESHOLD
    same_rate, diff_rate = matched[same].mean(), matched[~same].mean()
    assert same_rate > diff_rate, (same_rate, diff_rate)
    assert sims[same].mean() > sims[~same].mean() + 0.1
