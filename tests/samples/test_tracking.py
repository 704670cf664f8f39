"""IoU tracker: id continuity on synthetic moving boxes, gaps, confirmation, motion prediction."""

from __future__ import annotations

import pytest

from samples.detect import Box
from samples.tracking import IouTracker, TrackedBox


def _box(x, y=50, w=40, h=100, score=1.0) -> Box:
    return Box(x, y, x + w, y + h, score)


def test_two_walkers_keep_their_ids_and_order_is_per_detection():
    tracker = IouTracker(min_hits=1)
    ids_a, ids_b = [], []
    for f in range(20):
        a, b = _box(10 + 4 * f), _box(250 - 4 * f, y=60)
        # detection order alternates: ids must follow the boxes, not their position in the list
        boxes = [a, b] if f % 2 == 0 else [b, a]
        out = tracker.update(boxes)
        by_box = {t.box: t for t in out}
        ids_a.append(by_box[a].track_id)
        ids_b.append(by_box[b].track_id)
        assert [t.box for t in out] == boxes
    assert set(ids_a) == {ids_a[0]} and set(ids_b) == {ids_b[0]} and ids_a[0] != ids_b[0]
    assert tracker.num_started == 2


def test_gap_within_max_age_keeps_the_id_and_longer_gap_restarts():
    tracker = IouTracker(max_age=2, min_hits=1, motion=False)
    first = tracker.update([_box(100)])[0].track_id
    assert tracker.update([]) == []
    assert tracker.update([]) == []
    assert tracker.update([_box(102)])[0].track_id == first  # missed 2 updates: still alive
    for _ in range(3):
        tracker.update([])
    assert tracker.num_tracks == 0
    again = tracker.update([_box(102)])[0].track_id
    assert again != first and again == 2  # ids are never reused


def test_tracks_are_confirmed_after_min_hits_and_stay_confirmed():
    tracker = IouTracker(min_hits=3, max_age=3)
    states = [tracker.update([_box(100 + f)])[0] for f in range(3)]
    assert [(s.hits, s.confirmed) for s in states] == [(1, False), (2, False), (3, True)]
    tracker.update([])
    later = tracker.update([_box(104)])[0]
    assert later.track_id == states[0].track_id and later.confirmed and later.hits == 4


def test_velocity_prediction_follows_a_fast_walker():
    # 30 px per update on a 40 px wide box: consecutive boxes overlap (IoU 0.14) less than the
    # threshold, so only the predicted box can continue the track.
    def run(motion):
        tracker = IouTracker(iou_threshold=0.3, min_hits=1, velocity_momentum=0.5, motion=motion)
        first = [tracker.update([_box(0)])[0].track_id]
        # the second step is matched on IoU alone: give it a slower start
        first.append(tracker.update([_box(20)])[0].track_id)
        return first + [tracker.update([_box(20 + 30 * k)])[0].track_id for k in range(1, 8)]

    with_motion = run(True)
    assert len(set(with_motion)) == 1, with_motion
    without_motion = run(False)
    assert len(set(without_motion)) > 1, without_motion


def test_greedy_association_gives_each_track_one_detection():
    tracker = IouTracker(min_hits=1)
    tracker.update([_box(100)])
    out = tracker.update([_box(102), _box(104)])  # two candidates for one track: the best IoU wins
    assert out[0].track_id == 1 and out[1].track_id == 2


def test_plain_tuples_are_accepted():
    out = IouTracker(min_hits=1).update([(0, 0, 10, 20, 0.5), (50, 0, 60, 20)])
    assert [t.box for t in out] == [Box(0, 0, 10, 20, 0.5), Box(50, 0, 60, 20, 1.0)]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"iou_threshold": 0.0}, "iou_threshold"),
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"max_age": -1}, "max_age"),
        ({"min_hits": 0}, "min_hits"),
        ({"min_hits": 1.5}, "min_hits"),
        ({"velocity_momentum": 1.0}, "velocity_momentum"),
    ],
)
def test_invalid_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IouTracker(**kwargs)


@pytest.mark.parametrize("kwargs, match", [({"track_id": 0}, "track_id"), ({"hits": 0}, "hits"), ({"track_id": True}, "track_id")])
def test_tracked_box_validation(kwargs, match):
    fields = {"box": _box(0), "track_id": 1, "hits": 1, "confirmed": True, **kwargs}
    with pytest.raises(ValueError, match=match):
        TrackedBox(**fields)


# ---------------------------------------------------------------------------------------------
# ByteTrack (the trackers package) behind the same interface
# ---------------------------------------------------------------------------------------------
def test_bytetrack_two_walkers_keep_ids_and_answers_follow_the_input_order():
    pytest.importorskip("trackers", reason="ByteTrack needs the trackers package (pip install --no-deps 'trackers==2.6.*')")
    from samples.tracking import ByteTracker, Tracker

    tracker = ByteTracker(frame_rate=10, min_hits=2)
    assert isinstance(tracker, Tracker)
    ids_a, ids_b = [], []
    for f in range(20):
        a, b = _box(10 + 4 * f, score=0.9), _box(250 - 4 * f, y=60, score=0.8)
        boxes = [a, b] if f % 2 == 0 else [b, a]
        out = tracker.update(boxes)
        assert [t.box for t in out] == boxes
        by_box = {t.box: t for t in out}
        ids_a.append(by_box[a].track_id)
        ids_b.append(by_box[b].track_id)
    # first frame: no track yet (id 0, not confirmed); then one id each for the rest
    assert ids_a[0] == ids_b[0] == 0
    assert set(ids_a[1:]) == {ids_a[1]} and set(ids_b[1:]) == {ids_b[1]} and ids_a[1] != ids_b[1] and min(ids_a[1], ids_b[1]) >= 1
    assert tracker.num_started == 2


def test_bytetrack_low_score_box_continues_a_track_but_never_starts_one():
    pytest.importorskip("trackers", reason="ByteTrack needs the trackers package")
    from samples.tracking import ByteTracker

    tracker = ByteTracker(frame_rate=10, min_hits=1)
    for f in range(3):
        tracker.update([_box(100 + 2 * f, score=0.9)])
    track = tracker.update([_box(106, score=0.9)])[0].track_id
    assert track >= 1
    # the score drops (occlusion): ByteTrack's second stage keeps the track
    assert tracker.update([_box(108, score=0.3)])[0].track_id == track
    # a low-score box far away starts nothing
    for _ in range(3):
        assert tracker.update([_box(110, score=0.9), _box(400, score=0.3)])[1].track_id == 0
    assert tracker.num_started == 1


def test_bytetrack_reset_never_reuses_ids_and_bad_settings_are_refused():
    pytest.importorskip("trackers", reason="ByteTrack needs the trackers package")
    from samples.tracking import ByteTracker

    tracker = ByteTracker(frame_rate=25, min_hits=1)
    for f in range(3):
        first = tracker.update([_box(100 + f, score=0.9)])[0].track_id
    tracker.reset()
    for f in range(3):
        again = tracker.update([_box(100 + f, score=0.9)])[0].track_id
    assert first >= 1 and again > first
    assert ByteTracker(frame_rate=10).max_age == 10  # default: one second of processed frames
    for kwargs, match in [({"frame_rate": 0}, "frame_rate"), ({"frame_rate": 10, "min_hits": 0}, "min_hits"),
                          ({"frame_rate": 10, "max_age": -1}, "max_age"), ({"frame_rate": 10, "high_score": 0}, "high_score")]:
        with pytest.raises(ValueError, match=match):
            ByteTracker(**kwargs)


def test_one_opencv_distribution_is_installed():
    """trackers declares opencv-python; installed with its dependencies it would sit beside opencv-python-headless."""
    from samples.tracking import check_single_opencv, opencv_distributions

    assert opencv_distributions() == ["opencv-python-headless"]
    check_single_opencv()
