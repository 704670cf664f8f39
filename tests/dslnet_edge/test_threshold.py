"""Threshold calibration: the pure function on synthetic distributions, pair building, and the CLI."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from testutils import tiny_embedding_onnx

from dslnet_edge.spec import InputSpec
from dslnet_edge.threshold import (
    CalibrationConfig,
    ThresholdCalibration,
    calibrate_threshold,
    main,
    nearest_similarities,
    pair_similarities,
    read_labelled_crops,
    track_means,
)


def _normal(rng, mean, std, n):
    return np.clip(rng.normal(mean, std, n), -1, 1)


def test_balanced_threshold_sits_between_two_equal_width_distributions(rng):
    same, diff = _normal(rng, 0.7, 0.08, 4000), _normal(rng, 0.2, 0.08, 40000)
    result = calibrate_threshold(same, diff)
    assert result.threshold == pytest.approx(0.45, abs=0.02)
    assert result.balanced_accuracy > 0.99 and result.num_same == 4000 and result.num_different == 40000
    # the balanced choice ignores that there are 10x more different pairs
    assert calibrate_threshold(same[:400], diff).threshold == pytest.approx(result.threshold, abs=0.03)


def test_false_match_rate_target_is_met(rng):
    same, diff = _normal(rng, 0.6, 0.1, 5000), _normal(rng, 0.3, 0.1, 50000)
    for target in (0.1, 0.01, 0.001):
        result = calibrate_threshold(same, diff, method="far", target_far=target)
        assert result.false_match_rate <= target
        assert np.mean(diff >= result.threshold) == pytest.approx(result.false_match_rate)
        assert np.mean(same >= result.threshold) == pytest.approx(result.true_match_rate)
    # about the 99th percentile of N(0.3, 0.1)
    assert calibrate_threshold(same, diff, method="far", target_far=0.01).threshold == pytest.approx(0.3 + 2.326 * 0.1, abs=0.01)


def test_f1_prefers_fewer_false_matches_when_different_pairs_dominate(rng):
    same, diff = _normal(rng, 0.6, 0.1, 500), _normal(rng, 0.3, 0.1, 50000)
    f1, balanced = calibrate_threshold(same, diff, method="f1"), calibrate_threshold(same, diff)
    assert f1.threshold > balanced.threshold  # pair F1 counts the many different pairs
    assert f1.f1 >= balanced.f1


def test_separable_scores_give_a_threshold_in_the_gap():
    result = calibrate_threshold([0.8, 0.9, 0.85], [0.1, 0.2, 0.4])
    assert 0.4 < result.threshold < 0.8
    assert (result.true_match_rate, result.false_match_rate, result.balanced_accuracy) == (1.0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("same", "diff", "kwargs", "error"),
    [
        ([], [0.1], {}, "same_sims is empty"),
        ([0.5], [], {}, "diff_sims is empty"),
        ([np.nan], [0.1], {}, "same_sims contains NaN"),
        ([0.5], [3.0], {}, r"cosine similarities in \[-1, 1\]"),
        ([0.5], [0.1], {"method": "youden"}, "method must be one of"),
        ([0.5], [0.1], {"method": "far", "target_far": 2.0}, r"target_far must be in \[0, 1\]"),
    ],
)
def test_bad_inputs(same, diff, kwargs, error):
    with pytest.raises(ValueError, match=error):
        calibrate_threshold(same, diff, **kwargs)


def test_result_is_validated():
    with pytest.raises(ValueError, match="true_match_rate must be in"):
        ThresholdCalibration(0.5, "balanced", 1.2, 0.0, 0.5, 0.5, 1, 1)


def test_pair_similarities_counts_each_pair_once_and_respects_cameras():
    feats = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], np.float32)
    ids, cams = ["a", "a", "b", "a"], ["c1", "c1", "c2", "c2"]
    same, diff = pair_similarities(feats, ids, cams, cross_camera=True)
    # same-identity, different-camera pairs: (0,3) and (1,3), each cos 1/sqrt(2)
    np.testing.assert_allclose(sorted(same), [2**-0.5, 2**-0.5], atol=1e-6)
    np.testing.assert_allclose(sorted(diff), [0.0, 0.0, 2**-0.5], atol=1e-6)
    same_any, _ = pair_similarities(feats, ids, cams, cross_camera=False)
    assert len(same_any) == 3
    capped, _ = pair_similarities(feats, ids, cams, max_pairs=1)
    assert len(capped) == 1


def test_nearest_similarities_by_hand():
    s = 2**-0.5
    feats = np.array([[1, 0], [s, s], [0, 1], [1, 0]], np.float32)
    ids, cams = ["a", "a", "b", "c"], ["c1", "c2", "c2", "c2"]
    best_same, best_diff = nearest_similarities(feats, ids, cams)
    # crop 0 (c1) sees the c2 crops 1 (same), 2 and 3 (different); crop 1 (c2) sees only crop 0 (same,
    # no different crop: left out); crops 2 and 3 see only crop 0 (different, no same: left out)
    np.testing.assert_allclose(best_same, [s], atol=1e-6)
    np.testing.assert_allclose(best_diff, [1.0], atol=1e-6)  # the stranger crop 3 is closer than its own view
    any_same, any_diff = nearest_similarities(feats, ids, cams, cross_camera=False)
    np.testing.assert_allclose(any_same, [s, s], atol=1e-6)  # crops 0 and 1; b and c have no second crop
    np.testing.assert_allclose(any_diff, [1.0, s], atol=1e-6)


def test_nearest_calibration_is_reported_as_such():
    result = calibrate_threshold([0.8, 0.9, 0.7], [0.1, 0.3, 0.2], scores="nearest")
    assert result.scores == "nearest" and "nearest same-person crop" in result.summary()
    with pytest.raises(ValueError, match="scores must be one of"):
        calibrate_threshold([0.8], [0.1], scores="triplets")


def test_track_means_by_hand():
    feats = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 2]], np.float32)
    ids, cams = ["a", "a", "a", "b", "b"], ["c1", "c1", "c1", "c2", "c1"]
    means, mids, mcams = track_means(feats, ids, cams, crops_per_track=2, draws=50, seed=1)
    # a/c1 has 3 crops: its 3 pairs, each once (no more than draws=50: all are taken); b has 1 crop per camera: left out
    assert mids == ["a"] * 3 and mcams == ["c1"] * 3
    s = 2**-0.5
    np.testing.assert_allclose(means, [[s, s, 0], [s, 0, s], [0, s, s]], atol=1e-6)  # rows are normalized first
    one, one_ids, _ = track_means(feats, ids, cams, crops_per_track=1, draws=3)
    assert len(one) == 5 and sorted(one_ids) == sorted(ids)  # k=1, draws=3: every crop once
    drawn, drawn_ids, _ = track_means(feats, ids, cams, crops_per_track=2, draws=2, seed=0)
    assert drawn_ids == ["a", "a"] and not np.allclose(drawn[0], drawn[1])  # 2 of a's 3 pairs, distinct
    np.testing.assert_allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="no identity has 4 crops in one camera"):
        track_means(feats, ids, cams, crops_per_track=4)
    with pytest.raises(ValueError, match="crops_per_track must be a positive integer"):
        track_means(feats, ids, cams, crops_per_track=0)
    with pytest.raises(ValueError, match="cameras has 2 entries for 5 features"):
        track_means(feats, ids, cams[:2], crops_per_track=1)


def test_track_means_separate_people_better_than_single_noisy_crops(rng):
    """Averaging k noisy views of a person lifts the same-person score far more than the nearest stranger's."""
    centres = rng.normal(size=(40, 32))
    feats = np.concatenate([centres[p] + rng.normal(scale=1.5, size=(8, 32)) for p in range(40)])
    ids = [str(p) for p in range(40) for _ in range(8)]
    cams = ["c1", "c2"] * (40 * 4)
    single = calibrate_threshold(*nearest_similarities(feats, ids, cams), scores="nearest")
    tracks = calibrate_threshold(*nearest_similarities(*track_means(feats, ids, cams, crops_per_track=4)),
                                 scores="nearest", crops_per_track=4)
    assert tracks.balanced_accuracy > single.balanced_accuracy + 0.1
    assert tracks.crops_per_track == 4 and "of tracks reach" in tracks.summary() and "mean of 4 crops" in tracks.summary()


def _write_crops(folder, rng, layout):
    """Two cameras x 4 identities; each identity's crops are noisy copies of one base image."""
    folder.mkdir()
    for pid in range(4):
        base = rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)
        for cam in (1, 2):
            for k in range(2):
                crop = np.clip(base.astype(int) + rng.integers(-10, 11, base.shape), 0, 255).astype(np.uint8)
                if layout == "market":
                    path = folder / f"{pid:04d}_c{cam}s1_{k:06d}_00.jpg"
                else:
                    path = folder / f"person{pid}" / f"c{cam}_{k}.png"
                    path.parent.mkdir(exist_ok=True)
                cv2.imwrite(str(path), crop)
    if layout == "market":
        cv2.imwrite(str(folder / "-1_c1s1_000000_00.jpg"), base)  # junk: skipped


def test_read_labelled_crops_both_layouts(tmp_path, rng):
    _write_crops(tmp_path / "market", rng, "market")
    _write_crops(tmp_path / "folders", rng, "folders")
    market = read_labelled_crops([tmp_path / "market"])
    assert len(market) == 16 and {c for _, _, c in market} == {"c1", "c2"} and "-1" not in {i for _, i, _ in market}
    capped = read_labelled_crops([tmp_path / "market"], max_per_identity=1)  # the cap is per identity and camera
    assert len(capped) == 8 and {(i, c) for _, i, c in capped} == {(str(p), c) for p in range(4) for c in ("c1", "c2")}
    folders = read_labelled_crops([tmp_path / "folders"], max_per_identity=3)
    assert len(folders) == 12 and {i for _, i, _ in folders} == {f"person{p}" for p in range(4)}
    assert {c for _, _, c in folders} == {None}


def test_cli_calibrates_on_a_folder(tmp_path, rng, capsys):
    _write_crops(tmp_path / "crops", rng, "market")
    model = tiny_embedding_onnx(tmp_path / "tiny.onnx", InputSpec(height=32, width=16, feature_dim=64))
    assert main(["--data-root", str(tmp_path / "crops"), "--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("threshold ") and "(balanced, nearest): 100.0% of crops reach" in out and "from 16 crops" in out
    assert main(["--data-root", str(tmp_path / "crops"), "--model", str(model), "--scores", "pairs"]) == 0
    assert "100.0% of same-person pairs" in capsys.readouterr().out
    assert main(["--data-root", str(tmp_path / "crops"), "--model", str(model), "--json", "--method", "far"]) == 0
    assert '"method": "far"' in capsys.readouterr().out
    assert main(["--data-root", str(tmp_path / "crops"), "--model", str(model), "--crops-per-track", "2"]) == 0
    out = capsys.readouterr().out  # 4 people x 2 cameras, 2 crops each: one track mean per person and camera
    assert "100.0% of tracks reach their nearest same-person track" in out and "from 8 tracks (each the mean of 2" in out


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--data-root", "/no/such/folder"], "data root /no/such/folder is not a folder"),
        (["--data-root", "{empty}"], "need at least 2 identities"),
        (["--data-root", "{crops}", "--model", "{crops}/missing.onnx"], "missing.onnx does not exist"),
        (["--data-root", "{crops}", "--crops-per-track", "3"], "no identity has 3 crops in one camera"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, rng, args, error):
    (tmp_path / "empty").mkdir()
    _write_crops(tmp_path / "crops", rng, "market")
    args = [a.format(empty=tmp_path / "empty", crops=tmp_path / "crops") for a in args]
    result = subprocess.run([sys.executable, "-m", "dslnet_edge.threshold", *args], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert error in result.stderr


def test_config_is_validated(tmp_path):
    with pytest.raises(ValueError, match="at least one --data-root"):
        CalibrationConfig(data_roots=())
    with pytest.raises(ValueError, match="--max-per-identity must be >= 1"):
        CalibrationConfig(data_roots=(tmp_path,), max_per_identity=0)
    with pytest.raises(ValueError, match="--crops-per-track must be >= 1"):
        CalibrationConfig(data_roots=(tmp_path,), crops_per_track=0)
    with pytest.raises(ValueError, match="applies to --scores nearest"):
        CalibrationConfig(data_roots=(tmp_path,), crops_per_track=2, scores="pairs")


@pytest.mark.parametrize("args", [["--data-root", "x", "--scores", "triplets"], ["--bogus"], []])
def test_cli_bad_arguments_are_one_line(args, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "usage:" not in err
