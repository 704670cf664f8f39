"""The accuracy gate: passes a good Q/DQ model, fails a broken one loudly, never judges on calibration crops,
splits query/gallery by camera, and its result is a validated, round-tripping, sha-pinned record."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from calibration.crops import list_images, parse_market_name
from calibration.errors import GateFailure
from calibration.gate import (
    GateResult,
    GateThresholds,
    Holdout,
    check_gate,
    gate_path_for,
    read_gate,
    run_gate,
    select_holdout,
)
from calibration.pipeline import calibrate
from calibration.quantization import QuantizeConfig


def _broken_copy(qdq_path, out, factor=100.0):
    """The Q/DQ model with every activation scale multiplied by ``factor`` (a classic broken calibration)."""
    model = onnx.load(qdq_path)
    inits = {i.name: i for i in model.graph.initializer}
    activation_scales = {n.input[1] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    for name in activation_scales:
        array = numpy_helper.to_array(inits[name]) * np.float32(factor)
        inits[name].CopyFrom(numpy_helper.from_array(array.astype(np.float32), name))
    onnx.save(model, out)
    return out


# ---------------------------------------------------------------------------------------------
# verdicts
# ---------------------------------------------------------------------------------------------
def test_gate_passes_a_good_model(fp32_onnx, quantized, holdout_dir):
    result = run_gate(fp32_onnx, quantized.path, holdout_dir)
    assert result.passed and result.failures == ()
    assert result.ranked and result.num_queries == 12 and result.num_gallery == 36 and result.num_crops == 48
    assert result.mean_cosine > 0.999 and result.min_cosine > 0.99
    assert 0.0 <= result.int8_rank1 <= 1.0 and result.rank1_allowed_drop == pytest.approx(1 / 12)
    assert "PASSED" in result.format() and result.summary().startswith("INT8 gate passed on 48 held-out crops")
    assert check_gate(result) is result


def test_gate_fails_a_model_with_broken_scales(fp32_onnx, quantized, holdout_dir, tmp_path):
    broken = _broken_copy(quantized.path, tmp_path / "broken.int8.onnx")
    result = run_gate(fp32_onnx, broken, holdout_dir)
    assert not result.passed
    assert any(f.startswith("mean cosine") for f in result.failures) and result.mean_cosine < 0.9
    with pytest.raises(GateFailure, match=r"INT8 gate FAILED .*mean cosine 0\.\d+ \(>= 0\.95\)") as info:
        check_gate(result)
    assert info.value.result is result and "\n" not in str(info.value)


def test_gate_fails_on_retrieval_alone(fp32_onnx, quantized, holdout_dir, tmp_path):
    """With the cosine checks switched off, the broken model still fails: on Rank-1/mAP."""
    broken = _broken_copy(quantized.path, tmp_path / "broken.int8.onnx")
    lenient = GateThresholds(min_mean_cosine=-1.0, min_cosine=None)
    result = run_gate(fp32_onnx, broken, holdout_dir, thresholds=lenient)
    assert not result.passed and result.failures
    assert all(f.startswith(("Rank-1 drop", "mAP drop")) for f in result.failures), result.failures
    assert result.fp32_mAP - result.int8_mAP > result.map_allowed_drop


def test_rank_bounds_are_never_tighter_than_one_query(fp32_onnx, quantized, holdout_dir):
    result = run_gate(fp32_onnx, quantized.path, holdout_dir,
                      thresholds=GateThresholds(max_rank1_drop=0.001, max_map_drop=0.5))
    assert result.rank1_allowed_drop == pytest.approx(1 / result.num_queries)
    assert result.map_allowed_drop == 0.5


# ---------------------------------------------------------------------------------------------
# held-out crops
# ---------------------------------------------------------------------------------------------
def test_holdout_never_contains_calibration_crops(quantized, calib_dir):
    holdout = select_holdout(calib_dir, 1000, exclude=quantized.crops)
    assert not {p.resolve() for p in holdout.paths} & {p.resolve() for p in quantized.crops}
    assert len(holdout.paths) > 0


def test_holdout_split_by_camera_from_market_names(holdout_dir):
    holdout = select_holdout(holdout_dir, 48, per_identity=4)
    assert holdout.ranked and len(holdout.paths) == 48 and holdout.is_query.sum() == 12
    for pid in np.unique(holdout.pids):
        mine = holdout.pids == pid
        assert holdout.is_query[mine].sum() == 1 and len(np.unique(holdout.cams[mine])) == 2
    again = select_holdout(holdout_dir, 48, per_identity=4)
    assert again.paths == holdout.paths  # deterministic
    assert select_holdout(holdout_dir, 48, seed=1).paths != holdout.paths


def test_holdout_uses_the_dataset_split_when_present(holdout_dir, tmp_path):
    root = tmp_path / "market"
    for sub, cams in (("query", (1,)), ("bounding_box_test", (2,)), ("bounding_box_train", (1, 2))):
        (root / sub).mkdir(parents=True)
        for path in list_images(holdout_dir):
            if parse_market_name(path)[1] in cams:
                shutil.copy(path, root / sub / path.name)
    holdout = select_holdout(root, 1000)
    query = [p for p, q in zip(holdout.paths, holdout.is_query) if q]
    assert query and all(p.parent.name == "query" for p in query)
    assert all(p.parent.name in ("query", "bounding_box_test") for p in holdout.paths)  # training crops never judge
    small = select_holdout(root, 20)
    assert len(small.paths) <= 20 and small.ranked


def test_holdout_without_identities_compares_embeddings_only(fp32_onnx, quantized, tmp_path, holdout_dir):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, path in enumerate(list_images(holdout_dir)[:10]):
        shutil.copy(path, folder / f"frame_{i:04d}.jpg")
    holdout = select_holdout(folder, 8)
    assert not holdout.ranked and len(holdout.paths) == 8 and "not Market-style" in holdout.note
    result = run_gate(fp32_onnx, quantized.path, folder, num_images=8)
    assert result.passed and not result.ranked and result.fp32_rank1 is None and "not Market-style" in result.format()


def test_holdout_errors(tmp_path, calib_dir):
    with pytest.raises(ValueError, match="at least 2 held-out crops"):
        select_holdout(calib_dir, 1)
    with pytest.raises(ValueError, match="besides the"):
        select_holdout(calib_dir, 10, exclude=list_images(calib_dir))
    with pytest.raises(ValueError, match="one query and one gallery"):
        Holdout(tuple(list_images(calib_dir)[:2]), np.array([1, 1]), np.array([1, 2]), np.array([True, True]))


# ---------------------------------------------------------------------------------------------
# the record
# ---------------------------------------------------------------------------------------------
def _result(**changes) -> GateResult:
    base = dict(passed=True, failures=(), fp32_onnx="a.onnx", int8_onnx="a.int8.onnx", int8_sha256="0" * 64,
                holdout="h", num_crops=10, mean_cosine=0.99, min_cosine=0.95, max_abs=0.1, thresholds=GateThresholds())
    return GateResult(**{**base, **changes})


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(passed=False), "passed must be True exactly when"),
        (dict(failures=("x",)), "passed must be True exactly when"),
        (dict(num_crops=0), "num_crops must be >= 1"),
        (dict(mean_cosine=1.5), "must be a cosine"),
        (dict(fp32_rank1=0.5), "go together"),
        (dict(fp32_rank1=1.5, int8_rank1=0.5, fp32_mAP=0.5, int8_mAP=0.5, rank1_allowed_drop=0.02,
              num_queries=3, num_gallery=3), "fractions"),
        (dict(fp32_rank1=0.5, int8_rank1=0.5, fp32_mAP=0.5, int8_mAP=0.5, rank1_allowed_drop=0.02), "num_queries"),
        (dict(int8_sha256="abc"), "sha256"),
    ],
)
def test_gate_result_is_validated(changes, message):
    with pytest.raises(ValueError, match=message):
        _result(**changes)


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(min_mean_cosine=1.2), "min_mean_cosine"), (dict(max_rank1_drop=2.0), "fraction"),
     (dict(max_map_drop=-0.1), "fraction")],
)
def test_thresholds_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GateThresholds(**kwargs)


def test_gate_result_round_trips_and_is_pinned_to_its_model(fp32_onnx, quantized, holdout_dir, tmp_path):
    qdq = tmp_path / "m.int8.onnx"
    shutil.copy(quantized.path, qdq)
    result = run_gate(fp32_onnx, qdq, holdout_dir)
    path = result.save(gate_path_for(qdq))
    assert path == tmp_path / "m.int8.gate.json"
    assert GateResult.from_dict(json.loads(path.read_text())) == result
    assert read_gate(qdq) == result
    qdq.write_bytes(qdq.read_bytes() + b"\0")  # another model at that path: the old verdict does not apply
    assert read_gate(qdq) is None
    path.write_text("{}")
    with pytest.raises(ValueError, match="unreadable"):
        read_gate(qdq)


def test_nan_cosines_serialise_as_strict_json():
    result = _result(passed=False, failures=("12 non-finite values",), mean_cosine=float("nan"), min_cosine=float("nan"),
                     max_abs=float("nan"))
    text = json.dumps(result.to_dict(), allow_nan=False)
    back = GateResult.from_dict(json.loads(text))
    assert np.isnan(back.mean_cosine) and back.failures == result.failures


# ---------------------------------------------------------------------------------------------
# calibrate = quantize + gate + publish
# ---------------------------------------------------------------------------------------------
def test_calibrate_publishes_only_what_passed(fp32_onnx, calib_dir, holdout_dir, tmp_path):
    out = tmp_path / "m.int8.onnx"
    config = QuantizeConfig(num_images=12)
    result = calibrate(fp32_onnx, calib_dir, out, holdout_dir=holdout_dir, config=config)
    assert result.path == out and out.is_file() and result.gate.passed and read_gate(out) == result.gate
    assert result.gate.int8_onnx == str(out)
    before = out.read_bytes()
    impossible = GateThresholds(min_mean_cosine=1.0, min_cosine=None)
    with pytest.raises(GateFailure, match=r"mean cosine .* \(>= 1\.0\)"):
        calibrate(fp32_onnx, calib_dir, out, holdout_dir=holdout_dir, config=QuantizeConfig(num_images=8),
                  thresholds=impossible)
    assert out.read_bytes() == before  # the failed model did not replace the good one
    failed = json.loads(gate_path_for(out).read_text())
    assert failed["passed"] is False  # the failed verdict is kept ...
    assert read_gate(out) is None  # ... pinned to the failed model's sha256, so it says nothing about the file at out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left behind


def test_calibrate_without_holdout_judges_on_the_rest_of_the_folder(fp32_onnx, calib_dir, tmp_path):
    result = calibrate(fp32_onnx, calib_dir, tmp_path / "m.int8.onnx", config=QuantizeConfig(num_images=24))
    assert result.gate.num_crops > 0
    assert result.gate.holdout == str(calib_dir)
    with pytest.raises(ValueError, match="none would be left for the accuracy gate"):
        calibrate(fp32_onnx, calib_dir, tmp_path / "n.int8.onnx", config=QuantizeConfig(num_images=500))
