"""Data-loss defects of the sample programs (issue 14): outputs over inputs, failed video writes,
paths OpenCV crashes on, truncated videos read to the break without a word."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from testutils import REPO_ROOT, file_size_limited

from samples import enroll, multi_camera, video_reid
from samples.video import VideoError, atomic_video_writer, check_video_path_text


def run_cli(module, capsys, *argv) -> tuple[int, str, str]:
    status = module.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_error_line(status, err, *fragments):
    assert status not in (0, -11, 139), status
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# -- defect 1: an output that resolves to an input ----------------------------------------------
def test_video_reid_refuses_to_write_over_its_input_video(tmp_path, capsys, tiny_model, scene, walker):
    s = scene("x", [walker(1, (10, 40), (60, 40))], frames=4)
    before = s.video.read_bytes()
    link = tmp_path / "link.mp4"
    link.symlink_to(s.video)
    for out in (s.video, link, tmp_path / "." / "x.mp4"):
        status, _, err = run_cli(video_reid, capsys, "--video", s.video, "--model", tiny_model, "--detector", f"boxes:{s.boxes}", "--out", out)
        assert_one_error_line(status, err, "refusing to write the annotated video", "input video")
    assert s.video.read_bytes() == before
    # the model and the boxes file are inputs too; and two outputs on one file are refused
    status, _, err = run_cli(video_reid, capsys, "--video", s.video, "--model", tiny_model, "--detector", f"boxes:{s.boxes}",
                             "--save-gallery", tiny_model)
    assert_one_error_line(status, err, "refusing to write the gallery", "re-ID model")
    status, _, err = run_cli(video_reid, capsys, "--video", s.video, "--model", tiny_model, "--detector", f"boxes:{s.boxes}",
                             "--log", tmp_path / "l.csv", "--save-gallery", tmp_path / "l.csv")
    assert_one_error_line(status, err, "both be written to")


def test_multi_camera_refuses_an_out_dir_that_names_an_input(tmp_path, capsys, tiny_model, scene, walker):
    a = scene("A", [walker(1, (10, 40), (60, 40))], frames=4)
    b = scene("B", [walker(2, (10, 40), (60, 40))], frames=4)
    before = b.video.read_bytes()
    status, _, err = run_cli(multi_camera, capsys, "--video", a.video, "--video", b.video, "--detector", f"boxes:{a.boxes}",
                             "--detector", f"boxes:{b.boxes}", "--model", tiny_model, "--out-dir", b.video.parent)
    assert_one_error_line(status, err, "refusing to write the annotated video of", "input video")
    assert b.video.read_bytes() == before


def test_enroll_refuses_a_gallery_path_that_is_the_model(tmp_path, capsys, tiny_model, figure):
    crops = tmp_path / "known" / "alice"
    crops.mkdir(parents=True)
    cv2.imwrite(str(crops / "0.png"), figure(1))
    model = tmp_path / "model.onnx"
    shutil.copy(tiny_model, model)
    before = model.read_bytes()
    status, _, err = run_cli(enroll, capsys, "--crops", crops.parent, "--gallery", model, "--model", model, "--replace")
    assert_one_error_line(status, err, "refusing to write the gallery", "re-ID model")
    assert model.read_bytes() == before


# -- defect 2: a failed video write must not replace the previous output -------------------------
def test_a_video_that_could_not_be_written_keeps_the_old_output(tmp_path, tiny_model, scene, walker):
    s = scene("long", [walker(1, (10, 40), (250, 60)), walker(2, (250, 100), (10, 90))], frames=40)
    out = tmp_path / "annotated.mp4"
    command = [sys.executable, "-m", "samples.video_reid", "--video", str(s.video), "--model", str(tiny_model),
               "--detector", f"boxes:{s.boxes}", "--out", str(out)]
    good = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr
    before = out.read_bytes()
    assert len(before) > 40_000
    # the same run again, but the disk "fills up" after 20 kB
    full = subprocess.run(file_size_limited(command, 20_000), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert_one_error_line(full.returncode, full.stderr, "writing", "annotated.mp4", "40 frames were written", "previous file is kept")
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".annotated")] == []  # no temporary left behind


def test_atomic_video_writer_checks_the_frames_in_the_file(tmp_path):
    out = tmp_path / "v.avi"
    with atomic_video_writer(out, 10, (64, 48)) as sink:
        for _ in range(5):
            sink.write(np.zeros((48, 64, 3), np.uint8))
    assert out.stat().st_size > 0
    before = out.read_bytes()
    with pytest.raises(VideoError, match="7 frames were written but the file"):
        with atomic_video_writer(out, 10, (64, 48)) as sink:
            for _ in range(5):
                sink.write(np.zeros((48, 64, 3), np.uint8))
            sink.frames_written = 7  # what a writer that lost two frames would have counted
    assert out.read_bytes() == before


# -- defect 3: a video path that is not valid UTF-8 ----------------------------------------------
def test_video_paths_that_are_not_utf8_are_refused_with_one_line(tmp_path, tiny_model, scene, walker):
    s = scene("v", [walker(1, (10, 40), (60, 40))], frames=4)
    bad = os.path.join(os.fsencode(tmp_path), b"caf\xe9.mp4")
    try:
        shutil.copyfile(s.video, bad)
    except OSError as exc:
        pytest.skip(f"this file system refuses non-UTF-8 names: {exc}")
    base = [sys.executable, "-m", "samples.video_reid", "--model", str(tiny_model), "--detector", f"boxes:{s.boxes}"]
    for extra in ([b"--video", bad], ["--video", str(s.video), b"--out", os.path.join(os.fsencode(tmp_path), b"\xff.mp4")]):
        run = subprocess.run(base + extra, cwd=REPO_ROOT, capture_output=True, timeout=300)
        assert_one_error_line(run.returncode, run.stderr.decode("utf-8", "replace"), "is not valid UTF-8")
    with pytest.raises(VideoError, match="not valid UTF-8"):
        check_video_path_text(os.fsdecode(bad))


# -- defect 8: a truncated video ------------------------------------------------------------------
def test_a_truncated_video_says_how_many_frames_are_missing(tmp_path, capsys, tiny_model, scene, walker):
    s = scene("t", [walker(1, (10, 40), (250, 60))], frames=20)
    avi = tmp_path / "t.avi"
    capture = cv2.VideoCapture(str(s.video))
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        writer.write(frame)
    writer.release()
    data = avi.read_bytes()
    avi.write_bytes(data[: int(len(data) * 0.6)])  # the header still announces 20 frames
    status, out, err = run_cli(video_reid, capsys, "--video", avi, "--model", tiny_model, "--detector", f"boxes:{s.boxes}")
    assert status == 0, err
    line = out.splitlines()[0]
    assert "the video announces 20 frames;" in line and "could not be read: truncated or corrupt" in line
    # a complete video says nothing of the kind
    status, out, err = run_cli(video_reid, capsys, "--video", s.video, "--model", tiny_model, "--detector", f"boxes:{s.boxes}")
    assert status == 0 and "could not be read" not in out
