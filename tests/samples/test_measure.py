"""``samples.measure``: the numbers behind samples/README.md, on a generated scene with known people."""

from __future__ import annotations

import numpy as np
import pytest
from testutils import tiny_embedding_onnx

from dslnet_edge.bench.peers import PEERS
from samples.measure import main, measure_video, peer_engines, peer_similarities, track_crops, track_similarities


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


def test_peers_give_the_same_tracks_a_yardstick_matrix(tmp_path, tiny_model, scene, walker):
    pytest.importorskip("trackers", reason="the default tracker, ByteTrack, needs the trackers package")
    s = scene("walk", [walker(1, (10, 40), (150, 60)), walker(2, (200, 100), (120, 90), first=2)], frames=12)
    measure_video(s.video, f"boxes:{s.boxes}", tmp_path / "m", model=str(tiny_model), every=1, png_every=4)
    crops = track_crops(s.video, tmp_path / "m" / "walk.csv", step=1)
    assert len(crops) == 2 and all(len(c) >= 5 for c in crops.values())
    # a stand-in for OMZ 0267 (the one ONNX peer): a real ONNX with its input contract, in a peers folder
    peer = next(p for p in PEERS if p.runtime == "onnxruntime")
    (tmp_path / "peers").mkdir()
    tiny_embedding_onnx(tmp_path / "peers" / peer.file, peer.spec, normalize=False, with_spec=False)
    engines = peer_engines(tmp_path / "peers")  # the IR peers are absent: skipped
    [(name, tracks, matrix)] = peer_similarities(crops, engines)
    for _, engine in engines:
        engine.close()
    assert name == peer.short and tracks == sorted(crops)
    assert np.allclose(np.diag(matrix), 1.0, atol=1e-6) and np.allclose(matrix, matrix.T)
    # the peer's path by hand: its contract's resize, ImageNet normalization, then the ONNX graph
    import onnxruntime as ort

    from dslnet_edge.preprocessing import preprocess
    from samples.measure import mean_similarity_matrix

    session = ort.InferenceSession(str(tmp_path / "peers" / peer.file), providers=["CPUExecutionProvider"])
    mean, std = (np.asarray(v, np.float32).reshape(1, 3, 1, 1) for v in (peer.spec.mean, peer.spec.std))

    def by_hand(batch):
        x = (preprocess(batch, peer.spec) / 255.0 - mean) / std
        return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]

    np.testing.assert_allclose(matrix, mean_similarity_matrix(crops, by_hand)[1], atol=1e-5)
    with pytest.raises(FileNotFoundError, match="no OMZ peer model in"):
        peer_engines(tmp_path)


def test_compare_peers_needs_similarities(tmp_path, capsys):
    assert main(["--out-dir", str(tmp_path), "--compare-peers", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--compare-peers compares the --similarities matrix" in err
