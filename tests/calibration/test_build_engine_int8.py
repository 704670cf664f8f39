"""``export.build_engine --int8``: ``--calibration-dir`` goes through calibration and its gate, the gate lands in
the sidecar, and a user's ``--qdq-onnx`` (ModelOpt, or an earlier calibration) is still accepted."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("torch", reason="export.build_engine needs the export extra")

from calibration.gate import GateThresholds, gate_path_for, run_gate  # noqa: E402
from export.build_engine import (  # noqa: E402
    EngineBuildConfig,
    artefact_paths,
    main,
    prepare_onnx,
    sidecar_dict,
)
from export.plugin.trt_plugin import PluginSupport, plugin_support  # noqa: E402
from export.tensorrt_build import GpuInfo, Profile  # noqa: E402

NO_TRT = PluginSupport(None, False, False, "TensorRT is not installed")
no_tensorrt = pytest.mark.skipif(plugin_support().tensorrt is not None, reason="TensorRT is installed: the build goes on")


@no_tensorrt
def test_calibration_dir_calibrates_gates_and_stops_before_tensorrt(fp32_onnx, calib_dir, holdout_dir, tmp_path, capsys):
    out = tmp_path / "m.engine"
    status = main(["--int8", "--calibration-dir", str(calib_dir), "--onnx", str(fp32_onnx), "--crops", str(holdout_dir),
                   "--num-crops", "0", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 2, captured.err
    qdq = tmp_path / "m.int8.onnx"
    assert f"the int8 ONNX is ready at {qdq}" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "INT8 accuracy gate: PASSED" in captured.out and "int8 Q/DQ vs fp32" in captured.out
    gate = json.loads(gate_path_for(qdq).read_text())
    assert gate["passed"] is True and gate["holdout"] == str(holdout_dir) and gate["num_queries"] > 0


def test_the_gate_goes_into_the_sidecar(fp32_onnx, calib_dir, holdout_dir, tmp_path):
    from dslnet_edge.backends.tensorrt_backend import read_engine_sidecar

    config = EngineBuildConfig(precision="int8", calibration_dir=calib_dir, onnx=fp32_onnx, crops_dir=holdout_dir,
                               num_crops=0, out=tmp_path / "m.engine", profile=Profile(1, 2, 4))
    prepared = prepare_onnx(config, NO_TRT)
    assert prepared.precision == "int8" and prepared.int8_gate["passed"] is True
    assert prepared.engine_onnx == tmp_path / "m.int8.onnx" and prepared.reference_onnx == fp32_onnx
    facts = {"tensorrt_version": "10.3.0", "strongly_typed": True, "builder_flags": [], "workspace_bytes": None}
    data = sidecar_dict(config, prepared, prepared.engine_onnx, GpuInfo("NVIDIA Orin", "8.7"), facts, {"verified": False})
    assert data["int8_gate"] == prepared.int8_gate and data["precision"] == "int8"
    artefact_paths(config.out)["sidecar"].write_text(json.dumps(data))
    assert read_engine_sidecar(config.out).input_spec.precision == "int8"  # the runtime still reads it


def test_qdq_onnx_brings_its_gate_when_it_judged_that_file(fp32_onnx, quantized, holdout_dir, tmp_path):
    qdq = tmp_path / "user.int8.onnx"
    shutil.copy(quantized.path, qdq)
    config = EngineBuildConfig(precision="int8", qdq_onnx=qdq, onnx=fp32_onnx, num_crops=0, out=tmp_path / "m.engine")
    assert prepare_onnx(config, NO_TRT).int8_gate is None  # e.g. a ModelOpt ONNX: no gate
    run_gate(fp32_onnx, qdq, holdout_dir).save(gate_path_for(qdq))
    assert prepare_onnx(config, NO_TRT).int8_gate["passed"] is True


def test_qdq_onnx_with_a_failed_gate_is_refused(fp32_onnx, quantized, holdout_dir, tmp_path, capsys):
    qdq = tmp_path / "user.int8.onnx"
    shutil.copy(quantized.path, qdq)
    strict = GateThresholds(min_mean_cosine=1.0, min_cosine=None)
    run_gate(fp32_onnx, qdq, holdout_dir, thresholds=strict).save(gate_path_for(qdq))
    status = main(["--int8", "--qdq-onnx", str(qdq), "--onnx", str(fp32_onnx), "--num-crops", "0",
                   "--out", str(tmp_path / "m.engine")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1
    assert "failed its INT8 accuracy gate" in err[0] and "mean cosine" in err[0]
