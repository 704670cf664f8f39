"""TensorRT backend: the sidecar contract and compatibility checks (pure Python), the backend on a stand-in
GPU (``tests/fake_gpu.py``: a fake CUDA runtime and TensorRT whose "engine" runs a real ONNX model in ONNX
Runtime, and whose names are checked against TensorRT's real bindings by the contract tests), and the
real engine path (runs only where TensorRT and a GPU exist; skipped with the reason elsewhere).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import warnings

import numpy as np
import pytest

from dslnet_edge.backends import ArtifactError, ArtifactNotFoundError, BackendError
from dslnet_edge.backends.tensorrt_backend import (
    EngineCompatibilityError,
    EnginePlugin,
    EngineSidecar,
    TensorRTBackend,
    check_compatibility,
    read_engine_sidecar,
    sidecar_path,
    tensorrt_available,
)
from dslnet_edge.backends.tensorrt_sidecar import write_engine_sidecar
from dslnet_edge.spec import InputSpec

SPEC = InputSpec(height=16, width=8, feature_dim=32, precision="fp16")


def _sidecar_object(**changes) -> EngineSidecar:
    fields = dict(
        input_spec=SPEC, precision="fp16", tensorrt_version="10.3.0", gpu_name="Orin", compute_capability=(8, 7),
        profile_input="images", min_shape=(1, 3, 16, 8), opt_shape=(8, 3, 16, 8), max_shape=(32, 3, 16, 8),
    )
    fields.update(changes)
    return EngineSidecar(**fields)


def _sidecar(**changes) -> dict:
    """The JSON export.build_engine writes, with top-level keys changed (``...`` removes one)."""
    data = _sidecar_object().to_dict()
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
    jit = EnginePlugin(used=True, implementation="jit", reason="r", name="DSLNet_CSS", namespace="dslnet_edge",
                       register="export.plugin.trt_plugin:register_css_plugin")
    for sidecar in (_sidecar_object(), _sidecar_object(plugin=jit, int8_gate={"passed": True}, workspace_bytes=1 << 30,
                                                       hardware_compatibility="ampere_plus", onnx_sha256="0" * 64)):
        engine = tmp_path / "model.engine"
        write_engine_sidecar(engine, sidecar)
        read = read_engine_sidecar(engine)
        assert read == sidecar and read.to_dict() == sidecar.to_dict()
    assert read.max_batch == 32 and read.min_batch == 1 and read.plugin.register and not read.plugin.embedded
    aot = dataclasses.replace(jit, implementation="aot")
    assert aot.embedded and not EnginePlugin().used


def test_the_reader_takes_only_what_the_writer_writes(tmp_path):
    """One schema: the flat GPU keys, 'trt_version', a 'plugin' entry or 'max_batch' are not read as aliases."""
    for extra in ({"trt_version": "10.3.0"}, {"gpu_name": "Orin"}, {"plugin": None}, {"max_batch": 4}):
        with pytest.raises(ArtifactError, match="unknown keys"):
            read_engine_sidecar(_write(tmp_path, _sidecar(**extra)))
    with pytest.raises(ArtifactError, match="lacks the 'tensorrt_version' entry"):
        read_engine_sidecar(_write(tmp_path, _sidecar(tensorrt_version=...)))


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"input_spec": ...}, "lacks the 'input_spec' entry"),
        ({"input_spec": {"height": 0}}, "invalid input_spec"),
        ({"tensorrt_version": "ten"}, "tensorrt_version must be a version string"),
        ({"gpu": ...}, "lacks the 'gpu' entry"),
        ({"gpu": {"name": "Orin", "compute_capability": "eight"}}, "lacks the GPU it was built for"),
        ({"css_plugin": {"used": True, "implementation": "aot"}}, "a used plugin needs its name"),
        ({"css_plugin": {"used": True, "implementation": "jit", "name": "X", "register": "no_colon"}},
         "'register' must be 'module:function'"),
        ({"css_plugin": {"used": "yes"}}, "'used' must be true or false"),
        ({"css_plugin": 3}, "'css_plugin' must be Mapping"),
        ({"format": "someone.else"}, "is not a dslnet_edge engine sidecar"),
        ({"format": ...}, "is not a dslnet_edge engine sidecar"),
        ({"format_version": 2}, "format_version 2; this dslnet_edge reads 1 to 1"),
        ({"profile": {"input": "images", "min": [0, 3, 16, 8], "opt": [8, 3, 16, 8], "max": [32, 3, 16, 8]}},
         r"profile min must be \[N >= 1, 3, 16, 8\]"),
        ({"profile": {"input": "images", "min": [9, 3, 16, 8], "opt": [8, 3, 16, 8], "max": [32, 3, 16, 8]}},
         "min <= opt <= max"),
        ({"hardware_compatibility": "any_gpu"}, "unknown hardware_compatibility"),
        ({"precision": "int4"}, "precision must be one of"),
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
    sidecar = _sidecar_object(**(sidecar_changes or {}))
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


def test_device_must_be_a_gpu(tmp_path, monkeypatch):
    from fake_gpu import fake_gpu

    with fake_gpu(monkeypatch), pytest.raises(ValueError, match="device must be 'cuda' or 'cuda:N'"):
        TensorRTBackend(_write(tmp_path, _sidecar()), device="cpu")


# -- the backend on a stand-in GPU (tests/fake_gpu.py) ---------------------------------------------
def _fake_engine(tmp_path, *, min_batch=1, opt_batch=4, max_batch=8, fail_context=False, gpu=("NVIDIA H200", (9, 0))):
    from fake_gpu import fake_engine_bytes
    from testutils import tiny_embedding_onnx

    spec = SPEC.replace(precision="fp32")
    onnx_path = tiny_embedding_onnx(tmp_path / "tiny.onnx", spec)
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(fake_engine_bytes(onnx_path.read_bytes(), min_batch=min_batch, opt_batch=opt_batch,
                                         max_batch=max_batch, fail_context=fail_context))
    write_engine_sidecar(engine, _sidecar_object(
        input_spec=spec, precision="fp32", tensorrt_version="10.16.1.11", gpu_name=gpu[0], compute_capability=gpu[1],
        min_shape=(min_batch, 3, 16, 8), opt_shape=(opt_batch, 3, 16, 8), max_shape=(max_batch, 3, 16, 8)))
    return engine, onnx_path


def _ort(onnx_path, batch):
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"images": batch})[0]


def _batch(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 3, 16, 8)).astype(np.float32)


def test_fake_gpu_engine_matches_onnxruntime(tmp_path, monkeypatch):
    from fake_gpu import fake_gpu

    engine, onnx_path = _fake_engine(tmp_path)
    with fake_gpu(monkeypatch):
        backend = TensorRTBackend(engine)
        try:
            assert backend.max_batch == 8
            for n in (1, 3, 8):
                np.testing.assert_allclose(backend.infer(_batch(n, n)), _ort(onnx_path, _batch(n, n)), atol=1e-5)
            with pytest.raises(ValueError, match="exceeds the model's max batch 8"):
                backend.infer(_batch(9))
        finally:
            backend.close()


def test_batches_below_the_profile_min_are_padded(tmp_path, monkeypatch):
    """A batch of 2 on a profile of min 4: TensorRT refuses the shape, so the backend pads and drops the rows."""
    from fake_gpu import fake_gpu

    engine, onnx_path = _fake_engine(tmp_path, min_batch=4, opt_batch=4, max_batch=6)
    with fake_gpu(monkeypatch):
        backend = TensorRTBackend(engine)
        try:
            out = backend.infer(_batch(2))
            np.testing.assert_allclose(out, _ort(onnx_path, _batch(2)), atol=1e-5)
            assert out.shape == (2, 32)
        finally:
            backend.close()


def test_the_device_is_made_current_on_every_calling_thread(tmp_path, monkeypatch):
    """device='cuda:1', built on this thread, used from another: the CUDA device is per thread, so every call
    must select device 1 there (a context of device 1 run with device 0 current fails)."""
    from fake_gpu import fake_gpu

    engine, onnx_path = _fake_engine(tmp_path)
    with fake_gpu(monkeypatch) as gpu:
        backend = TensorRTBackend(engine, device="cuda:1")
        try:
            assert set(gpu.cudart.device_of.values()) == {1}  # buffers on device 1
            results, errors = [], []

            def worker():
                try:
                    results.append(backend.infer(_batch(3)))
                except Exception as exc:  # reported below
                    errors.append(exc)

            thread = threading.Thread(target=worker)
            thread.start()
            thread.join()
            assert not errors, errors
            np.testing.assert_allclose(results[0], _ort(onnx_path, _batch(3)), atol=1e-5)
            worker_calls = [(name, detail) for tid, name, detail in gpu.cudart.calls if tid == thread.ident]
            assert worker_calls[0] == ("cudaSetDevice", 1), worker_calls
            assert all(detail == 1 for name, detail in worker_calls if name == "cudaMemcpyAsync"), worker_calls
        finally:
            backend.close()


def test_with_pycuda_every_tensorrt_object_is_made_and_run_in_the_devices_context(tmp_path, monkeypatch):
    """pycuda (driver API): nothing is current until a context is pushed; runtime, engine and execution context
    must be created with the device's context pushed, and each call from any thread pushes it again."""
    from fake_gpu import fake_gpu

    engine, onnx_path = _fake_engine(tmp_path)
    with fake_gpu(monkeypatch, pycuda=True) as gpu:
        backend = TensorRTBackend(engine, device="cuda:1")
        try:
            assert set(gpu.driver.device_of.values()) == {1}
            results = []
            thread = threading.Thread(target=lambda: results.append(backend.infer(_batch(3))))
            thread.start()
            thread.join()
            np.testing.assert_allclose(results[0], _ort(onnx_path, _batch(3)), atol=1e-5)
            np.testing.assert_allclose(backend.infer(_batch(2)), _ort(onnx_path, _batch(2)), atol=1e-5)
            assert gpu.driver.current is None  # every push was popped
        finally:
            backend.close()


def test_fake_gpu_failures_are_clear(tmp_path, monkeypatch):
    from fake_gpu import fake_gpu

    engine, _ = _fake_engine(tmp_path, fail_context=True)
    with fake_gpu(monkeypatch):
        with pytest.raises(BackendError, match="could not create an execution context.*out of device memory"):
            TensorRTBackend(engine)
        engine.write_bytes(b"not an engine")
        with pytest.raises(ArtifactError, match="could not deserialize.*magic tag mismatch"):
            TensorRTBackend(engine)
        with pytest.raises(BackendError, match="cudaSetDevice failed"):
            TensorRTBackend(_fake_engine(tmp_path)[0], device="cuda:5")
    engine, _ = _fake_engine(tmp_path, gpu=("Orin", (8, 7)))
    with fake_gpu(monkeypatch), pytest.raises(EngineCompatibilityError, match="built for Orin"):
        TensorRTBackend(engine)


def test_a_jit_plugin_engine_registers_its_plugin_first(tmp_path, monkeypatch):
    from fake_gpu import fake_gpu

    engine, onnx_path = _fake_engine(tmp_path)
    sidecar = read_engine_sidecar(engine)
    plugin = EnginePlugin(used=True, implementation="jit", name="DSLNet_CSS", namespace="dslnet_edge",
                          register="gc:collect")  # importable, registers nothing
    write_engine_sidecar(engine, dataclasses.replace(sidecar, plugin=plugin))
    with fake_gpu(monkeypatch), pytest.raises(ArtifactError, match="not registered after calling gc:collect"):
        TensorRTBackend(engine)
    write_engine_sidecar(engine, dataclasses.replace(sidecar, plugin=dataclasses.replace(plugin, register="no_such_pkg:f")))
    with fake_gpu(monkeypatch), pytest.raises(ArtifactError, match="which does not import here"):
        TensorRTBackend(engine)
    write_engine_sidecar(engine, dataclasses.replace(sidecar, plugin=dataclasses.replace(plugin, implementation="aot")))
    with fake_gpu(monkeypatch):
        TensorRTBackend(engine).close()  # embedded: nothing to register


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
    write_engine_sidecar(engine, _sidecar_object(
        input_spec=spec, precision="fp32", tensorrt_version=trt.__version__,
        gpu_name=props.name.split(b"\0")[0].decode(), compute_capability=(props.major, props.minor),
        min_shape=(1, 3, 16, 8), opt_shape=(4, 3, 16, 8), max_shape=(8, 3, 16, 8)))
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
