"""The per-camera loop's pieces: records, drawing, logs, timing of a real engine."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from dslnet_edge import Engine
from samples.detect import Box
from samples.pipeline import (
    CropQuality,
    DetectionRecord,
    FrameLog,
    FrameResult,
    TimedEngine,
    annotate,
    crop_box,
    identity_colour,
)


def _result(*records, camera="gate", index=7):
    return FrameResult(camera, index, index / 10, tuple(records))


@pytest.mark.parametrize(
    "status, identity, ok",
    [("tentative", None, True), ("unknown", None, True), ("new", "p1", True), ("known", "p1", True),
     ("known", None, False), ("tentative", "p1", False), ("lost", None, False)],
)
def test_detection_record_status_and_identity_agree(status, identity, ok):
    make = lambda: DetectionRecord(1, Box(0, 0, 10, 20), status, identity)  # noqa: E731
    if ok:
        assert make().status == status
    else:
        with pytest.raises(ValueError, match="DetectionRecord"):
            make()


def test_annotate_draws_boxes_labels_header_and_credit():
    frame = np.full((240, 320, 3), 128, np.uint8)
    result = _result(
        DetectionRecord(1, Box(40, 60, 100, 200), "known", "alice", 0.83),
        DetectionRecord(2, Box(200, 60, 260, 200), "tentative"),
    )
    out = annotate(frame, result, credit="Intel IoT devkit sample videos, CC BY 4.0")
    assert out is not frame and (frame == 128).all()  # the input frame is left alone
    colour = identity_colour("alice")
    assert (out[120, 40] == colour).all() and (out[120, 99] == colour).all()  # alice's box edges in her colour
    assert (out[120, 200] == (160, 160, 160)).all()  # a tentative track: thin grey box
    assert (out[130, 70] == 128).all()  # inside the box: untouched
    assert (out[5:15, 0:100] != 128).any() and (out[-12:, 0:100] != 128).any()  # header and credit drawn
    assert identity_colour("alice") == colour and identity_colour("bob") != colour


def test_crop_box_takes_the_box_pixels():
    frame = np.arange(240 * 320 * 3, dtype=np.uint32).reshape(240, 320, 3).astype(np.uint8)
    crop = crop_box(frame, Box(10.4, 20.6, 50.2, 90.0))
    assert crop.shape == (70, 41, 3) and (crop == frame[20:90, 10:51]).all()


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl"])
def test_frame_log_has_every_frame(tmp_path, suffix):
    path = tmp_path / f"log{suffix}"
    with FrameLog(path, {"camera": "gate"}) as log:
        log(_result(DetectionRecord(3, Box(1, 2, 30, 60, 0.7), "known", "alice", 0.9), index=0))
        log(_result(index=1))  # nobody in this frame
        log(_result(DetectionRecord(3, Box(1, 2, 30, 60, 0.7), "unknown", None, 0.2), index=2))
        log.summary = {"frames_processed": 3}
        assert not path.exists()  # only when complete
    if suffix == ".csv":
        rows = list(csv.DictReader(path.open()))
        assert [(r["frame"], r["identity"], r["status"]) for r in rows] == [("0", "alice", "known"), ("1", "", ""), ("2", "", "unknown")]
    elif suffix == ".json":
        data = json.loads(path.read_text())
        assert data["meta"] == {"camera": "gate"} and data["summary"] == {"frames_processed": 3}
        assert [f["frame"] for f in data["frames"]] == [0, 1, 2] and data["frames"][0]["detections"][0]["identity"] == "alice"
    else:
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [(f["camera"], f["frame"]) for f in lines] == [("gate", 0), ("gate", 1), ("gate", 2)]


def test_frame_log_discards_a_failed_run(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("old log\n")
    with pytest.raises(RuntimeError):
        with FrameLog(path, {}) as log:
            log(_result(index=0))
            raise RuntimeError("the video broke")
    assert path.read_text() == "old log\n" and [p.name for p in tmp_path.iterdir()] == ["log.csv"]


def test_timed_engine_counts_crops_and_time(tiny_model, rng):
    timed = TimedEngine(Engine(tiny_model))
    assert np.isnan(timed.ms_per_crop)
    feats = timed.embed([rng.integers(0, 256, (64, 32, 3), dtype=np.uint8) for _ in range(5)])
    assert feats.shape == (5, 64) and timed.crops == 5 and timed.seconds > 0 and timed.ms_per_crop > 0


@pytest.mark.parametrize(
    "box, good",
    [
        (Box(100, 50, 150, 200, 0.9), True),
        (Box(0, 50, 50, 200, 0.9), False),  # cut by the left edge
        (Box(700, 50, 768, 200, 0.9), False),  # right edge
        (Box(100, 300, 150, 432, 0.9), False),  # bottom edge: legs only, or a head entering
        (Box(100, 50, 150, 120, 0.9), False),  # too small (70 px)
        (Box(100, 50, 250, 200, 0.9), False),  # as wide as tall: two people, or a part of one
        (Box(100, 50, 120, 200, 0.9), False),  # too thin (0.13)
        (Box(100, 50, 150, 200, 0.3), False),  # a low-score box (kept by ByteTrack, not matched)
    ],
)
def test_crop_quality(box, good):
    assert CropQuality().is_good(box, (432, 768, 3)) is good


@pytest.mark.parametrize(
    "kwargs, match",
    [({"min_height": 4}, "min_height"), ({"min_aspect": 0.8}, "min_aspect"), ({"min_score": float("nan")}, "min_score"),
     ({"edge_margin": -1}, "edge_margin")],
)
def test_crop_quality_is_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CropQuality(**kwargs)
