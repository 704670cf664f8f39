"""export.triton_repo: configs parsed with Triton's own protobuf schema, and a real tritonserver on loopback.

The server is the ``tritonserver`` binary of the ``nvidia-pytriton`` wheel (installed with
``--no-deps``, see README), started once for this module with the Python backend, bound to
127.0.0.1 on free ports. It serves the demo DSLNet through ``dslnet_<python|crops>`` and must give
the local Engine's embeddings over HTTP and gRPC, batch concurrent requests, and stop with no
process left. Without the binary the server tests skip with a reason, except in CI (``CI=true``),
where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from testutils import random_crops

from dslnet_edge.spec import InputSpec
from export.triton_repo import TritonRepoConfig, TritonRepoError, main, write_repository

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs tritonclient (dev extra)")
text_format = pytest.importorskip("google.protobuf.text_format")


def _parse(folder: Path):
    config = model_config_pb2.ModelConfig()
    text_format.Parse((folder / "config.pbtxt").read_text(encoding="utf-8"), config)
    return config


def _demo_onnx() -> Path:
    from dslnet_edge.weights import demo_weights

    return Path(demo_weights("onnx"))


def _fake_engine(tmp_path: Path, onnx_path: Path, *, plugin: tuple[bool, str | None], profile=(1, 4, 16)) -> Path:
    """A stand-in engine file with the sidecar export.build_engine's own writer makes (no TensorRT needed)."""
    from dslnet_edge.backends import read_onnx_spec
    from export.build_engine import EngineBuildConfig, PluginChoice, PreparedOnnx, artefact_paths, sidecar_dict
    from export.tensorrt_build import GpuInfo, Profile

    out = tmp_path / "model.engine"
    out.write_bytes(b"not a real TensorRT plan: the exporter only copies it")
    spec = read_onnx_spec(onnx_path).replace(precision="fp16")
    config = EngineBuildConfig(onnx=onnx_path, precision="fp16", out=out, profile=Profile(*profile))
    choice = PluginChoice(plugin[0], plugin[1], "test")
    prepared = PreparedOnnx(onnx_path, onnx_path, onnx_path, "fp16", spec, choice, {"plain": str(onnx_path)}, {})
    facts = {"tensorrt_version": "10.9.0", "strongly_typed": True, "builder_flags": [], "workspace_bytes": None}
    data = sidecar_dict(config, prepared, onnx_path, GpuInfo("NVIDIA Orin", "8.7"), facts, {"verified": False})
    artefact_paths(out)["sidecar"].write_text(json.dumps(data))
    return out


# -- configs ---------------------------------------------------------------------------------
def _check_common(config, spec: InputSpec, max_batch: int):
    assert config.max_batch_size == max_batch
    assert [(o.name, list(o.dims), o.data_type) for o in config.output] == [
        ("embeddings", [spec.feature_dim], model_config_pb2.TYPE_FP32)
    ]
    assert InputSpec.from_json(config.parameters["dslnet_input_spec"].string_value) == spec
    assert config.HasField("dynamic_batching")


def _check_images_input(config, spec: InputSpec):
    assert [(i.name, list(i.dims), i.data_type) for i in config.input] == [
        ("images", [3, spec.height, spec.width], model_config_pb2.TYPE_FP32)
    ]


def test_onnx_repository_configs_parse(tmp_path):
    from dslnet_edge.backends import read_onnx_spec

    onnx_path = _demo_onnx()
    spec = read_onnx_spec(onnx_path)
    models = write_repository(TritonRepoConfig(out=tmp_path / "models", onnx=onnx_path, max_batch=8))
    assert sorted(models) == ["dslnet", "dslnet_crops", "dslnet_python"]
    main_model = _parse(models["dslnet"])
    assert main_model.platform == "onnxruntime_onnx" and main_model.name == "dslnet"
    assert (models["dslnet"] / "1" / "model.onnx").read_bytes() == onnx_path.read_bytes()
    _check_common(main_model, spec, 8)
    _check_images_input(main_model, spec)
    for name in ("dslnet_python", "dslnet_crops"):
        config = _parse(models[name])
        assert config.backend == "python" and config.name == name
        _check_common(config, spec, 8)
        assert config.parameters["model_file"].string_value == onnx_path.name
        assert (models[name] / "1" / "model.py").is_file() and (models[name] / "1" / onnx_path.name).is_file()
    _check_images_input(_parse(models["dslnet_python"]), spec)
    crops = _parse(models["dslnet_crops"]).input
    assert [(i.name, list(i.dims), i.data_type, i.allow_ragged_batch) for i in crops] == [
        ("crops", [-1, -1, 3], model_config_pb2.TYPE_UINT8, True)
    ]


@pytest.mark.parametrize("plugin, expect_plan, note", [
    ((False, None), True, "runs only on the TensorRT version"),
    ((True, "aot"), True, "compiled ahead of time into the engine"),
    ((True, "jit"), False, "JIT CSS plugin"),
])
def test_engine_repository_follows_the_sidecar(tmp_path, plugin, expect_plan, note):
    from dslnet_edge.backends.tensorrt_backend import read_engine_sidecar

    engine = _fake_engine(tmp_path, _demo_onnx(), plugin=plugin, profile=(1, 4, 16))
    sidecar = read_engine_sidecar(engine)
    models = write_repository(TritonRepoConfig(out=tmp_path / "models", engine=engine))
    assert note in (tmp_path / "models" / "README.md").read_text()
    assert ("dslnet" in models) is expect_plan
    if expect_plan:
        config = _parse(models["dslnet"])
        assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
        assert (models["dslnet"] / "1" / "model.plan").read_bytes() == engine.read_bytes()
        assert list(config.dynamic_batching.preferred_batch_size) == [4, 16]  # the profile's opt and max
        assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        _check_common(config, sidecar.input_spec, sidecar.max_batch)
        _check_images_input(config, sidecar.input_spec)
    # the Python models wrap the ONNX the engine was built from (so they run without TensorRT)
    python = _parse(models["dslnet_python"])
    _check_common(python, sidecar.input_spec, 16)
    assert python.parameters["model_file"].string_value == _demo_onnx().name


def test_python_models_wrap_the_engine_when_its_onnx_is_gone(tmp_path):
    onnx_copy = tmp_path / "gone.onnx"
    onnx_copy.write_bytes(_demo_onnx().read_bytes())
    engine = _fake_engine(tmp_path, onnx_copy, plugin=(False, None))
    onnx_copy.unlink()
    models = write_repository(TritonRepoConfig(out=tmp_path / "models", engine=engine))
    config = _parse(models["dslnet_python"])
    assert config.parameters["model_file"].string_value == "model.engine"
    assert config.parameters["device"].string_value == "cuda"  # TensorRT needs the GPU whatever --python-device says
    assert (models["dslnet_python"] / "1" / "model.engine.json").is_file()


def test_cli_refuses_bad_input_with_one_line(tmp_path, capsys):
    assert main(["--no-such-flag"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "usage:" not in err
    assert main(["--onnx", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "m")]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep me")
    assert main(["--onnx", str(_demo_onnx()), "--out", str(busy)]) == 1
    assert "is not empty" in capsys.readouterr().err and (busy / "mine.txt").read_text() == "keep me"
    engine = _fake_engine(tmp_path, _demo_onnx(), plugin=(False, None), profile=(1, 2, 4))
    with pytest.raises(TritonRepoError, match="exceeds the engine profile's max batch 4"):
        write_repository(TritonRepoConfig(out=tmp_path / "m2", engine=engine, max_batch=8))
    # a repository written before is replaced only with --overwrite
    assert main(["--onnx", str(_demo_onnx()), "--out", str(tmp_path / "m3"), "--max-batch", "2"]) == 0
    assert main(["--onnx", str(_demo_onnx()), "--out", str(tmp_path / "m3")]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["--onnx", str(_demo_onnx()), "--out", str(tmp_path / "m3"), "--overwrite", "--max-batch", "3"]) == 0
    assert _parse(tmp_path / "m3" / "dslnet").max_batch_size == 3


# -- a real server -----------------------------------------------------------------------------
def _pytriton_root() -> Path | None:
    import importlib.util

    found = importlib.util.find_spec("pytriton")  # located, not imported: its Python side needs deps we skip
    if found is None or not found.submodule_search_locations:
        return None
    root = Path(list(found.submodule_search_locations)[0]) / "tritonserver"
    return root if (root / "bin" / "tritonserver").is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, process: subprocess.Popen, http: int, grpc: int, log: Path):
        self.process, self.http, self.grpc, self.log = process, http, grpc, log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        try:  # the Python backend stubs are in the server's process group: none may be left
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(2)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        raise AssertionError("tritonserver left processes behind after shutdown (killed now)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = _pytriton_root()
    if root is None:
        message = "tritonserver not found: pip install --no-deps nvidia-pytriton (README's install command)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    base = tmp_path_factory.mktemp("triton")
    write_repository(TritonRepoConfig(out=base / "models", onnx=_demo_onnx(), max_batch=16, queue_delay_us=20000))
    backends = base / "backends"
    shutil.copytree(root / "backends" / "python", backends / "python")
    stub = root / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / "triton_python_backend_stub"
    shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
    libs = root.parent.parent / "nvidia_pytriton.libs"
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the stub's python: this venv's
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p)
    http, grpc = _free_port(), _free_port()
    log = base / "tritonserver.log"
    command = [
        str(root / "bin" / "tritonserver"), "--model-repository", str(base / "models"),
        "--backend-directory", str(backends), "--model-control-mode", "explicit",
        "--load-model", "dslnet_python", "--load-model", "dslnet_crops",
        "--http-address", "127.0.0.1", "--http-port", str(http),
        "--grpc-address", "127.0.0.1", "--grpc-port", str(grpc),
        "--allow-metrics", "false", "--exit-timeout-secs", "20",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    running = _Server(process, http, grpc, log)
    try:
        _wait_ready(running)
        yield running
    finally:
        running.stop()


def _wait_ready(server: _Server, timeout: float = 180.0) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.http}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"tritonserver exited ({server.process.returncode}):\n{server.log.read_text()[-3000:]}")
        try:
            if client.is_server_ready():
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise AssertionError(f"tritonserver not ready after {timeout:.0f} s:\n{server.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def local_engine():
    import dslnet_edge

    with dslnet_edge.Engine() as engine:
        yield engine


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_http_and_grpc_embeddings_equal_the_local_engine(server, local_engine):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from dslnet_edge.preprocessing import preprocess

    crops = random_crops(np.random.default_rng(1), 6)
    expected = local_engine.embed(crops)
    # raw crops over HTTP: one request per crop (each its own size), preprocessing on the server
    http = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.http}")
    got = []
    for crop in crops:
        request = httpclient.InferInput("crops", [1, *crop.shape], "UINT8")
        request.set_data_from_numpy(crop[None])
        wanted = [httpclient.InferRequestedOutput("embeddings", binary_data=True)]
        got.append(http.infer("dslnet_crops", [request], outputs=wanted).as_numpy("embeddings")[0])
    assert _cosines(np.stack(got), expected).min() >= 0.9999
    # preprocessed images over gRPC, one batch
    grpc = grpcclient.InferenceServerClient(url=f"127.0.0.1:{server.grpc}")
    batch = preprocess(crops, local_engine.spec)
    request = grpcclient.InferInput("images", list(batch.shape), "FP32")
    request.set_data_from_numpy(batch)
    result = grpc.infer("dslnet_python", [request]).as_numpy("embeddings")
    assert result.shape == expected.shape and _cosines(result, expected).min() >= 0.9999
    # a bad request gets an error naming the problem, and the model keeps serving
    bad = grpcclient.InferInput("images", [1, 3, 8, 8], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(Exception, match="unexpected shape for input 'images'"):  # Triton checks the config's shape
        grpc.infer("dslnet_python", [bad])
    empty = grpcclient.InferInput("crops", [1, 0, 4, 3], "UINT8")
    empty.set_data_from_numpy(np.zeros((1, 0, 4, 3), np.uint8))
    with pytest.raises(Exception, match=r"crops must be uint8 \[n, h, w, 3\] BGR with n, h, w >= 1"):  # the model's check
        grpc.infer("dslnet_crops", [empty])
    assert grpc.is_model_ready("dslnet_python") and grpc.is_model_ready("dslnet_crops")


def test_concurrent_requests_are_batched_dynamically(server, local_engine):
    import tritonclient.grpc as grpcclient

    crops = random_crops(np.random.default_rng(2), 24)
    expected = local_engine.embed(crops)
    client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{server.grpc}")
    before = client.get_inference_statistics("dslnet_crops").model_stats[0]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            own = grpcclient.InferenceServerClient(url=f"127.0.0.1:{server.grpc}")
            request = grpcclient.InferInput("crops", [1, *crops[i].shape], "UINT8")
            request.set_data_from_numpy(crops[i][None])
            results[i] = own.infer("dslnet_crops", [request]).as_numpy("embeddings")[0]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(crops))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    got = np.stack([results[i] for i in range(len(crops))])
    assert _cosines(got, expected).min() >= 0.9999  # every request got its own crop's embedding back
    after = client.get_inference_statistics("dslnet_crops").model_stats[0]
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    assert inferences == len(crops)
    assert executions < inferences, f"{inferences} requests ran in {executions} executions: nothing was batched"


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_engine_and_matcher_through_the_server(server, local_engine, scheme):
    import dslnet_edge

    port = server.grpc if scheme == "grpc" else server.http
    crops = random_crops(np.random.default_rng(3), 10)
    with dslnet_edge.Engine(f"{scheme}://127.0.0.1:{port}/dslnet_python") as remote:
        assert remote.spec == local_engine.spec and remote.max_batch == 16
        assert _cosines(remote.embed(crops), local_engine.embed(crops)).min() >= 0.9999
        local_matcher, remote_matcher = dslnet_edge.Matcher(local_engine), dslnet_edge.Matcher(remote)
        for matcher in (local_matcher, remote_matcher):
            matcher.enroll(crops[:5], identities=[f"p{i}" for i in range(5)], camera="a")
        local = [m.identity for m in local_matcher.match(crops, camera="b")]
        far = [m.identity for m in remote_matcher.match(crops, camera="b")]
        assert far == local and far[:5] == [f"p{i}" for i in range(5)]
