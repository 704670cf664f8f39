"""dslnet_edge.bench on a tiny real model: every section runs, the table/JSON have their structure,
and the numbers are positive and consistent with each other (never timing thresholds)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from testutils import tiny_embedding_onnx

from dslnet_edge.backends.precision_check import person_like_crops
from dslnet_edge.bench import BenchConfig, run_bench, to_json, to_markdown
from dslnet_edge.bench.__main__ import main
from dslnet_edge.bench.core import count_flops, peak_gflops, time_backend
from dslnet_edge.bench.peers import PEERS, NormalizingBackend
from dslnet_edge.spec import InputSpec

SPEC = InputSpec(height=16, width=8, feature_dim=32)
PIDS = (1, 2, 3, 4)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_embedding_onnx(tmp_path_factory.mktemp("bench") / "tiny.onnx", SPEC)


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    """query/ + bounding_box_test/ with Market-1501 names: 4 identities, 2 cameras, drawn people."""
    root = tmp_path_factory.mktemp("market")
    crops = iter(person_like_crops(len(PIDS) * 3, seed=5))
    for pid in PIDS:
        for folder, cam in (("query", 1), ("bounding_box_test", 2), ("bounding_box_test", 2)):
            (root / folder).mkdir(exist_ok=True)
            n = len(list((root / folder).glob(f"{pid:04d}_*")))
            cv2.imwrite(str(root / folder / f"{pid:04d}_c{cam}s1_{n:06d}_00.jpg"), next(crops))
    return root


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    assert writer.isOpened()
    people = person_like_crops(6, seed=9)
    for i in range(6):
        frame = np.full((240, 320, 3), 90, np.uint8)
        person = cv2.resize(people[i], (80, 200))
        frame[20:220, 40 + 20 * i : 120 + 20 * i] = person
        writer.write(frame)
    writer.release()
    return path


def _config(tiny, market, video, **overrides) -> BenchConfig:
    base = dict(model=tiny, torch=False, data_root=market, video=video, batches=(1, 4), seconds=0.02, min_calls=3,
                gemm_size=64, gallery_sizes=(40, 400), gallery_queries=2, video_frames=6, eval_identities=0)
    return BenchConfig(**{**base, **overrides})


def test_a_minimal_run_has_every_section_with_consistent_numbers(tiny, market, video):
    pytest.importorskip("openvino")
    result = run_bench(_config(tiny, market, video))
    json.loads(to_json(result))  # JSON-able as it stands
    machine = result["machine"]
    assert {"date_utc", "cpu", "logical_cpus", "threads", "versions"} <= machine.keys()
    assert machine["versions"]["onnxruntime"] and machine["versions"]["openvino"]

    rows = result["rows"]
    families = {(r["model"], r["runtime"], r["precision"]) for r in rows}
    assert ("DSLNet", "onnxruntime", "fp32") in families and ("DSLNet", "openvino", "f32") in families
    assert any(k[1] == "openvino" and k[2].endswith(("bf16", "f32")) and k != ("DSLNet", "openvino", "f32") for k in families)
    for r in rows:
        assert r["batch"] in (1, 4) and r["calls"] >= 3
        assert r["crops_per_s"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"]
        assert r["gflop_per_crop"] == pytest.approx(2 * 3 * 16 * 8 * 32 / 1e9)  # one MatMul: 2 x 384 x 32
        assert r["gflops"] == pytest.approx(r["crops_per_s"] * r["gflop_per_crop"])
        peak = result["peak"][r["runtime"]]["gflops"]
        assert r["fraction_of_fp32_peak"] == pytest.approx(r["gflops"] / peak)
    for p in result["peak"].values():
        assert p["gflops"] > 0 and p["n"] == 64

    assert result["eval_set"] == {"root": str(market), "queries": 4, "gallery": 8, "identities": 4}
    for a in result["accuracy"]:
        assert 0 <= a["rank1"] <= 1 and 0 <= a["mAP"] <= 1 and a["queries"] == 4
    fp32 = next(a for a in result["accuracy"] if a["runtime"] == "onnxruntime")
    ov32 = next(a for a in result["accuracy"] if (a["runtime"], a["precision"]) == ("openvino", "f32"))
    assert ov32["rank1"] == fp32["rank1"] and ov32["mAP"] == pytest.approx(fp32["mAP"], abs=1e-6)  # same model

    gallery = result["gallery"]
    assert [g["exemplars"] for g in gallery] == [40, 400]
    for g in gallery:
        assert g["numpy_ms"] > 0
        if "faiss_ms" in g:
            assert g["faiss_ms"] > 0 and g["faiss_first_search_ms"] > 0

    v = result["video"]
    assert v["frames"] == 6 and v["fps"] > 0
    stages = v["stages_ms_per_frame"]
    assert set(stages) == {"decode", "detect", "embed", "match"} and all(ms >= 0 for ms in stages.values())
    assert v["fps"] == pytest.approx(1000 / sum(stages.values()), rel=1e-6)

    assert any("INT8 rows skipped" in n for n in result["notes"])
    assert any("peer rows skipped" in n for n in result["notes"])

    md = to_markdown(result)
    assert "**Machine**" in md and "| model | runtime | precision | b1 crops/s | b1 p50/p99 ms | b4 crops/s |" in md
    assert "| DSLNet | onnxruntime | fp32 |" in md and "1.00x" in md  # the baseline row is 1.00x of itself
    assert "| gallery exemplars |" in md and "| 400 |" in md
    assert "frames/s" in md and "| embed |" in md


def test_time_backend_slices_batches_for_fixed_batch_models(tmp_path):
    from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(tiny_embedding_onnx(tmp_path / "fixed.onnx", SPEC, fixed_batch=1))
    sizes = []
    inner = backend.infer
    backend.infer = lambda batch: sizes.append(len(batch)) or inner(batch)
    timing = time_backend(backend, np.zeros((3, 3, 16, 8), np.float32), seconds=0.0, min_calls=2)
    assert timing["calls"] == 2 and set(sizes) == {1} and len(sizes) == 3 * (2 + 2)  # 2 warm-ups + 2 timed calls


def test_flops_are_counted_on_the_graph(tiny):
    pytest.importorskip("openvino")
    assert count_flops(tiny, SPEC) == 2 * 384 * 32
    assert count_flops(tiny.with_suffix(".missing.onnx"), SPEC) is None


def test_peak_is_measured_in_both_runtimes():
    pytest.importorskip("openvino")
    peak = peak_gflops(32, repeats=2)
    assert set(peak) == {"onnxruntime", "openvino"} and all(p["gflops"] > 0 for p in peak.values())


def test_gallery_sizes_over_the_memory_bound_are_skipped(tiny, market, video):
    result = run_bench(_config(tiny, market, video, sections=frozenset({"gallery"}), gallery_sizes=(40, 10_000_000),
                               max_gallery_gb=0.5))
    assert "rows" not in result and "peak" not in result and "video" not in result
    big = result["gallery"][1]
    assert big["exemplars"] == 10_000_000 and big["note"].startswith("skipped: needs ~") and "numpy_ms" not in big


def test_normalizing_backend_applies_imagenet_mean_std(tmp_path):
    from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    peer_spec = next(p for p in PEERS if p.runtime == "onnxruntime").spec
    spec = peer_spec.replace(height=16, width=8, feature_dim=32)
    plain = OnnxRuntimeBackend(tiny_embedding_onnx(tmp_path / "n.onnx", SPEC), spec=spec)
    wrapped = NormalizingBackend(plain)
    batch = np.random.default_rng(0).uniform(0, 255, (2, 3, 16, 8)).astype(np.float32)
    mean = np.array(spec.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.array(spec.std, np.float32).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(wrapped.infer(batch), plain.infer((batch / 255 - mean) / std), atol=1e-5)


def test_cli_writes_json_and_markdown(tiny, market, video, tmp_path, capsys):
    pytest.importorskip("openvino")
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    status = main(["--quick", "--model", str(tiny), "--no-torch", "--no-peers", "--data-root", str(market),
                   "--video", str(video), "--batches", "1", "2", "--seconds", "0.01", "--gemm-size", "64",
                   "--gallery-sizes", "40", "--video-frames", "3", "--json", str(out_json), "--markdown", str(out_md),
                   "--quiet"])
    assert status == 0
    printed = capsys.readouterr().out
    result = json.loads(out_json.read_text())
    assert result["config"]["quick"] is True and result["config"]["batches"] == [1, 2]
    assert out_md.read_text().strip() == printed.strip()
    assert {r["batch"] for r in result["rows"]} == {1, 2}


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["--model", "/nonexistent/model.onnx"], 1, "--model /nonexistent/model.onnx does not exist"),
        (["--batches", "0", "--no-peers"], 2, "batches must be positive integers"),
        (["--only", "nothing"], 2, "invalid choice"),
        (["--seconds", "-1", "--no-peers"], 2, "seconds must be > 0"),
    ],
)
def test_cli_errors_are_one_line(argv, status, message, capsys, tiny):
    if "--model" not in argv:
        argv = ["--model", str(tiny), *argv]
    assert main(argv) == status
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
