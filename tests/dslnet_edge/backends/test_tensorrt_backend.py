"""TensorRT backend: the sidecar contract and compatibility checks (pure Python, always run), and
the real engine path (runs only where TensorRT and a GPU exist; skipped with the reason elsewhere).

No TensorRT object is faked here: without TensorRT only the code that runs before TensorRT is
imported is tested.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from dslnet_edge.backends import ArtifactError, ArtifactNotFoundError, BackendError
from dslnet_edge.backends.tensorrt_backend import (
    EngineCompatibilityError,
    EngineSidecar,
    PluginInfo,
    TensorRTBackend,
    check_compatibility,
    read_engine_sidecar,
    sidecar_path,
    tensorrt_available,
)
from dslnet_edge.spec import InputSpec

SPEC = InputSpec(height=16, width=8, feature_dim=32, precision="fp16")


def _sidecar(**changes) -> dict:
    data = {
        "input_spec": SPEC.to_dict(),
        "tensorrt_version": "10.3.0",
        "gpu": {"name": "Orin", "compute_capability": "8.7"},
        "precision": "fp16",
        "profile": {"min_batch": 1, "opt_batch": 8, "max_batch": 32},
        "plugin": None,
        "onnx_sha256": "0" * 64,
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def _write(tmp_path, data, name="model.engine"):
    engine = tmp_path / name
    engine.write_bytes(b"\x00" * 64)  # never deserialized by these tests
    sidecar_path(engine).write_text(json.dumps(data) if not isinstance(data, str) else data)
    return engine


# -- the sidecar --------------------------------------------------------------------------------
def test_sidecar_path_sits_beside_the_engine(tmp_path):
    assert sidecar_path(tmp_path / "model.engine") == tmp_path / "model.engine.json"
    assert sidecar_path(tmp_path / "x.plan") == tmp_path / "x.plan.json"


def test_sidecar_round_trip(tmp_path):
    sidecar = read_engine_sidecar(_write(tmp_path, _sidecar()))
    assert sidecar.input_spec == SPEC
    assert sidecar.tensorrt_version == "10.3.0"
    assert (sidecar.gpu_name, sidecar.compute_capability) == ("Orin", (8, 7))
    assert sidecar.max_batch == 32 and sidecar.plugin is None and sidecar.precision == "fp16"


def test_plugin_entry_forms(tmp_path):
    plugin = {"name": "DSLNet_CSS", "version": "1", "namespace": "dslnet_edge", "module": "some.module"}
    sidecar = read_engine_sidecar(_write(tmp_path, _sidecar(plugin=plugin)))
    assert sidecar.plugin == PluginInfo(name="DSLNet_CSS", version="1", namespace="dslnet_edge", module="some.module")
    assert read_engine_sidecar(_write(tmp_path, _sidecar(plugin="pkg.css_plugin"))).plugin.module == "pkg.css_plugin"
    assert read_engine_sidecar(_write(tmp_path, _sidecar(plugin={"name": "X", "embedded": True}))).plugin.embedded


def test_export_build_engine_sidecar_layout(tmp_path):
    """The layout python -m export.build_engine writes (css_plugin entry, profile as shapes)."""
    data = _sidecar(
        format="dslnet_edge.engine",
        format_version=1,
        profile={"input": "images", "min": [1, 3, 16, 8], "opt": [8, 3, 16, 8], "max": [16, 3, 16, 8]},
        plugin=...,
        css_plugin={"used": False, "implementation": None, "reason": "TensorRT 10.3 has no Python plugins"},
    )
    sidecar = read_engine_sidecar(_write(tmp_path, data))
    assert sidecar.max_batch == 16 and sidecar.plugin is None
    aot = {"used": True, "implementation": "aot", "reason": "", "name": "DSLNet_CSS", "namespace": "dslnet_edge", "version": "1"}
    plugin = read_engine_sidecar(_write(tmp_path, {**data, "css_plugin": aot})).plugin
    assert plugin == PluginInfo(name="DSLNet_CSS", version="1", namespace="dslnet_edge", embedded=True)
    jit = {**aot, "implementation": "jit", "register": "export.plugin.trt_plugin:register_css_plugin"}
    plugin = read_engine_sidecar(_write(tmp_path, {**data, "css_plugin": jit})).plugin
    assert not plugin.embedded and plugin.register == "export.plugin.trt_plugin:register_css_plugin"


def test_flat_gpu_keys_are_accepted(tmp_path):
    sidecar = read_engine_sidecar(_write(tmp_path, _sidecar(gpu=..., gpu_name="NVIDIA H100", compute_capability=[9, 0])))
    assert (sidecar.gpu_name, sidecar.compute_capability) == ("NVIDIA H100", (9, 0))


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"input_spec": ...}, "lacks the 'input_spec' entry"),
        ({"input_spec": {"height": 0}}, "invalid input_spec"),
        ({"tensorrt_version": ...}, "lacks a valid 'tensorrt_version'"),
        ({"tensorrt_version": "ten"}, "lacks a valid 'tensorrt_version'"),
        ({"gpu": ...}, "lacks the GPU it was built for"),
        ({"gpu": {"name": "Orin", "compute_capability": "eight"}}, "lacks the GPU it was built for"),
        ({"plugin": {"version": "2"}}, "names no plugin and nothing to load"),
        ({"plugin": {"name": "X", "register": "no_colon"}}, "'register' must be 'module:function'"),
        ({"format": "someone.else"}, "is not a dslnet_edge engine sidecar"),
        ({"format_version": 2}, "format_version 2; this dslnet_edge reads up to 1"),
        ({"plugin": 3}, "'plugin' must be null or an object"),
        ({"profile": {"max_batch": 0}}, "max_batch must be a positive integer"),
        ({"hardware_compatibility": "any_gpu"}, "unknown hardware_compatibility"),
    ],
)
def test_invalid_sidecars_name_file_and_key(tmp_path, changes, error):
    engine = _write(tmp_path, _sidecar(**changes))
    with pytest.raises(ArtifactError, match=error) as info:
        read_engine_sidecar(engine)
    assert "model.engine.json" in str(info.value)


def test_missing_and_corrupt_sidecars(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    with pytest.raises(ArtifactNotFoundError, match=r"model\.engine\.json does not exist.*export\.build_engine"):
        read_engine_sidecar(engine)
    _write(tmp_path, '{"input_spec": {"height": 16,')
    with pytest.raises(ArtifactError, match="is not valid JSON"):
        read_engine_sidecar(engine)
    _write(tmp_path, "[1, 2]")
    with pytest.raises(ArtifactError, match="must hold a JSON object"):
        read_engine_sidecar(engine)


# -- compatibility ------------------------------------------------------------------------------
def _check(sidecar_changes=None, **here):
    sidecar = EngineSidecar.from_dict(_sidecar(**(sidecar_changes or {})), source="model.engine.json")
    here = {"tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": (8, 7), **here}
    check_compatibility(sidecar, source="model.engine", **here)


@pytest.mark.parametrize(
    ("sidecar_changes", "here", "error"),
    [
        ({}, {}, None),
        ({}, {"tensorrt_version": "10.3.0.26"}, None),  # build number ignored
        ({}, {"tensorrt_version": "10.8.0"}, r"built with TensorRT 10\.3\.0 but this machine has TensorRT 10\.8\.0"),
        ({}, {"tensorrt_version": "11.0.0"}, "only run under the TensorRT version that built them"),
        ({"version_compatible": True}, {"tensorrt_version": "10.8.0"}, None),
        ({"version_compatible": True}, {"tensorrt_version": "10.2.0"}, "only runs on TensorRT 10.x >= 10.3.0"),
        ({"version_compatible": True}, {"tensorrt_version": "11.0.0"}, "only runs on TensorRT 10.x"),
        ({}, {"gpu_name": "NVIDIA H100", "compute_capability": (9, 0)}, r"built for Orin \(compute capability 8\.7\) but this GPU is NVIDIA H100 \(compute capability 9\.0\)"),
        ({"hardware_compatibility": "ampere_plus"}, {"gpu_name": "NVIDIA H100", "compute_capability": (9, 0)}, None),
        ({"hardware_compatibility": "ampere_plus"}, {"gpu_name": "Tesla T4", "compute_capability": (7, 5)}, "Ampere and newer"),
    ],
)
def test_compatibility_table(sidecar_changes, here, error):
    if error is None:
        _check(sidecar_changes, **here)
    else:
        with pytest.raises(EngineCompatibilityError, match=error) as info:
            _check(sidecar_changes, **here)
        assert "rebuild it here" in str(info.value)


def test_same_compute_capability_other_gpu_name_only_warns():
    with pytest.warns(RuntimeWarning, match="same compute capability"):
        _check({}, gpu_name="Jetson AGX Orin 64GB")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check({}, gpu_name="NVIDIA Orin")  # vendor prefix and case do not count


# -- the backend before TensorRT is needed --------------------------------------------------------
def test_missing_or_empty_engine_is_named(tmp_path):
    with pytest.raises(ArtifactNotFoundError, match="TensorRT engine .*nope.engine does not exist"):
        TensorRTBackend(tmp_path / "nope.engine")
    (tmp_path / "empty.engine").write_bytes(b"")
    with pytest.raises(ArtifactError, match="empty.engine is empty"):
        TensorRTBackend(tmp_path / "empty.engine")


def test_engine_without_sidecar_is_refused_before_tensorrt_is_touched(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\x01" * 128)
    with pytest.raises(ArtifactNotFoundError, match="model.engine.json does not exist"):
        TensorRTBackend(engine)


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT is installed here; this checks the message given without it")
def test_without_tensorrt_the_error_says_what_to_install(tmp_path):
    engine = _write(tmp_path, _sidecar())
    with pytest.raises(BackendError, match="needs the tensorrt package.*Use the .onnx model with ONNX Runtime"):
        TensorRTBackend(engine)


def test_device_must_be_a_gpu(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed; device parsing happens after the import")
    with pytest.raises(ValueError, match="device must be 'cuda' or 'cuda:N'"):
        TensorRTBackend(_write(tmp_path, _sidecar()), device="cpu")


# -- real TensorRT (skipped where it is absent) -------------------------------------------------
def _build_tiny_engine(tmp_path):
    """Build a real engine from the tiny test ONNX with TensorRT's own builder (ONNX parser)."""
    import tensorrt as trt
    from testutils import tiny_embedding_onnx

    spec = SPEC.replace(precision="fp32")
    onnx_path = tiny_embedding_onnx(tmp_path / "tiny.onnx", spec)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Strongly typed: the only kind TensorRT 11 builds, and valid on TensorRT 10 too
    # (https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Builder.html).
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), [parser.get_error(i).desc() for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("images", (1, 3, 16, 8), (4, 3, 16, 8), (8, 3, 16, 8))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    assert serialized is not None
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(bytes(serialized))
    from cuda.bindings import runtime as cudart

    _, props = cudart.cudaGetDeviceProperties(0)
    sidecar_path(engine).write_text(
        json.dumps(
            {
                "input_spec": spec.to_dict(),
                "tensorrt_version": trt.__version__,
                "gpu": {"name": props.name.split(b"\0")[0].decode(), "compute_capability": f"{props.major}.{props.minor}"},
                "profile": {"min_batch": 1, "opt_batch": 4, "max_batch": 8},
                "plugin": None,
            }
        )
    )
    return engine, onnx_path


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_engine_matches_onnxruntime(tmp_path, rng):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here (NVIDIA's pip wheel or JetPack)")
    pytest.importorskip("cuda.bindings", reason="cuda-python is not installed")
    from dslnet_edge.comparison import Tolerances, compare
    from dslnet_edge.engine import Engine

    engine_path, onnx_path = _build_tiny_engine(tmp_path)
    with Engine(engine_path) as trt_engine, Engine(onnx_path) as ort_engine:
        assert trt_engine.max_batch == 8
        crops = [rng.integers(0, 256, (40, 20, 3), dtype=np.uint8) for _ in range(11)]  # 8 + 3: split
        result = compare(
            {"onnxruntime": ort_engine.embed, "tensorrt": trt_engine.embed},
            [np.stack(crops[:8]), np.stack(crops[8:])],
            tolerances=Tolerances(max_abs=1e-3, min_cosine=0.9999),
        )
        assert result.passed, result.format()
        # pinned buffers are reused: a second call with other crops gives other embeddings
        again = trt_engine.embed(crops[::-1])
        np.testing.assert_allclose(again[::-1], trt_engine.embed(crops), atol=1e-5)


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_corrupt_engine_is_a_clear_error(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here (NVIDIA's pip wheel or JetPack)")
    engine_path, _ = _build_tiny_engine(tmp_path)
    data = engine_path.read_bytes()
    engine_path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ArtifactError, match="could not deserialize"):
        TensorRTBackend(engine_path)
