"""``python -m samples.multi_camera``: threads share one Matcher, so a person seen on A is recognised on B."""

from __future__ import annotations

import csv
import re

import pytest

from dslnet_edge import Gallery
from samples import multi_camera
from samples._common import ModelConfig
from samples.detect import Box, BoxesDetector, DetectorError
from samples.multi_camera import CrossCameraLog, MultiCameraConfig, run_multi_camera
from samples.pipeline import DetectionRecord, FrameResult


def _feeds(scene, walker):
    # Person 1 walks through both cameras; person 2 only through B; person 3 only through C.
    a = scene("cam-a", [walker(1, (20, 60), (120, 70))], frames=10)
    b = scene("cam-b", [walker(1, (250, 80), (150, 70), first=3), walker(2, (20, 40), (90, 40))], frames=10)
    c = scene("cam-c", [walker(3, (100, 100), (200, 100))], frames=10)
    return a, b, c


def test_a_person_seen_on_one_camera_is_recognised_on_another(tmp_path, capsys, tiny_model, scene, walker, read_frames):
    a, b, c = _feeds(scene, walker)
    gallery = tmp_path / "g.db"
    status = multi_camera.main([
        "--video", str(a.video), "--video", str(b.video), "--video", str(c.video),
        "--camera", "A", "--camera", "B", "--camera", "C",
        "--detector", f"boxes:{a.boxes}", "--detector", f"boxes:{b.boxes}", "--detector", f"boxes:{c.boxes}",
        "--model", str(tiny_model), "--out-dir", str(tmp_path / "out"), "--save-gallery", str(gallery),
    ])
    out, err = capsys.readouterr()
    assert status == 0, err
    # per-camera identities from the logs: (camera, seed) -> identities given to that figure's boxes
    seen: dict[str, set[str]] = {}
    for cam, s in (("A", a), ("B", b), ("C", c)):
        rows = list(csv.DictReader((tmp_path / "out" / f"{cam}.csv").open()))
        assert sorted({int(r["frame"]) for r in rows}) == list(range(10))
        for r in rows:
            if not r["identity"]:
                continue
            box = tuple(int(float(r[k])) for k in ("x1", "y1", "x2", "y2"))
            seed = next(seed for seed, tb in s.truth[int(r["frame"])] if tb == box)
            seen.setdefault(f"{cam}{seed}", set()).add(r["identity"])
        assert len(read_frames(tmp_path / "out" / f"{cam}.mp4")) == 10
    assert all(len(ids) == 1 for ids in seen.values()), seen
    ids = {k: next(iter(v)) for k, v in seen.items()}
    assert ids["A1"] == ids["B1"]  # the same person on two cameras: one identity
    assert len({ids["A1"], ids["B2"], ids["C3"]}) == 3  # different people stay different
    # the cross-camera line names person 1's identity and both cameras; nobody else crossed
    cross = [line for line in out.splitlines() if line.startswith("cross-camera:")]
    assert len(cross) == 1, out
    m = re.match(rf"cross-camera: {ids['A1']} on ([ABC]) frame \d+ .*seen before on ([ABC]) frame \d+", cross[0])
    assert m is not None and {m.group(1), m.group(2)} == {"A", "B"}, cross[0]
    assert f"seen on several cameras: 1 identities: {ids['A1']} (" in out
    assert sorted(Gallery.load(gallery).identities()) == sorted({ids["A1"], ids["B2"], ids["C3"]})


def test_run_multi_camera_result(tiny_model, scene, walker):
    a, b, _ = _feeds(scene, walker)
    config = MultiCameraConfig(
        videos=(str(a.video), str(b.video)),
        detectors=(f"boxes:{a.boxes}", f"boxes:{b.boxes}"),
        model=ModelConfig(model=str(tiny_model), min_track_crops=1),
        max_frames=6,
    )
    lines = []
    result = run_multi_camera(config, emit=lines.append)
    assert [s.camera for s in result.stats] == ["cam-a", "cam-b"]  # names from the file names
    assert [s.frames_processed for s in result.stats] == [6, 6]
    assert len(result.events) == 1 and lines == [str(result.events[0])]
    event = result.events[0]
    assert {event.camera, event.earlier[0][0]} == {"cam-a", "cam-b"}
    assert list(result.shared) == [event.identity] and sorted(result.shared[event.identity]) == ["cam-a", "cam-b"]
    assert result.gallery_identities == 2 and result.outputs == ()


def test_cross_camera_log_reports_each_new_camera_once():
    def rec(camera, index, identity):
        return FrameResult(camera, index, index / 10, (DetectionRecord(1, Box(0, 0, 10, 20), "known", identity, 0.8),))

    log = CrossCameraLog()
    for r in [rec("A", 0, "p1"), rec("A", 1, "p1"), rec("B", 5, "p1"), rec("B", 6, "p1"), rec("C", 9, "p1"), rec("B", 9, "p2")]:
        log(r)
    assert [(e.identity, e.camera, [c for c, _, _ in e.earlier]) for e in log.events] == [("p1", "B", ["A"]), ("p1", "C", ["A", "B"])]
    assert log.shared_identities() == {"p1": ["A", "B", "C"]}


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["--video", "{a}", "--video", "{tmp}/missing.mp4"], ["missing.mp4", "does not exist"]),
        (["--video", "{a}", "--video", "{garbage}"], ["garbage.mp4"]),
        (["--video", "{a}", "--video", "{b}", "--camera", "X"], ["1 --camera names for 2"]),
        (["--video", "{a}", "--video", "{b}", "--camera", "X", "--camera", "X"], ["unique"]),
        (["--video", "{a}", "--video", "{b}", "--detector", "hog", "--detector", "hog", "--detector", "hog"], ["3 --detector values for 2"]),
        (["--video", "{a}", "--video", "{b}", "--model", "{tmp}/m.onnx"], ["m.onnx", "does not exist"]),
        (["--video", "{a}", "--model", "{tiny}", "--no-auto-enroll"], ["--no-auto-enroll"]),
        (["--camera", "A"], ["--video"]),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, tiny_model, scene, walker, argv, fragments):
    a = scene("a", [walker(1, (20, 60), (40, 60))], frames=2)
    b = scene("b", [walker(1, (20, 60), (40, 60))], frames=2)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 2048)
    subs = {"{a}": str(a.video), "{b}": str(b.video), "{tmp}": str(tmp_path), "{tiny}": str(tiny_model), "{garbage}": str(garbage)}
    args = []
    for x in argv:
        for k, v in subs.items():
            x = x.replace(k, v)
        args.append(x)
    status = multi_camera.main(args)
    _, err = capsys.readouterr()
    assert status != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0]


class _BuggyDetector:
    """A user's plugged-in detector with a bug: in frame 3 it returns a box with x2 < x1."""

    def __init__(self, boxes_file):
        self.inner = BoxesDetector(boxes_file)

    def detect(self, frame, frame_index=None):
        boxes = self.inner.detect(frame, frame_index)
        return [(50, 50, 40, 60)] if frame_index == 3 else boxes


def test_a_failing_feed_stops_the_run_and_discards_its_outputs(tmp_path, tiny_model, scene, walker):
    a = scene("a", [walker(1, (20, 60), (40, 60))], frames=30)
    config = MultiCameraConfig(
        videos=(str(a.video), str(a.video)), cameras=("good", "buggy"), model=ModelConfig(model=str(tiny_model)),
        out_dir=str(tmp_path / "out"),
    )
    with pytest.raises(DetectorError, match="_BuggyDetector frame 3: box 0 .* x2 must exceed x1"):
        run_multi_camera(config, detectors=[BoxesDetector(a.boxes), _BuggyDetector(a.boxes)])
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    # the buggy camera's outputs are discarded, nothing half-written is left; the other camera stopped early
    assert "buggy.mp4" not in names and "buggy.csv" not in names and not any(n.startswith(".") for n in names)


def test_output_destinations_are_checked_before_any_work(tmp_path, capsys, tiny_model, scene, walker):
    a = scene("a", [walker(1, (20, 60), (40, 60))], frames=2)
    (tmp_path / "out" / "a.mp4").mkdir(parents=True)
    status = multi_camera.main(["--video", str(a.video), "--model", str(tiny_model), "--out-dir", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    assert status == 1 and err.count("\n") == 1 and "a.mp4 is a directory" in err, err
