"""Video in and out: checked opening, frame iteration, atomic annotated-video writing."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from samples.video import VideoError, atomic_video_writer, open_video


def test_frames_every_and_max_frames(scene, walker):
    s = scene("a", [walker(1, (10, 10), (200, 10))], frames=10)
    with open_video(s.video) as source:
        assert (source.width, source.height, source.fps, source.frame_count) == (320, 240, 10.0, 10)
        got = [i for i, _ in source.frames(every=3, max_frames=8)]
        assert got == [0, 3, 6] and source.frames_read == 8
    with open_video(s.video) as source:
        frames = list(source.frames())
        assert [i for i, _ in frames] == list(range(10)) and source.frames_read == 10
        assert all(f.shape == (240, 320, 3) and f.dtype == np.uint8 for _, f in frames)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty"),
        (lambda p: (p.write_bytes(os.urandom(4096)), p)[1], "cannot open|does not decode"),
        (lambda p: (p.write_text("this is not a video\n" * 100), p)[1], "cannot open|does not decode"),
    ],
)
def test_open_video_errors(tmp_path, make, match):
    path = make(tmp_path / "clip.mp4")
    with pytest.raises(VideoError, match=match) as info:
        open_video(path)
    assert str(path) in str(info.value)


def test_open_video_rejects_bad_fps_override(scene, walker):
    s = scene("a", [walker(1, (10, 10), (20, 10))], frames=2)
    with pytest.raises(VideoError, match="fps"):
        open_video(s.video, fps=0)


def test_atomic_video_writer_writes_all_frames(tmp_path, read_frames):
    out = tmp_path / "sub" / "out.mp4"
    with atomic_video_writer(out, 5.0, (64, 48)) as sink:
        for k in range(7):
            sink.write(np.full((48, 64, 3), 30 * k, np.uint8))
        assert not out.exists()  # nothing under the real name until the video is complete
    frames = read_frames(out)
    assert len(frames) == 7 and frames[0].shape == (48, 64, 3)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.mp4"]


def test_atomic_video_writer_keeps_the_old_file_on_failure(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous video")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_video_writer(out, 5.0, (64, 48)) as sink:
            sink.write(np.zeros((48, 64, 3), np.uint8))
            raise RuntimeError("boom")
    assert out.read_bytes() == b"previous video"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_atomic_video_writer_refuses_wrong_frame_size_and_suffix(tmp_path):
    with pytest.raises(VideoError, match="does not match"):
        with atomic_video_writer(tmp_path / "out.mp4", 5.0, (64, 48)) as sink:
            sink.write(np.zeros((48, 60, 3), np.uint8))
    with pytest.raises(VideoError, match="unsupported suffix '.gif'"):
        with atomic_video_writer(tmp_path / "out.gif", 5.0, (64, 48)):
            pass
    assert list(tmp_path.iterdir()) == []


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    # a writer killed mid-video leaves its temporary behind; the next write to the same name removes it
    code = (
        "import os, sys, numpy as np; sys.path.insert(0, sys.argv[2])\n"
        "from samples.video import atomic_video_writer\n"
        "with atomic_video_writer(sys.argv[1], 5.0, (64, 48)) as sink:\n"
        "    sink.write(np.zeros((48, 64, 3), np.uint8)); os._exit(9)\n"
    )
    out = tmp_path / "out.mp4"
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", code, str(out), repo], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert leftovers and not out.exists()
    with atomic_video_writer(out, 5.0, (64, 48)) as sink:
        sink.write(np.zeros((48, 64, 3), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
