"""Smoke tests on the real CUHK03 images (../shared/data); skipped with a reason when absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dslnet_edge.model.checkpoint import load_checkpoint
from train.config import resolve_config
from train.data import read_dataset
from train.loop import fit

pytestmark = pytest.mark.realdata


def peers_dir(real_data: Path) -> Path:
    folder = real_data.parent / "peers" / "openvino-omz"
    if not folder.is_dir():
        pytest.skip(f"peer models not found at {folder}")
    return folder


def test_reader_sees_the_documented_cuhk03_pair1_split(real_data):
    split = read_dataset("market1501", real_data / "cuhk03-pair1")
    # the data README: 7,239 train images of 743 ids (0000-0742), 451 queries (c1), 487 gallery (c2)
    assert (len(split.train), split.num_train_pids) == (7239, 743)
    assert split.train_pid_names[0] == 0 and split.train_pid_names[-1] == 742
    assert (len(split.query), len(split.gallery)) == (451, 487)
    assert {im.camid for im in split.query} == {0} and {im.camid for im in split.gallery} == {1}


def test_training_smoke_on_a_slice(real_data, tmp_path):
    before = torch.get_num_threads()
    cfg = resolve_config(overrides=[{
        "data": {"root": str(real_data / "cuhk03-pair1"), "height": 32, "width": 16, "p": 4, "k": 4,
                 "max_identities": 8, "eval_max_images": 40},
        "schedule": {"epochs": 1},
        "loss": {"triplet": "e_trihard"},
        "run": {"output": str(tmp_path), "threads": 1, "progress": False, "tensorboard": False, "max_iters": 2},
    }])
    try:
        result = fit(cfg)
    finally:
        torch.set_num_threads(before)
    payload = load_checkpoint(result.last_checkpoint)
    assert payload["model_config"]["num_classes"] == 8 and payload["epoch"] == 1
    row = result.history[0]
    assert row["triplet"] > 0 and 0.0 <= row["rank1"] <= 1.0 and 0.0 < row["mAP"] <= 1.0
    assert (tmp_path / "best.pt").exists() and (tmp_path / "metrics.csv").exists()


def test_peer_0267_reproduces_the_documented_numbers(real_data):
    from train.peers import evaluate_peers

    rows = evaluate_peers(real_data / "cuhk03-pair1", peers_dir(real_data), names=["0267"], threads=1)
    (row,) = rows
    # ../shared/data/README.md: 0267 R1 0.743 / mAP 0.719 (query c1 vs gallery c2, cosine)
    assert row.result.rank1 == pytest.approx(0.743, abs=0.003)
    assert row.result.mAP == pytest.approx(0.719, abs=0.003)


def test_peer_0287_through_openvino(real_data):
    pytest.importorskip("openvino", reason="OpenVINO IR peers need the optional openvino package")
    from train.peers import evaluate_peers

    (row,) = evaluate_peers(real_data / "cuhk03-pair1", peers_dir(real_data), names=["0287"], threads=1)
    # README: R1 0.743 / mAP 0.726; OpenVINO versions differ in the last digit
    assert row.result.rank1 == pytest.approx(0.743, abs=0.006)
    assert row.result.mAP == pytest.approx(0.726, abs=0.006)
