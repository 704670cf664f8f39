"""export.deepstream: the nvinfer config parsed back and every value compared with the sidecar and InputSpec."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from dslnet_edge.spec import InputSpec
from export.deepstream import DeepStreamConfig, DeepStreamError, main, read_nvinfer_config, write_deepstream


def _engine(tmp_path: Path, spec: InputSpec, *, precision="fp16", plugin=(False, None), profile=(1, 4, 16)) -> Path:
    """A stand-in engine file with a sidecar from export.build_engine's own writer (no TensorRT needed)."""
    from testutils import tiny_embedding_onnx

    from export.build_engine import EngineBuildConfig, PluginChoice, PreparedOnnx, artefact_paths, sidecar_dict
    from export.tensorrt_build import GpuInfo, Profile

    onnx_path = tiny_embedding_onnx(tmp_path / "tiny.onnx", spec)
    out = tmp_path / "engines" / "model.engine"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(b"stand-in plan")
    config = EngineBuildConfig(onnx=onnx_path, precision=precision, out=out, profile=Profile(*profile),
                               qdq_onnx=onnx_path if precision == "int8" else None)
    prepared = PreparedOnnx(onnx_path, onnx_path, onnx_path, precision, spec.replace(precision=precision),
                            PluginChoice(plugin[0], plugin[1], "test"), {"plain": str(onnx_path)}, {})
    facts = {"tensorrt_version": "10.9.0", "strongly_typed": True, "builder_flags": [], "workspace_bytes": None}
    data = sidecar_dict(config, prepared, onnx_path, GpuInfo("NVIDIA Orin", "8.7"), facts, {"verified": False})
    artefact_paths(out)["sidecar"].write_text(json.dumps(data))
    return out


@pytest.mark.parametrize("spec, precision, mode, color, scale, offsets, scaling", [
    (InputSpec(height=256, width=128, feature_dim=512), "fp16", "2", "0", 1.0, (0.0, 0.0, 0.0), "1"),
    (InputSpec(height=64, width=32, feature_dim=128, channel_order="BGR", interpolation="area"), "int8", "1", "1",
     1.0, (0.0, 0.0, 0.0), "3"),
    (InputSpec(height=32, width=16, feature_dim=64, pixel_range=(-127.5, 127.5), interpolation="nearest"), "fp32", "0",
     "0", 1.0, (127.5, 127.5, 127.5), "0"),
    (InputSpec(height=32, width=16, feature_dim=64, normalization_in_model=False, mean=(0.5, 0.4, 0.3),
               std=(0.25, 0.25, 0.25), interpolation="cubic"), "fp32", "0", "0", 1 / (255 * 0.25), (127.5, 102.0, 76.5), "2"),
])
def test_config_values_come_from_the_sidecar_and_spec(tmp_path, spec, precision, mode, color, scale, offsets, scaling):
    from dslnet_edge.backends.tensorrt_backend import read_engine_sidecar

    engine = _engine(tmp_path, spec, precision=precision, profile=(1, 4, 16))
    sidecar = read_engine_sidecar(engine)
    paths = write_deepstream(DeepStreamConfig(engine=engine, out=tmp_path / "ds", gie_id=3, primary_gie_id=1, person_class_id=2))
    props = read_nvinfer_config(paths["config"])
    assert props["process-mode"] == "2" and props["network-type"] == "100" and props["output-tensor-meta"] == "1"
    assert int(props["batch-size"]) == sidecar.max_batch == 16
    assert props["infer-dims"] == f"3;{sidecar.input_spec.height};{sidecar.input_spec.width}"
    assert props["network-mode"] == mode and props["model-color-format"] == color
    assert float(props["net-scale-factor"]) == pytest.approx(scale)
    np.testing.assert_allclose([float(v) for v in props["offsets"].split(";")], offsets)
    assert props["scaling-filter"] == scaling and props["maintain-aspect-ratio"] == "0"
    assert props["output-blob-names"] == "embeddings"
    assert (props["gie-unique-id"], props["operate-on-gie-id"], props["operate-on-class-ids"]) == ("3", "1", "2")
    # the engine path is relative to the config's folder and names the engine
    assert (paths["config"].parent / props["model-engine-file"]).resolve() == engine.resolve()
    # the scale and offsets give the pixels the runtime would: y = s * (x - o) over 0..255
    x = np.array([0.0, 128.0, 255.0])
    low, high = spec.pixel_range
    for c in range(3):
        y = float(props["net-scale-factor"]) * (x - offsets[c])
        want = low + x * (high - low) / 255 if spec.normalization_in_model else (x / 255 - spec.mean[c]) / spec.std[c]
        np.testing.assert_allclose(y, want, atol=1e-9)
    assert (paths["probe"]).read_text().startswith('"""DeepStream pad probe')


def test_refusals(tmp_path, capsys):
    spec = InputSpec(height=32, width=16, feature_dim=64)
    (tmp_path / "a").mkdir()
    jit = _engine(tmp_path / "a", spec, plugin=(True, "jit"))
    with pytest.raises(DeepStreamError, match="JIT CSS plugin"):
        write_deepstream(DeepStreamConfig(engine=jit, out=tmp_path / "ds"))
    (tmp_path / "b").mkdir()
    engine = _engine(tmp_path / "b", spec, profile=(1, 2, 4))
    with pytest.raises(DeepStreamError, match="exceeds the engine profile's max batch 4"):
        write_deepstream(DeepStreamConfig(engine=engine, out=tmp_path / "ds", batch_size=8))
    uneven = spec.replace(normalization_in_model=False, std=(0.2, 0.3, 0.4))
    (tmp_path / "c").mkdir()
    with pytest.raises(DeepStreamError, match="one net-scale-factor"):
        write_deepstream(DeepStreamConfig(engine=_engine(tmp_path / "c", uneven), out=tmp_path / "ds"))
    # the CLI: one line, and nothing a user wrote is replaced without --overwrite
    assert main(["--no-such-flag"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "usage:" not in err
    assert main(["--engine", str(engine), "--out", str(tmp_path / "ds")]) == 0
    capsys.readouterr()
    assert main(["--engine", str(engine), "--out", str(tmp_path / "ds")]) == 1
    err = capsys.readouterr().err
    assert "exists; pass --overwrite" in err and err.count("\n") == 1
    assert main(["--engine", str(engine), "--out", str(tmp_path / "ds"), "--overwrite"]) == 0
    assert main(["--engine", str(tmp_path / "nope.engine"), "--out", str(tmp_path / "ds")]) == 1
    assert "does not exist" in capsys.readouterr().err
    os.remove(str(engine) + ".json")
    assert main(["--engine", str(engine), "--out", str(tmp_path / "ds"), "--overwrite"]) == 1
    assert "sidecar" in capsys.readouterr().err


def test_probe_matcher_takes_nvinfer_embeddings(rng):
    """The probe's pure part: nvinfer embeddings (not normalized) through PrecomputedEmbeddings into a Matcher."""
    import dslnet_edge
    from export.deepstream_probe import PrecomputedEmbeddings

    people = rng.standard_normal((3, 64)).astype(np.float32)
    matcher = dslnet_edge.Matcher(PrecomputedEmbeddings(64))
    first = matcher.match(list(people * 5.0), camera="a", track_ids=[1, 2, 3], timestamp=1.0)
    again = matcher.match(list(people[::-1] + 0.01), camera="b", track_ids=[7, 8, 9], timestamp=2.0)
    assert all(m.is_new for m in first)
    assert [m.identity for m in again] == [m.identity for m in first][::-1]
    with pytest.raises(ValueError, match="NaN/inf or all-zero"):
        PrecomputedEmbeddings(64).embed([np.zeros(64, np.float32)])
