"""``python -m samples.video_reid`` on generated and real videos, its outputs, and its one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from testutils import REPO_ROOT

import dslnet_edge.weights
from dslnet_edge import Gallery
from samples import video_reid


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    status = video_reid.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_error_line(status, err, *fragments):
    assert status != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def two_people(scene, walker, frames=12):
    return scene("walk", [walker(1, (10, 40), (150, 60)), walker(2, (270, 100), (160, 90), first=2)], frames=frames)


def test_generated_video_gives_annotated_video_log_and_identities(tmp_path, capsys, tiny_model, scene, walker, read_frames):
    s = two_people(scene, walker)
    out, log = tmp_path / "annotated.mp4", tmp_path / "log.json"
    status, stdout, err = run_cli(
        capsys, "--video", s.video, "--model", tiny_model, "--detector", f"boxes:{s.boxes}", "--out", out, "--log", log, "--camera", "gate",
        "--min-track-crops", 1,
    )
    assert status == 0, err
    frames = read_frames(out)
    assert len(frames) == 12 and frames[0].shape == (240, 320, 3)
    data = json.loads(log.read_text())
    assert data["meta"]["camera"] == "gate" and data["meta"]["fps"] == 10.0
    assert [f["frame"] for f in data["frames"]] == list(range(12))
    # each figure: without a track in its first frame (ByteTrack's min_hits 2: track id 0), then
    # one track and one identity (decided at once with --min-track-crops 1) for the rest
    by_track: dict[int, list] = {}
    for f in data["frames"]:
        for d in f["detections"]:
            by_track.setdefault(d["track_id"], []).append((d["status"], d["identity"]))
    assert by_track.pop(0) == [("tentative", None)] * 2
    assert len(by_track) == 2
    identities = set()
    for states in by_track.values():
        assert states[0][0] == "new"
        assert {s for s, _ in states[1:]} == {"known"} and len({i for _, i in states}) == 1
        identities.add(states[0][1])
    assert len(identities) == 2
    assert sorted(data["summary"]["identities"]) == sorted(identities)
    assert data["summary"]["frames_processed"] == 12 and data["summary"]["detections"] == 12 + 10
    assert "12 frames processed of 12 read, 22 detections" in stdout
    assert "ms/frame" in stdout and "ms/crop" in stdout


def test_every_max_frames_csv_log_and_gallery_round_trip(tmp_path, capsys, tiny_model, scene, walker, read_frames):
    s = two_people(scene, walker)
    out, log, gallery = tmp_path / "a.avi", tmp_path / "log.csv", tmp_path / "g.db"
    status, stdout, err = run_cli(
        capsys, "--video", s.video, "--model", tiny_model, "--detector", f"boxes:{s.boxes}", "--out", out, "--log", log,
        "--every", 2, "--max-frames", 9, "--save-gallery", gallery, "--min-hits", 1, "--min-track-crops", 1, "--tracker", "iou",
    )
    assert status == 0, err
    assert len(read_frames(out)) == 5  # frames 0, 2, 4, 6, 8
    rows = list(csv.DictReader(log.open()))
    assert sorted({int(r["frame"]) for r in rows}) == [0, 2, 4, 6, 8]
    assert {r["status"] for r in rows if r["frame"] == "0"} == {"new"}  # min_hits 1: matched at once
    first_ids = {r["identity"] for r in rows}
    assert len(first_ids) == 2
    saved = Gallery.load(gallery)
    assert sorted(saved.identities()) == sorted(first_ids)
    # a second run that starts from the saved gallery knows both people and enrols nobody
    status, stdout, err = run_cli(
        capsys, "--video", s.video, "--model", tiny_model, "--detector", f"boxes:{s.boxes}", "--log", log,
        "--gallery", gallery, "--no-auto-enroll", "--min-hits", 1, "--min-track-crops", 1, "--tracker", "iou",
    )
    assert status == 0, err
    rows = list(csv.DictReader(log.open()))
    assert {r["status"] for r in rows} == {"known"} and {r["identity"] for r in rows} == first_ids
    assert all(float(r["similarity"]) > 0.9 for r in rows)


def test_unknown_people_with_auto_enroll_off(tmp_path, capsys, tiny_model, scene, walker):
    known = scene("known", [walker(1, (10, 40), (40, 50))], frames=4)
    gallery = tmp_path / "g.db"
    assert run_cli(capsys, "--video", known.video, "--model", tiny_model, "--detector", f"boxes:{known.boxes}", "--save-gallery", gallery,
                   "--min-track-crops", 1)[0] == 0
    stranger = scene("stranger", [walker(7, (10, 40), (40, 50))], frames=4)
    log = tmp_path / "log.jsonl"
    status, _, err = run_cli(
        capsys, "--video", stranger.video, "--model", tiny_model, "--detector", f"boxes:{stranger.boxes}", "--log", log,
        "--gallery", gallery, "--no-auto-enroll", "--min-track-crops", 1,
    )
    assert status == 0, err
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 4
    statuses = [d["status"] for f in lines for d in f["detections"]]
    assert statuses == ["tentative", "unknown", "unknown", "unknown"]
    assert len(Gallery.load(gallery)) == 1  # not saved back, not changed


def test_identities_come_only_from_tracks_with_enough_good_crops(tmp_path, capsys, tiny_model, scene, walker):
    pytest.importorskip("trackers", reason="the default tracker, ByteTrack, needs the trackers package")
    # person 1 walks along the left edge (every crop cut by it); person 2 is whole from frame 0
    s = scene("edge", [walker(1, (0, 40), (1, 60)), walker(2, (150, 100), (200, 100))], frames=10)
    log = tmp_path / "log.json"
    status, stdout, err = run_cli(capsys, "--video", s.video, "--model", tiny_model, "--detector", f"boxes:{s.boxes}", "--log", log)
    assert status == 0, err
    data = json.loads(log.read_text())
    by_x = {}
    for f in data["frames"]:
        for d in f["detections"]:
            by_x.setdefault(d["box"][0] < 5, []).append(d["status"])
    assert set(by_x[True]) == {"tentative"}  # the cut person never becomes an identity
    # the whole person: no track in frame 0, pending for its first 4 good crops, enrolled at the 5th
    assert by_x[False] == ["tentative"] * 5 + ["new"] + ["known"] * 4
    assert data["summary"]["new_identities"] and len(data["summary"]["identities"]) == 1


def test_hog_detector_path_on_a_generated_video(tmp_path, capsys, tiny_model, scene, walker, read_frames):
    s = scene("plain", [walker(1, (10, 40), (150, 60))], frames=4)
    out = tmp_path / "out.mp4"
    status, stdout, err = run_cli(capsys, "--video", s.video, "--model", tiny_model, "--out", out, "--min-person-height", 96)
    assert status == 0, err
    assert len(read_frames(out)) == 4 and "4 frames processed" in stdout


@pytest.mark.realdata
@pytest.mark.parametrize("name, frames", [("one-by-one-person-detection.mp4", 30), ("people-detection.264", 30)])
def test_real_videos_first_frames(tmp_path, capsys, tiny_model, videos, read_frames, name, frames):
    out, log = tmp_path / "annotated.mp4", tmp_path / "log.json"
    status, stdout, err = run_cli(
        capsys, "--video", videos / name, "--model", tiny_model, "--out", out, "--log", log, "--max-frames", frames, "--every", 2,
    )
    assert status == 0, err
    written = read_frames(out)
    assert len(written) == frames // 2 and written[0].shape == (432, 768, 3)
    data = json.loads(log.read_text())
    assert len(data["frames"]) == frames // 2
    assert data["meta"]["credit"] == "Intel IoT devkit sample videos, CC BY 4.0"
    assert "Intel IoT devkit sample videos, CC BY 4.0" in stdout


@pytest.mark.realdata
@pytest.mark.slow
def test_recommended_detector_and_bytetrack_follow_each_of_the_six_people_once(tmp_path, capsys, tiny_model, videos):
    """The part of "6 identities on the one-by-one video" that does not depend on the re-ID weights:
    six people walk in one after another, so exactly six tracks must reach a decision."""
    pytest.importorskip("trackers", reason="ByteTrack needs the trackers package")
    model = REPO_ROOT.parent / "shared" / "models" / "detectors" / "yolox_nano_416.onnx"
    if not model.is_file():
        pytest.skip(f"the YOLOX-Nano detector is not at {model}")
    log = tmp_path / "log.csv"
    status, stdout, err = run_cli(
        capsys, "--video", videos / "one-by-one-person-detection.mp4", "--model", tiny_model, "--detector", f"yolox:{model}",
        "--every", 2, "--log", log,
    )
    assert status == 0, err
    rows = list(csv.DictReader(log.open()))
    decided = {r["track_id"] for r in rows if r["status"] in ("new", "known")}
    assert len(decided) == 6, sorted(decided)


# -- errors: one line, non-zero, no traceback, no outputs ----------------------------------------------
@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--video", "{tmp}/missing.mp4"], ["missing.mp4", "does not exist"]),
        (["--video", "{tmp}"], ["is a directory"]),
        (["--video", "{garbage}"], ["garbage.mp4"]),
        (["--video", "{video}", "--model", "{tmp}/nope.onnx"], ["nope.onnx", "does not exist"]),
        (["--video", "{video}", "--model", "{garbage}"], ["garbage.mp4"]),
        (["--video", "{video}", "--model", "{tiny}", "--out", "{tmp}/out.gif"], ["unsupported suffix '.gif'"]),
        (["--video", "{video}", "--model", "{tiny}", "--log", "{tmp}/log.xml"], ["unsupported suffix '.xml'"]),
        (["--video", "{video}", "--model", "{tiny}", "--gallery", "{tmp}/none.db"], ["none.db", "does not exist"]),
        (["--video", "{video}", "--model", "{tiny}", "--gallery", "{garbage}"], ["not a SQLite database"]),
        (["--video", "{video}", "--model", "{tiny}", "--save-gallery", "{garbage}"], ["refusing to overwrite"]),
        (["--video", "{video}", "--model", "{tiny}", "--no-auto-enroll"], ["--no-auto-enroll", "samples.enroll"]),
        (["--video", "{video}", "--model", "{tiny}", "--detector", "boxes:{tmp}/b.json"], ["b.json", "does not exist"]),
        (["--video", "{video}", "--model", "{tiny}", "--detector", "ssd"], ["unknown detector"]),
        (["--video", "{video}", "--every", "0"], ["--every", "positive integer"]),
        (["--video", "{video}", "--threshold", "2"], ["--threshold"]),
        (["--video", "{video}", "--min-person-height", "10"], ["min_person_height"]),
        ([], ["--video"]),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, tiny_model, scene, walker, args, fragments):
    s = scene("v", [walker(1, (10, 40), (150, 60))], frames=2)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_text("not a video\n" * 50)
    subs = {"{tmp}": str(tmp_path), "{video}": str(s.video), "{tiny}": str(tiny_model), "{garbage}": str(garbage)}
    argv = []
    for a in args:
        for k, v in subs.items():
            a = a.replace(k, v)
        argv.append(a)
    before = sorted(p.name for p in tmp_path.iterdir())
    status, out, err = run_cli(capsys, *argv)
    assert_one_error_line(status, err, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, nothing left behind


def test_missing_demo_weights_is_one_line(tmp_path, capsys, monkeypatch, scene, walker):
    # the default model is the bundled demo ONNX; without it the user gets Engine()'s own message
    monkeypatch.setattr(dslnet_edge.weights, "DEMO_ONNX", tmp_path / "dslnet_cuhk03.onnx")
    s = scene("v", [walker(1, (10, 40), (150, 60))], frames=2)
    status, _, err = run_cli(capsys, "--video", s.video, "--out", tmp_path / "out.mp4")
    assert_one_error_line(status, err, "dslnet_cuhk03.onnx", "demo weights")
    assert not (tmp_path / "out.mp4").exists()


def test_module_entry_point_reports_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "samples.video_reid", "--video", str(tmp_path / "nope.mp4")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: video {tmp_path / 'nope.mp4'} does not exist"
