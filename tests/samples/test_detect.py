"""Detectors: box maths by hand, HOG on generated and real frames, boxes files (JSON and MOTChallenge)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from samples.detect import (
    Box,
    BoxesDetector,
    Detector,
    DetectorError,
    HogConfig,
    HogDetector,
    box_iou,
    check_boxes,
    clip_box,
    nms,
)
from samples.detectors import make_detector


# -- box maths ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "a, b, expected",
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges share no area
        ((0, 0, 10, 10), (2, 2, 4, 4), 4 / 100),
        ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),
    ],
)
def test_box_iou_by_hand(a, b, expected):
    assert box_iou(np.array([a]), np.array([b]))[0, 0] == pytest.approx(expected)
    assert box_iou(np.array([b]), np.array([a]))[0, 0] == pytest.approx(expected)


def test_nms_keeps_best_of_each_cluster_and_contained_boxes_go():
    boxes = np.array(
        [
            [0, 0, 40, 100],  # 0: person, score 0.9
            [2, 0, 42, 100],  # 1: near duplicate of 0 (IoU 0.9)
            [100, 0, 140, 100],  # 2: another person
            [105, 5, 125, 50],  # 3: upper body inside 2 (IoU 0.22, but 100% contained), higher score
            [300, 0, 340, 100],  # 4: alone
        ],
        float,
    )
    scores = np.array([0.9, 0.8, 0.5, 0.7, 0.1])
    assert nms(boxes, scores, iou_threshold=0.4, containment=0.8) == [0, 3, 4]
    assert nms(boxes, scores, iou_threshold=0.4, containment=None) == [0, 3, 2, 4]
    assert nms(boxes, scores, iou_threshold=1.0, containment=None) == [0, 1, 3, 2, 4]


@pytest.mark.parametrize(
    "box, expected",
    [
        ((10, 20, 50, 100, 0.5), Box(10, 20, 50, 100, 0.5)),
        ((-5, -10, 50, 100), Box(0, 0, 50, 100, 1.0)),
        ((300, 200, 400, 300, 0.2), Box(300, 200, 320, 240, 0.2)),
        ((318, 0, 340, 100), None),  # 2 px left inside the frame
        ((-50, -50, -10, -10), None),  # entirely outside
    ],
)
def test_clip_box(box, expected):
    assert clip_box(box, 320, 240) == expected


@pytest.mark.parametrize(
    "box, match",
    [
        ((1, 2, 3), "3 values"),
        ((0, 0, 10, float("nan")), "NaN"),
        ((10, 0, 5, 20), "x2 must exceed x1"),
        ((0, 10, 20, 10), "x2 must exceed x1 and y2 must exceed y1"),
        (("a", 0, 10, 10), "expected"),
        (None, "expected"),
    ],
)
def test_check_boxes_names_the_bad_box(box, match):
    with pytest.raises(DetectorError, match=match) as info:
        check_boxes([(0, 0, 10, 20), box], (240, 320, 3), source="mydet")
    assert "mydet: box 1" in str(info.value)


def test_check_boxes_orders_by_score_and_clips():
    out = check_boxes([(0, 0, 10, 20, 0.1), (100, 0, 400, 260, 0.9)], (240, 320, 3))
    assert out == [Box(100, 0, 320, 240, 0.9), Box(0, 0, 10, 20, 0.1)]
    assert out[0].as_int() == (100, 0, 320, 240)


# -- HOG ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"min_person_height": 20}, "min_person_height"),
        ({"win_stride": 0}, "win_stride"),
        ({"pyramid_scale": 1.0}, "pyramid_scale"),
        ({"nms_iou": 0.0}, "nms_iou"),
        ({"nms_containment": 1.5}, "nms_containment"),
        ({"hit_threshold": float("inf")}, "hit_threshold"),
        ({"group_threshold": -1}, "group_threshold"),
    ],
)
def test_hog_config_rejects(kwargs, match):
    with pytest.raises(DetectorError, match=match):
        HogConfig(**kwargs)


def test_hog_config_scale_follows_min_person_height():
    assert HogConfig(min_person_height=192).resize == pytest.approx(0.5)
    assert HogConfig(min_person_height=96).resize == pytest.approx(1.0)


def test_hog_on_generated_frames():
    detector = HogDetector()
    assert isinstance(detector, Detector)
    flat = np.full((240, 320, 3), 128, np.uint8)
    assert detector.detect(flat) == []  # nothing in a flat frame
    assert detector.detect(np.zeros((60, 40, 3), np.uint8)) == []  # smaller than one HOG window
    # a dark upright silhouette (head, body, legs) on a light background: whatever HOG reports
    # must be clipped to the frame, de-duplicated and sorted by score
    frame = np.full((240, 320, 3), 220, np.uint8)
    cv2.ellipse(frame, (160, 50), (12, 15), 0, 0, 360, (30, 30, 30), -1)
    cv2.rectangle(frame, (140, 65), (180, 140), (30, 30, 30), -1)
    cv2.rectangle(frame, (143, 140), (157, 210), (30, 30, 30), -1)
    cv2.rectangle(frame, (163, 140), (177, 210), (30, 30, 30), -1)
    boxes = HogDetector(HogConfig(min_person_height=96, win_stride=4, hit_threshold=-1.0, min_score=-10)).detect(frame)
    assert [b.score for b in boxes] == sorted((b.score for b in boxes), reverse=True)
    for b in boxes:
        assert 0 <= b.x1 < b.x2 <= 320 and 0 <= b.y1 < b.y2 <= 240


@pytest.mark.parametrize(
    "frame",
    [np.zeros((100, 100, 3), np.float32), np.zeros((100, 100), np.uint8), np.zeros((0, 10, 3), np.uint8), "frame.jpg"],
)
def test_hog_rejects_bad_frames(frame):
    with pytest.raises(DetectorError, match="frame"):
        HogDetector().detect(frame)


def test_hog_missing_from_opencv_is_one_clear_error(monkeypatch):
    # OpenCV 5 removed the default people SVM: what users of such a build see
    monkeypatch.delattr(cv2, "HOGDescriptor_getDefaultPeopleDetector")
    with pytest.raises(DetectorError, match=r"opencv-python-headless<5"):
        HogDetector()


def _frames_at(path, wanted):
    cap = cv2.VideoCapture(str(path))
    out, i = {}, 0
    while i <= max(wanted):
        ok, frame = cap.read()
        if not ok:
            break
        if i in wanted:
            out[i] = frame
        i += 1
    cap.release()
    return out


@pytest.mark.realdata
def test_hog_finds_people_in_the_one_by_one_video(videos):
    # Frames 0-60 show an empty room; the first person walks in at ~60 and stands at the table
    # (about 300 px tall) from ~80 on.
    frames = _frames_at(videos / "one-by-one-person-detection.mp4", set(range(80, 131, 10)))
    detector = HogDetector()
    found = {i: detector.detect(f) for i, f in frames.items()}
    with_person = [i for i, boxes in found.items() if any(b.height > 150 for b in boxes)]
    assert len(with_person) >= 2, f"HOG found a person in too few frames: {found}"


@pytest.mark.realdata
def test_hog_finds_people_in_the_raw_h264_video(videos):
    frames = _frames_at(videos / "people-detection.264", {205, 210, 215})  # two people walk in together
    detector = HogDetector()
    counts = [len(detector.detect(f)) for f in frames.values()]
    assert len(frames) == 3 and max(counts) >= 1, counts


# -- boxes from files --------------------------------------------------------------------------
def test_boxes_json_and_mot_give_the_same_boxes(tmp_path):
    frame = np.zeros((240, 320, 3), np.uint8)
    (tmp_path / "b.json").write_text(json.dumps({"frames": {"0": [[10, 20, 50, 120, 0.9], [60, 20, 100, 120]], "2": [[0, 0, 30, 60]]}}))
    # MOTChallenge: 1-based frame, id, left, top, width, height, score
    (tmp_path / "b.txt").write_text("1,7,10,20,40,100,0.9,-1,-1,-1\n1,8,60,20,40,100,1\n# comment\n\n3,7,0,0,30,60,1\n")
    for name in ("b.json", "b.txt"):
        det = make_detector(f"boxes:{tmp_path / name}")
        assert det.detect(frame, 0) == [Box(60, 20, 100, 120, 1.0), Box(10, 20, 50, 120, 0.9)]
        assert det.detect(frame, 1) == []
        assert det.detect(frame, 2) == [Box(0, 0, 30, 60, 1.0)]


def test_boxes_json_list_form_and_overlapping_truth_is_kept(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps({"frames": [[[10, 10, 50, 110], [12, 10, 52, 110]]]}))
    det = BoxesDetector(tmp_path / "b.json")
    assert len(det.detect(np.zeros((240, 320, 3), np.uint8), 0)) == 2  # two people side by side are not duplicates


def test_boxes_detector_needs_the_frame_index(tmp_path):
    (tmp_path / "b.json").write_text('{"frames": {}}')
    with pytest.raises(DetectorError, match="frame_index"):
        BoxesDetector(tmp_path / "b.json").detect(np.zeros((10, 10, 3), np.uint8))


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("b.json", "{not json", "not valid JSON"),
        ("b.json", '{"boxes": []}', '"frames"'),
        ("b.json", '{"frames": {"x": []}}', "frame key 'x'"),
        ("b.json", '{"frames": {"-1": []}}', "negative"),
        ("b.json", '{"frames": {"3": [[0, 0, 10]]}}', "frame 3 box 0 has 3 values"),
        ("b.json", '{"frames": {"3": [[10, 0, 5, 10]]}}', "x2 must exceed x1"),
        ("b.txt", "1,1,0,0,10\n", "line 1: 5 columns"),
        ("b.txt", "0,1,0,0,10,10\n", "1-based"),
        ("b.txt", "1,1,a,0,10,10\n", "line 1"),
        ("b.yaml", "frames: {}", "unknown format '.yaml'"),
        (None, None, "does not exist"),
    ],
)
def test_boxes_file_errors(tmp_path, name, content, match):
    path = tmp_path / (name or "missing.json")
    if content is not None:
        path.write_text(content)
    with pytest.raises(DetectorError, match=match) as info:
        make_detector(f"boxes:{path}")
    assert str(path) in str(info.value)


def test_make_detector_hog_overrides():
    det = make_detector("hog:min_person_height=192, win_stride=4,nms_containment=none", hog=HogConfig(min_score=0.5))
    assert det.config == HogConfig(min_person_height=192, win_stride=4, nms_containment=None, min_score=0.5)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("yolo", "unknown detector 'yolo'"),
        ("boxes:", "needs a file"),
        ("hog:size=3", "'size=3' is not FIELD=VALUE"),
        ("hog:win_stride", "is not FIELD=VALUE"),
        ("hog:win_stride=fast", "win_stride needs a number"),
        ("hog:min_person_height=10", "min_person_height must be"),
    ],
)
def test_make_detector_errors(spec, match):
    with pytest.raises(DetectorError, match=match):
        make_detector(spec)
