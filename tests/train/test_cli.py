"""The command lines: one clear error line and a non-zero exit; evaluation outputs and values."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from dslnet_edge.metrics import cosine_distance, evaluate_rank
from dslnet_edge.model import build_variant
from dslnet_edge.model.checkpoint import save_checkpoint
from dslnet_edge.preprocessing import preprocess
from dslnet_edge.spec import InputSpec
from train import evaluate, peers, run
from train.data import read_market1501


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and "Traceback" not in err[0]
    return err[0]


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_variant("dslnet", num_classes=8, spec=InputSpec(height=32, width=16))
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(path, model)
    return path


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data-root", "/definitely/missing"], "does not exist"),
        (["--set", "optim.lrr=1", "--data-root", "x"], "unknown configuration key 'optim.lrr'"),
        (["--set", "schedule.epochs=ten"], "schedule.epochs must be an integer"),
        (["--config", "/missing.yaml"], "config file /missing.yaml does not exist"),
        ([], "no training data: set data.root"),
    ],
)
def test_run_errors_are_one_line(argv, message, capsys, tmp_path):
    assert run.main([*argv, "--output", str(tmp_path / "out")]) == 2
    assert message in one_error_line(capsys)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--height", "7", "--width", "3"], "data.height and data.width must be >= 13 (DSLNet downsamples by 16"),
        (["--lr", "nan"], "optim.lr must be a finite number, got nan"),
        (["--lr", "inf"], "optim.lr must be a finite number, got inf"),
        (["--set", "loss.margin=.nan"], "must be a finite number"),
    ],
)
def test_run_bad_values_are_refused_before_anything_is_written(argv, message, synthetic_market, tmp_path, capsys):
    out = tmp_path / "out"
    assert run.main(["--data-root", str(synthetic_market), "--output", str(out), "--epochs", "1", *argv]) == 2
    assert message in one_error_line(capsys)
    assert not out.exists()  # no config.yaml, no checkpoint


@pytest.mark.slow
def test_run_on_a_full_disk_is_one_line(synthetic_market, tmp_path):
    """The kernel refuses writes past 200 KiB (a full disk, see testutils.file_size_limited): the ~1 MB
    checkpoint cannot be written. Was torch.save's RuntimeError ("unexpected pos ...") as a traceback."""
    from testutils import file_size_limited

    out = tmp_path / "run"
    proc = subprocess.run(file_size_limited([sys.executable, "-m", "train.run", "--data-root", str(synthetic_market),
                                             "--output", str(out), "--height", "32", "--width", "16", "--epochs", "1",
                                             "--no-progress", "--set", "data.p=4", "--set", "run.max_iters=1",
                                             "--set", "run.tensorboard=false"], 200 << 10),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]  # the lines before it are the training log
    assert last.startswith("error: could not write checkpoint ") and last.endswith("last.pt: File too large"), last
    assert not list(out.glob("*.pt")) and not list(out.glob(".*.tmp*"))  # nothing half-written left behind


def test_run_resume_with_a_corrupt_checkpoint(small_checkpoint, tmp_path, capsys, synthetic_market):
    corrupt = tmp_path / "last.pt"
    corrupt.write_bytes(small_checkpoint.read_bytes()[:500])
    assert run.main(["--data-root", str(synthetic_market), "--output", str(tmp_path), "--resume"]) == 2
    assert "could not be read (truncated, corrupt or not a PyTorch file)" in one_error_line(capsys)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    assert run.main(["--data-root", str(synthetic_market), "--resume", str(foreign)]) == 2
    assert "not a dslnet_edge checkpoint" in one_error_line(capsys)
    assert run.main(["--output", str(tmp_path / "empty"), "--resume"]) == 2
    assert "nothing to resume" in one_error_line(capsys)


def test_run_print_config_applies_flags(capsys):
    assert run.main(["--recipe", "fine_tune", "--lr", "0.01", "--height", "128", "--width", "64", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "lr: 0.01" in printed and "height: 128" in printed and "name: amsgrad" in printed


def test_run_module_entry_point_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "train.run", "--data-root", str(tmp_path / "nope"), "--output",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_evaluate_cli_writes_results_and_pictures_with_the_metric_values(small_checkpoint, synthetic_market, tmp_path,
                                                                         capsys):
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(small_checkpoint), "--data-root", str(synthetic_market), "--output", str(out),
            "--rerank", "--threads", "1"]
    assert evaluate.main(argv) == 0
    printed = capsys.readouterr().out
    assert "Rank-1" in printed and "[cosine+rerank]" in printed
    report = json.loads((out / "results.json").read_text())
    for name in ("cmc.png", "ranked.png"):
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[0] > 50
    # the same numbers computed directly: model on preprocess(), cosine, evaluate_rank
    split = read_market1501(synthetic_market)
    from dslnet_edge.model.checkpoint import load_model

    model = load_model(small_checkpoint)

    def embed(items):
        batch = preprocess([cv2.imread(im.path) for im in items], model.spec)
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    ids = [np.array([im.pid for im in s]) for s in (split.query, split.gallery)]
    cams = [np.array([im.camid for im in s]) for s in (split.query, split.gallery)]
    direct = evaluate_rank(cosine_distance(embed(split.query), embed(split.gallery)), ids[0], ids[1], cams[0], cams[1])
    assert report["results"]["cosine"]["rank1"] == pytest.approx(direct.rank1)
    assert report["results"]["cosine"]["mAP"] == pytest.approx(direct.mAP, abs=1e-6)
    assert report["num_query"] == 8 and report["num_gallery"] == 12


def test_evaluate_onnx_export_matches_the_checkpoint(small_checkpoint, synthetic_market, tmp_path, capsys):
    from dslnet_edge.model.checkpoint import load_model
    from export.onnx import export_onnx

    onnx_path = export_onnx(load_model(small_checkpoint), tmp_path / "small.onnx")
    results = {}
    for model in (small_checkpoint, onnx_path):
        assert evaluate.main(["--checkpoint", str(model), "--data-root", str(synthetic_market), "--output",
                              str(tmp_path / model.suffix[1:]), "--no-plots", "--json"]) == 0
        results[model.suffix] = json.loads(capsys.readouterr().out)["results"]["cosine"]
    assert results[".onnx"]["rank1"] == pytest.approx(results[".pt"]["rank1"])
    assert results[".onnx"]["mAP"] == pytest.approx(results[".pt"]["mAP"], abs=1e-4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--checkpoint", "/missing.pt", "--data-root", "."], "model /missing.pt does not exist"),
        (["--checkpoint", "{ckpt}", "--data-root", "/missing"], "does not exist"),
    ],
)
def test_evaluate_errors_are_one_line(argv, message, small_checkpoint, capsys):
    argv = [a.replace("{ckpt}", str(small_checkpoint)) for a in argv]
    assert evaluate.main(argv) == 2
    assert message in one_error_line(capsys)


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--max-images", "-5", "--max-images must be an integer >= 0, got -5 (0 = all)"),
        ("--batch-size", "0", "--batch-size must be an integer >= 1, got 0"),
        ("--threads", "-1", "--threads must be an integer >= 0, got -1"),
    ],
)
def test_evaluate_bad_numbers_are_one_line(flag, value, message, small_checkpoint, synthetic_market, tmp_path, capsys):
    argv = ["--checkpoint", str(small_checkpoint), "--data-root", str(synthetic_market), "--output", str(tmp_path / "e")]
    assert evaluate.main([*argv, flag, value]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("train_folder", ["empty", "absent"])
def test_evaluate_does_not_need_the_training_folder(train_folder, small_checkpoint, synthetic_market, tmp_path, capsys):
    """Evaluation reads query/ and bounding_box_test/ only; it used to refuse a root whose bounding_box_train/ is empty."""
    import shutil

    root = tmp_path / "test_only"
    for sub in ("query", "bounding_box_test"):
        shutil.copytree(synthetic_market / sub, root / sub)
    if train_folder == "empty":
        (root / "bounding_box_train").mkdir()
    argv = ["--checkpoint", str(small_checkpoint), "--data-root", str(root), "--output", str(tmp_path / "e"), "--json",
            "--no-plots"]
    assert evaluate.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_query"] == 8 and report["num_gallery"] == 12
    full = evaluate.main([*argv[:3], str(synthetic_market), *argv[4:]])  # the same numbers as with the training folder
    assert full == 0
    assert json.loads(capsys.readouterr().out)["results"] == report["results"]


def test_evaluate_rejects_a_foreign_onnx(tmp_path, capsys, synthetic_market):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    onnx.save(helper.make_model(graph), str(tmp_path / "foreign.onnx"))
    assert evaluate.main(["--checkpoint", str(tmp_path / "foreign.onnx"), "--data-root", str(synthetic_market)]) == 2
    assert "not a dslnet_edge export" in one_error_line(capsys)


def test_peers_cli_errors(tmp_path, capsys, synthetic_market):
    assert peers.main(["--data-root", str(synthetic_market), "--peers-dir", str(tmp_path), "--models", "0267"]) == 2
    assert "does not exist" in one_error_line(capsys)
    assert peers.main(["--data-root", str(synthetic_market), "--peers-dir", str(tmp_path), "--models", "9999"]) == 2
    assert "no peer matches" in one_error_line(capsys)
    assert peers.main(["--data-root", str(synthetic_market), "--peers-dir", str(tmp_path), "--max-images", "-5"]) == 2
    assert "--max-images must be an integer >= 0, got -5" in one_error_line(capsys)


def test_peers_evaluation_does_not_need_the_training_folder(small_checkpoint, synthetic_market, tmp_path):
    import shutil

    root = tmp_path / "test_only"
    for sub in ("query", "bounding_box_test"):
        shutil.copytree(synthetic_market / sub, root / sub)
    (root / "bounding_box_train").mkdir()  # empty: used to be "holds no usable images"
    rows = peers.evaluate_peers(root, tmp_path, names=[], checkpoints=[str(small_checkpoint)])
    full = peers.evaluate_peers(synthetic_market, tmp_path, names=[], checkpoints=[str(small_checkpoint)])
    assert [r.name for r in rows] == ["small.pt"] and rows[0].result.to_dict() == full[0].result.to_dict()


def test_torchrun_two_cpu_ranks_with_a_frozen_first_epoch(synthetic_market, tmp_path):
    """DDP on CPU (gloo): sharded P x K batches, DDP rebuilt when the backbone unfreezes, rank 0 writes."""
    import os
    import socket

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
         "-m", "train.run", "--data-root", str(synthetic_market), "--output", str(tmp_path), "--height", "32",
         "--width", "16", "--set", "data.p=4", "--set", "data.k=4", "--epochs", "2", "--threads", "1",
         "--set", "optim.freeze_backbone_epochs=1", "--eval-every", "1", "--no-progress", "--device", "cpu",
         "--set", "run.tensorboard=false"],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("done:") == 1
    assert "x2 ranks" in proc.stderr and "frozen 1" in proc.stderr and "frozen 0" in proc.stderr
    from dslnet_edge.model.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
