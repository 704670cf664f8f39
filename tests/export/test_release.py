"""``python -m export.release``: inference-only float16 checkpoint + its ONNX + model card."""

from __future__ import annotations

import json

import numpy as np
import pytest
from testutils import random_crops

from dslnet_edge.engine import Engine
from dslnet_edge.model.checkpoint import load_checkpoint, save_checkpoint
from export.release import ReleaseConfig, main, release


@pytest.fixture
def training_checkpoint(make_model, tmp_path):
    model = make_model(seed=3).train()
    return save_checkpoint(tmp_path / "best.pt", model, epoch=7, metrics={"rank1": 0.5, "mAP": 0.4, "acc": 0.9},
                           dataset="synthetic", optimizer={"lr": 0.1})


def test_release_writes_three_files_that_agree(training_checkpoint, tmp_path, rng):
    out = release(ReleaseConfig(training_checkpoint, tmp_path / "rel", "demo", terms="research only",
                                metrics={"rank1": 0.61}))
    payload = load_checkpoint(out["pt"])
    assert payload["inference_only"] and "optimizer" not in payload
    assert payload["provenance"]["epoch"] == 7 and payload["terms"] == "research only"
    assert not any(k.startswith(("classifier", "aux_")) for k in payload["state_dict"])
    assert out["pt"].stat().st_size < 0.6 * training_checkpoint.stat().st_size
    card = json.loads(out["json"].read_text())
    assert card["evaluation"] == {"rank1": 0.61} and card["training"]["epoch"] == 7
    assert card["input_spec"]["height"] == 32 and set(card["sha256"]) == {"demo.pt", "demo.onnx"}
    # The ONNX is exported from the float16 checkpoint: both give the same embeddings.
    crops = random_crops(rng, 5)
    with Engine(out["onnx"], backend="onnxruntime") as onnx_engine, Engine(out["pt"]) as torch_engine:  # FP32 vs FP32
        a, b = onnx_engine.embed(crops), torch_engine.embed(crops)
    assert np.min(np.sum(a * b, axis=1)) > 0.99999


def test_half_weights_are_stored(training_checkpoint, tmp_path):
    import torch

    out = release(ReleaseConfig(training_checkpoint, tmp_path, "demo"))
    state = torch.load(out["pt"], weights_only=True)["state_dict"]
    floats = [v for v in state.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "missing.pt", "--out-dir", "x", "--name", "demo"], "does not exist"),
        (["--checkpoint", "CKPT", "--out-dir", "x", "--name", "../escape"], "--name must be a plain file stem"),
        (["--checkpoint", "CKPT", "--out-dir", "x", "--name", "demo", "--metrics", "BADJSON"], "is not valid JSON"),
        (["--out-dir", "x", "--name", "demo"], "required: --checkpoint"),
    ],
)
def test_cli_errors_are_one_line(args, message, training_checkpoint, tmp_path, capsys):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    args = [str(training_checkpoint) if a == "CKPT" else str(bad_json) if a == "BADJSON" else
            str(tmp_path / a) if a in ("missing.pt", "x") else a for a in args]
    assert main(args) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
