"""``samples.measure``: the numbers behind samples/README.md, on a generated scene with known people."""

from __future__ import annotations

import numpy as np
import pytest

from samples.measure import measure_video, track_similarities


def test_measure_video_counts_tracks_identities_and_writes_pngs(tmp_path, tiny_model, scene, walker):
    pytest.importorskip("trackers", reason="the default tracker, ByteTrack, needs the trackers package")
    s = scene("walk", [walker(1, (10, 40), (150, 60)), walker(2, (200, 100), (120, 90), first=2)], frames=12)
    row = measure_video(s.video, f"boxes:{s.boxes}", tmp_path / "m", model=str(tiny_model), every=1, png_every=4)
    assert (row["frames"], row["tracks"], row["identities"]) == (12, 2, 2)
    assert row["detector_ms"] >= 0 and row["crops"] > 0 and row["fps"] > 0
    assert sorted(p.name for p in (tmp_path / "m" / "walk.frames").iterdir()) == ["00000.png", "00004.png", "00008.png"]
    tracks, matrix = track_similarities(s.video, tmp_path / "m" / "walk.csv", model=str(tiny_model), step=1)
    assert len(tracks) == 2 and np.allclose(np.diag(matrix), 1.0, atol=1e-5)
    assert matrix[0, 1] < 0.7  # two different figures
    assert row["trackers"]["bytetrack"] == {"confirmed": 2, "decidable": 2}
    assert row["trackers"]["iou"]["confirmed"] == 2
