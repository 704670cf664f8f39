"""``python -m export.build_engine``: configuration, the CSS plugin decision, checked intermediates, and
every error path as one clear line. Without TensorRT the command must stop with status 2 after the ONNX."""

from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest

from export.build_engine import (
    EngineBuildConfig,
    artefact_paths,
    decide_css_plugin,
    main,
)
from export.onnx import random_images, spec_from_onnx
from export.plugin.trt_plugin import PluginSupport, plugin_support
from export.precision import precision_of
from export.tensorrt_build import Profile

HAVE_TENSORRT = plugin_support().tensorrt is not None
no_tensorrt = pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed: the build goes on past the ONNX")

TRT_103 = PluginSupport("10.3.0", False, False, "TensorRT 10.3.0 has no tensorrt.plugin (needs >= 10.6)")
TRT_108 = PluginSupport("10.8.0", True, False, "TensorRT 10.8.0 has no ahead-of-time Python plugins (needs >= 10.9)")
TRT_110 = PluginSupport("11.0.0", True, True)
NO_TRT = PluginSupport(None, False, False, "TensorRT is not installed")


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(checkpoint="a.pt", onnx="a.onnx"), "not both"),
        (dict(precision="int8"), "--int8 needs calibration data"),
        (dict(qdq_onnx="q.onnx"), "only apply with --int8"),
        (dict(out="model.onnx"), "--out must end in"),
        (dict(css_plugin="maybe"), "--css-plugin must be one of"),
        (dict(workspace_mib=0), "--workspace must be a positive"),
        (dict(precision="bf16"), "precision must be one of"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EngineBuildConfig(**kwargs)


@pytest.mark.parametrize("batches", [(0, 1, 1), (4, 2, 8), (1, 8, 4), (1.5, 2, 3)])
def test_profile_errors(batches):
    with pytest.raises(ValueError, match="batch"):
        Profile(*batches)


def test_defaults_and_paths(tmp_path):
    config = EngineBuildConfig(out=tmp_path / "m.engine")
    assert config.checkpoint is not None and config.checkpoint.name == "dslnet_cuhk03.pt"
    paths = artefact_paths(tmp_path / "m.engine")
    assert {k: p.name for k, p in paths.items()} == {
        "plain": "m.onnx", "plugin": "m.plugin.onnx", "fp16": "m.fp16.onnx",
        "plugin_fp16": "m.plugin.fp16.onnx", "sidecar": "m.engine.json",
    }


# ---------------------------------------------------------------------------------------------
# the CSS plugin decision (TensorRT 10.3 on Jetson, 10.6-10.8 JIT only, >= 10.9 AOT, none)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mode, support, kwargs, used, implementation, reason",
    [
        ("auto", TRT_110, {}, True, "aot", "ahead-of-time"),
        ("on", TRT_110, {}, True, "aot", "ahead-of-time"),
        ("off", TRT_110, {}, False, None, "off"),
        ("auto", TRT_103, {}, False, None, "no tensorrt.plugin"),
        ("on", TRT_103, {}, ValueError, None, "no tensorrt.plugin"),
        ("auto", TRT_108, {}, False, None, "tie the engine to Python"),
        ("on", TRT_108, {}, True, "jit", "needs Python"),
        ("auto", NO_TRT, {}, False, None, "plain ONNX is the portable one"),
        ("on", NO_TRT, {}, True, "aot", "not installed here"),
        ("auto", TRT_110, {"have_model": False}, False, None, "pass --checkpoint"),
        ("on", TRT_110, {"have_model": False}, ValueError, None, "pass --checkpoint"),
        ("auto", TRT_110, {"has_css": False}, False, None, "no CSS modules"),
        ("on", TRT_110, {"precision": "int8"}, ValueError, None, "not used with --int8"),
    ],
)
def test_css_plugin_decision(mode, support, kwargs, used, implementation, reason):
    args = {"have_model": True, "has_css": True, "precision": "fp16", **kwargs}
    if used is ValueError:
        with pytest.raises(ValueError, match=reason):
            decide_css_plugin(mode, support, **args)
        return
    choice = decide_css_plugin(mode, support, **args)
    assert (choice.used, choice.implementation) == (used, implementation)
    assert reason in choice.reason


# ---------------------------------------------------------------------------------------------
# the command without TensorRT: everything up to the engine, then status 2 and one line
# ---------------------------------------------------------------------------------------------
@no_tensorrt
def test_fp16_stops_after_the_checked_onnx(checkpoint, tmp_path, capsys):
    out = tmp_path / "e" / "m.engine"
    status = main(["--checkpoint", str(checkpoint), "--fp16", "--num-crops", "0", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 2
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("error: TensorRT is not installed") and str(out.with_name("m.fp16.onnx")) in line
    assert "trtexec --onnx=" in line and "--stronglyTyped" in line and "images:32x3x32x16" in line
    assert "fp16 vs fp32 (onnxruntime)" in captured.out and "PASSED" in captured.out
    fp16 = onnx.load(out.with_name("m.fp16.onnx"))
    assert precision_of(fp16) == "fp16" and spec_from_onnx(fp16).precision == "fp16"
    assert out.with_name("m.onnx").is_file() and not out.exists() and not artefact_paths(out)["sidecar"].exists()


@no_tensorrt
def test_plugin_on_builds_and_checks_the_plugin_flavour(checkpoint, tmp_path, capsys):
    out = tmp_path / "m.engine"
    status = main(["--checkpoint", str(checkpoint), "--css-plugin", "on", "--num-crops", "0", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 2 and "m.plugin.onnx" in _lines(captured.err)[0]
    assert "plugin vs plain (onnxruntime)" in captured.out and "FAILED" not in captured.out
    plugin = onnx.load(out.with_name("m.plugin.onnx"))
    assert sum(n.op_type == "DSLNet_CSS" for n in plugin.graph.node) == 6


@no_tensorrt
def test_onnx_input(onnx_path, tmp_path, capsys):
    status = main(["--onnx", str(onnx_path), "--num-crops", "0", "--out", str(tmp_path / "m.engine")])
    assert status == 2
    assert str(onnx_path) in _one_line(capsys)  # the plain FP32 ONNX given is the one to compile


@no_tensorrt
def test_int8_from_a_qdq_onnx(onnx_path, tmp_path, capsys):
    qdq = _quantize(onnx_path, tmp_path / "q.onnx")
    status = main(["--int8", "--qdq-onnx", str(qdq), "--onnx", str(onnx_path), "--num-crops", "0",
                   "--out", str(tmp_path / "m.engine")])
    captured = capsys.readouterr()
    assert status == 2 and "the int8 ONNX is ready at" in _lines(captured.err)[0]
    assert "int8 Q/DQ vs fp32" in captured.out


def _lines(text: str) -> list[str]:
    lines = text.strip().splitlines()
    assert len(lines) == 1, lines
    return lines


def _quantize(onnx_path, out):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    spec = spec_from_onnx(onnx_path)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"images": random_images(spec, 2, seed=i)} for i in range(3)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(onnx_path), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


# ---------------------------------------------------------------------------------------------
# error paths: one clear line each
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, status, message",
    [
        (["--checkpoint", "{tmp}/missing.pt"], 1, "does not exist"),
        (["--onnx", "{tmp}/corrupt.onnx"], 1, "not a readable ONNX model"),
        (["--onnx", "{tmp}/missing.onnx"], 1, "does not exist"),
        (["--onnx", "{onnx}", "--css-plugin", "on"], 1, "pass --checkpoint instead of --onnx"),
        (["--int8", "--checkpoint", "{ckpt}"], 1, "--int8 needs calibration data"),
        (["--int8", "--qdq-onnx", "{onnx}"], 1, "not a Q/DQ (INT8) ONNX"),
        (["--fp16", "--int8"], 2, "not allowed with argument"),
        (["--min-batch", "8", "--max-batch", "4"], 1, "min <= opt <= max"),
        (["--out", "{tmp}/m.onnx"], 1, "--out must end in"),
        (["--unknown-flag"], 2, "unrecognized arguments: --unknown-flag"),
        (["--css-plugin", "maybe"], 2, "invalid choice"),
    ],
)
def test_errors_are_one_line(argv, status, message, checkpoint, onnx_path, tmp_path, capsys):
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07garbage")
    argv = [a.format(tmp=tmp_path, onnx=onnx_path, ckpt=checkpoint) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "m.engine")]
    assert main(argv) == status
    assert message in _one_line(capsys)
    assert not (tmp_path / "m.engine").exists()


def test_onnx_with_plugin_nodes_is_refused(plugin_proto, tmp_path, capsys):
    path = tmp_path / "p.onnx"
    onnx.save(plugin_proto, path)
    assert main(["--onnx", str(path), "--out", str(tmp_path / "m.engine")]) == 1
    assert "already holds CSS plugin nodes" in _one_line(capsys)


@no_tensorrt
def test_no_tensorrt_through_python_m(onnx_path, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "export.build_engine", "--onnx", str(onnx_path), "--num-crops", "0",
         "--out", str(tmp_path / "m.engine")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------
# with TensorRT (skipped here; run for real the first time TensorRT and a GPU are available)
# ---------------------------------------------------------------------------------------------
@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("extra", [[], ["--fp16"], ["--fp16", "--css-plugin", "on"]], ids=["fp32", "fp16", "fp16-plugin"])
def test_engine_build(checkpoint, tmp_path, capsys, extra):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (it cannot be on these machines)")
    from export.tensorrt_build import gpu_info

    if gpu_info() is None:
        pytest.skip("no CUDA GPU")
    if "--css-plugin" in extra and not plugin_support().jit:
        pytest.skip(f"no Python plugins: {plugin_support().reason}")
    out = tmp_path / "m.engine"
    cache = tmp_path / "timing.cache"
    argv = ["--checkpoint", str(checkpoint), *extra, "--max-batch", "4", "--opt-batch", "2",
            "--timing-cache", str(cache), "--num-crops", "0", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    sidecar = json.loads(artefact_paths(out)["sidecar"].read_text())
    assert sidecar["input_spec"]["height"] == 32 and sidecar["profile"]["max"][0] == 4
    assert sidecar["precision"] == ("fp16" if "--fp16" in extra else "fp32")
    assert len(sidecar["onnx"]["sha256"]) == 64 and sidecar["gpu"]["compute_capability"]
    assert sidecar["css_plugin"]["used"] is ("--css-plugin" in extra)
    assert out.stat().st_size > 0 and cache.stat().st_size > 0


@pytest.mark.tensorrt
def test_parser_errors_fail_the_build(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (it cannot be on these machines)")
    from export.tensorrt_build import BuildError, build_engine_bytes, gpu_info

    if gpu_info() is None:
        pytest.skip("no CUDA GPU")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 32, 16])
    y = helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, None)
    node = helper.make_node("NoSuchOperator", ["images"], ["embeddings"], name="bad")
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]), path)
    from dslnet_edge.spec import InputSpec

    with pytest.raises(BuildError, match="could not parse"):
        build_engine_bytes(path, spec=InputSpec(height=32, width=16), profile=Profile(1, 1, 1), precision="fp32")


# ---------------------------------------------------------------------------------------------
# the TensorRT step on a stand-in GPU (tests/fake_gpu.py: the "engine" runs the ONNX in ONNX Runtime)
# ---------------------------------------------------------------------------------------------
def _fake_builder(monkeypatch, **engine_options):
    """TensorRT's compile replaced by one that 'builds' the fake engine of the ONNX it is given."""
    from fake_gpu import fake_engine_bytes

    import export.tensorrt_build as tensorrt_build

    def build_engine_bytes(onnx_path, *, spec, profile, precision, **kwargs):
        data = fake_engine_bytes(open(onnx_path, "rb").read(), min_batch=profile.min_batch,
                                 opt_batch=profile.opt_batch, max_batch=profile.max_batch,
                                 fail_context=engine_options.get("fail_context", False))
        if engine_options.get("corrupt"):
            data = b"\x00" * 64
        facts = {"tensorrt_version": "10.16.1.11", "strongly_typed": True, "builder_flags": [],
                 "workspace_bytes": None, "timing_cache": None}
        return data, facts

    monkeypatch.setattr(tensorrt_build, "build_engine_bytes", build_engine_bytes)


@pytest.mark.parametrize("batches", [("5", "6", "8"), ("1", "1", "3")], ids=["min-above-parity-batch", "max-below-it"])
def test_a_built_engine_is_verified_through_the_runtime_backend(onnx_path, tmp_path, monkeypatch, capsys, batches):
    """Parity runs 4 random inputs: profile min 5 needs padding, max 3 needs splitting -- the backend's job."""
    from fake_gpu import fake_gpu

    from dslnet_edge.backends.tensorrt_backend import read_engine_sidecar

    out = tmp_path / "m.engine"
    _fake_builder(monkeypatch)
    with fake_gpu(monkeypatch):
        argv = ["--onnx", str(onnx_path), "--min-batch", batches[0], "--opt-batch", batches[1], "--max-batch", batches[2],
                "--num-crops", "0", "--out", str(out)]
        assert main(argv) == 0, capsys.readouterr().err
    verification = json.loads(artefact_paths(out)["sidecar"].read_text())["verification"]
    assert verification["verified"] is True and verification["passed"] is True, verification
    sidecar = read_engine_sidecar(out)
    assert (sidecar.min_batch, sidecar.max_batch) == (int(batches[0]), int(batches[2]))
    assert "tensorrt fp32 vs onnxruntime fp32" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json"]  # no verification leftovers


@pytest.mark.parametrize("failure", [{"corrupt": True}, {"fail_context": True}], ids=["not-deserializable", "no-context"])
def test_an_engine_that_does_not_load_fails_the_build_and_writes_nothing(onnx_path, tmp_path, monkeypatch, capsys, failure):
    from fake_gpu import fake_gpu

    out = tmp_path / "m.engine"
    _fake_builder(monkeypatch, **failure)
    with fake_gpu(monkeypatch):
        status = main(["--onnx", str(onnx_path), "--max-batch", "4", "--opt-batch", "2", "--num-crops", "0", "--out", str(out)])
    err = _one_line(capsys)
    assert status == 1 and "does not load through dslnet_edge's TensorRT backend" in err and "nothing written" in err
    assert list(tmp_path.iterdir()) == []


def test_sidecar_is_what_the_runtime_reads(onnx_path, tmp_path):
    """The sidecar build_engine writes, read back by dslnet_edge's TensorRT backend (no TensorRT needed)."""
    from dslnet_edge.backends.tensorrt_backend import read_engine_sidecar
    from export.build_engine import PluginChoice, PreparedOnnx, make_sidecar, sidecar_dict
    from export.tensorrt_build import GpuInfo

    spec = spec_from_onnx(onnx_path).replace(precision="fp16")
    config = EngineBuildConfig(onnx=onnx_path, precision="fp16", out=tmp_path / "m.engine", profile=Profile(1, 2, 4))
    for plugin in (PluginChoice(False, None, "off"), PluginChoice(True, "jit", "JIT"), PluginChoice(True, "aot", "AOT")):
        prepared = PreparedOnnx(onnx_path, onnx_path, onnx_path, "fp16", spec, plugin, {"plain": str(onnx_path)}, {})
        facts = {"tensorrt_version": "10.9.0", "strongly_typed": True, "builder_flags": [], "workspace_bytes": None}
        data = sidecar_dict(config, prepared, onnx_path, GpuInfo("NVIDIA Orin", "8.7"), facts, {"verified": False})
        artefact_paths(config.out)["sidecar"].write_text(json.dumps(data))
        read = read_engine_sidecar(config.out)
        assert read.input_spec == spec and read.compute_capability == (8, 7) and read.max_batch == 4
        assert read == make_sidecar(config, prepared, onnx_path, GpuInfo("NVIDIA Orin", "8.7"), facts,
                                    {"verified": False}).__class__.from_dict(data, source="x")
        if not plugin.used:
            assert not read.plugin.used and read.plugin.reason == "off"
        else:
            assert read.plugin.name == "DSLNet_CSS" and read.plugin.namespace == "dslnet_edge"
            assert read.plugin.embedded is (plugin.implementation == "aot")
            assert read.plugin.register == "export.plugin.trt_plugin:register_css_plugin"
