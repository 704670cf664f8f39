"""ONNX Runtime backend and the shared ONNX spec reader, on real (tiny) ONNX files and real sessions."""

from __future__ import annotations

import numpy as np
import pytest
from testutils import tiny_embedding_onnx

from dslnet_edge.backends import ArtifactError, ArtifactNotFoundError, BackendError, read_onnx_spec
from dslnet_edge.backends.onnxruntime_backend import (
    OnnxRuntimeBackend,
    _read_spec_with_onnxruntime,
    providers_for_device,
)
from dslnet_edge.spec import InputSpec

SPEC = InputSpec(height=16, width=8, feature_dim=32)


@pytest.fixture
def model_path(tmp_path):
    return tiny_embedding_onnx(tmp_path / "tiny.onnx", SPEC)


def _batch(rng, n, spec=SPEC):
    return rng.uniform(0, 255, size=(n, 3, spec.height, spec.width)).astype(np.float32)


# -- reading the spec --------------------------------------------------------------------------
@pytest.mark.parametrize("reader", [read_onnx_spec, _read_spec_with_onnxruntime], ids=["onnx", "onnxruntime"])
def test_spec_is_read_from_metadata(model_path, reader):
    assert reader(model_path) == SPEC


def test_spec_reader_rejects_bad_files(tmp_path):
    with pytest.raises(ArtifactNotFoundError, match="missing.onnx does not exist"):
        read_onnx_spec(tmp_path / "missing.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ArtifactError, match="empty.onnx is empty"):
        read_onnx_spec(tmp_path / "empty.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07not a protobuf at all" * 10)
    with pytest.raises(ArtifactError, match="junk.onnx is not a readable ONNX model"):
        read_onnx_spec(tmp_path / "junk.onnx")
    with pytest.raises(ArtifactError, match="is not a file"):
        read_onnx_spec(tmp_path)


def test_missing_metadata_names_the_file_and_the_fix(tmp_path):
    path = tiny_embedding_onnx(tmp_path / "nospec.onnx", SPEC, with_spec=False)
    for call in (read_onnx_spec, OnnxRuntimeBackend):
        with pytest.raises(ArtifactError, match=r"nospec\.onnx has no 'dslnet_edge.input_spec'.*export\.onnx"):
            call(path)


def test_invalid_metadata_is_an_artifact_error(tmp_path):
    import onnx

    path = tiny_embedding_onnx(tmp_path / "bad.onnx", SPEC)
    proto = onnx.load(path)
    proto.metadata_props[0].value = '{"height": -3}'
    onnx.save(proto, path)
    with pytest.raises(ArtifactError, match=r"bad\.onnx has an invalid 'dslnet_edge.input_spec'.*height"):
        read_onnx_spec(path)


def test_truncated_model_is_refused_by_the_backend(model_path):
    data = model_path.read_bytes()
    model_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="could not be loaded by ONNX Runtime"):
        OnnxRuntimeBackend(model_path)


def test_graph_that_contradicts_its_spec_is_refused(tmp_path):
    import onnx

    path = tiny_embedding_onnx(tmp_path / "liar.onnx", SPEC)
    proto = onnx.load(path)
    proto.metadata_props[0].value = SPEC.replace(height=32).to_json()
    onnx.save(proto, path)
    with pytest.raises(ArtifactError, match=r"has shape \['N', 3, 16, 8\] but its input spec says \[N, 3, 32, 8\]"):
        OnnxRuntimeBackend(path)
    proto.metadata_props[0].value = SPEC.replace(feature_dim=64).to_json()
    onnx.save(proto, path)
    with pytest.raises(ArtifactError, match=r"output 'embeddings' has shape \['N', 32\] but its input spec says \[N, 64\]"):
        OnnxRuntimeBackend(path)


# -- providers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("device", "expected", "error"),
    [
        ("cpu", ["CPUExecutionProvider"], None),
        ("cuda", [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"], None),
        ("cuda:1", [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"], None),
        ("tensorrt", [("TensorrtExecutionProvider", {"device_id": 0}), ("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"], None),
        ("gpu", None, "expected 'cpu', 'cuda'"),
        ("cuda:x", None, "expected 'cpu', 'cuda'"),
        ("cpu:0", None, "expected 'cpu', 'cuda'"),
    ],
)
def test_providers_for_device(device, expected, error):
    if error:
        with pytest.raises(ValueError, match=error):
            providers_for_device(device)
    else:
        assert providers_for_device(device) == expected


def test_unavailable_provider_is_a_clear_error(model_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider; the error path needs a CPU-only build")
    with pytest.raises(BackendError, match=r"\['CUDAExecutionProvider'\] are not available.*onnxruntime-gpu"):
        OnnxRuntimeBackend(model_path, device="cuda")


# -- inference ---------------------------------------------------------------------------------
def test_infer_returns_float32_rows_and_uses_the_threads_asked_for(model_path, rng):
    backend = OnnxRuntimeBackend(model_path, intra_op_threads=1)
    assert backend._session.get_session_options().intra_op_num_threads == 1
    assert backend.providers == ["CPUExecutionProvider"]
    out = backend.infer(_batch(rng, 3))
    assert out.shape == (3, SPEC.feature_dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    # rows are independent: one crop alone gives the same embedding as in the batch
    batch = _batch(rng, 4)
    np.testing.assert_allclose(backend.infer(batch[1:2])[0], backend.infer(batch)[1], atol=1e-6)


@pytest.mark.parametrize(
    ("batch", "error"),
    [
        (np.zeros((2, 3, 16, 8), np.float64), "must be a float32 numpy array"),
        (np.zeros((2, 3, 8, 16), np.float32), r"has shape \(2, 3, 8, 16\); the model takes \[N, 3, 16, 8\]"),
        (np.zeros((3, 16, 8), np.float32), "has shape"),
        (np.zeros((0, 3, 16, 8), np.float32), "batch is empty"),
        ([[1.0]], "got list"),
    ],
)
def test_infer_rejects_malformed_batches(model_path, batch, error):
    with pytest.raises(ValueError, match=error):
        OnnxRuntimeBackend(model_path).infer(batch)


def test_fixed_batch_graph_pads_small_batches_and_limits_large_ones(tmp_path, rng):
    fixed = OnnxRuntimeBackend(tiny_embedding_onnx(tmp_path / "fixed.onnx", SPEC, fixed_batch=4))
    dynamic = OnnxRuntimeBackend(tiny_embedding_onnx(tmp_path / "dyn.onnx", SPEC))
    assert fixed.max_batch == 4 and dynamic.max_batch is None
    batch = _batch(rng, 3)
    np.testing.assert_allclose(fixed.infer(batch), dynamic.infer(batch), atol=1e-6)
    with pytest.raises(ValueError, match="exceeds the model's max batch 4"):
        fixed.infer(_batch(rng, 5))


@pytest.mark.parametrize(("value", "error"), [(-1, "must be an integer >= 0"), (1.5, "must be an integer >= 0"), (True, "must be an integer")])
def test_thread_options_are_validated(model_path, value, error):
    with pytest.raises(ValueError, match=error):
        OnnxRuntimeBackend(model_path, intra_op_threads=value)


def test_close_and_context_manager(model_path, rng):
    with OnnxRuntimeBackend(model_path) as backend:
        backend.infer(_batch(rng, 1))
    assert backend._session is None
    backend.close()  # twice is harmless


# -- quiet loads (issue 14: ~80 lines of ONNX Runtime warnings before the one-line error) ------
def _with_unused_initializers(path, n=20, with_spec=True):
    import onnx
    from onnx import numpy_helper

    tiny_embedding_onnx(path, SPEC, with_spec=with_spec)
    proto = onnx.load(path)
    for i in range(n):  # what a foreign torch export carries: BN counters, a classifier no node reads
        proto.graph.initializer.append(numpy_helper.from_array(np.array(i, np.int64), f"bn{i}.num_batches_tracked"))
    onnx.save(proto, path)
    return path


@pytest.mark.parametrize("with_spec", [True, False], ids=["loads", "refused"])
def test_loading_prints_no_onnxruntime_warnings(tmp_path, capfd, with_spec):
    path = _with_unused_initializers(tmp_path / "foreign.onnx", with_spec=with_spec)
    if with_spec:
        OnnxRuntimeBackend(path)
        _read_spec_with_onnxruntime(path)
    else:
        with pytest.raises(ArtifactError, match="has no 'dslnet_edge.input_spec'"):
            OnnxRuntimeBackend(path)
    captured = capfd.readouterr()
    assert "Removing initializer" not in captured.err + captured.out
    assert captured.err.strip() == ""


def test_cpu_sessions_prefer_a_small_batch_gpu_ones_do_not(model_path):
    assert OnnxRuntimeBackend(model_path).preferred_batch == 8


# -- an in-memory model, and the infer template ----------------------------------------------------
def test_from_model_runs_a_proto_and_its_bytes_like_the_file(model_path, rng):
    import onnx

    batch = _batch(rng, 3)
    proto = onnx.load(model_path)
    expected = OnnxRuntimeBackend(model_path).infer(batch)
    for model in (proto, proto.SerializeToString()):
        backend = OnnxRuntimeBackend.from_model(model, source="the test's model", intra_op_threads=1)
        assert backend.spec == SPEC and backend.path is None and "the test's model" in repr(backend)
        np.testing.assert_array_equal(backend.infer(batch), expected)
    with pytest.raises(ArtifactError, match="the test's model could not be loaded by ONNX Runtime"):
        OnnxRuntimeBackend.from_model(b"\x08\x07not a protobuf" * 10, source="the test's model")
    with pytest.raises(TypeError, match="ModelProto"):
        OnnxRuntimeBackend.from_model(str(model_path))


def test_from_model_uses_given_session_options(model_path):
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    backend = OnnxRuntimeBackend.from_model(onnx.load(model_path), session_options=options)
    assert backend.infer(np.zeros((1, 3, 16, 8), np.float32)).shape == (1, 32)
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL


def test_infer_is_a_template_checks_then_run_then_output_checks(rng):
    from dslnet_edge.backends.base import Backend

    class Scripted(Backend):
        """Returns what it is told to; records what reached it."""

        def __init__(self, output):
            self.spec, self.max_batch, self.source = SPEC, 4, "scripted.onnx"
            self.output, self.seen = output, []

        def _infer(self, batch):
            self.seen.append(batch.shape)
            return self.output(batch)

        def close(self):
            pass

    good = Scripted(lambda b: np.ones((len(b), 32), np.float16))
    out = good.infer(_batch(rng, 2))
    assert out.dtype == np.float32 and out.shape == (2, 32)  # converted by the template
    with pytest.raises(ValueError, match="exceeds the model's max batch 4"):
        good.infer(_batch(rng, 5))
    with pytest.raises(ValueError, match="float32"):
        good.infer(_batch(rng, 2).astype(np.float64))
    assert good.seen == [(2, 3, 16, 8)]  # refused batches never reached _infer
    with pytest.raises(ArtifactError, match=r"scripted\.onnx: the model returned shape \(2, 31\)"):
        Scripted(lambda b: np.ones((len(b), 31), np.float32)).infer(_batch(rng, 2))


def test_infer_all_slices_by_max_batch(tmp_path, rng):
    fixed = OnnxRuntimeBackend(tiny_embedding_onnx(tmp_path / "fixed.onnx", SPEC, fixed_batch=1))
    dynamic = OnnxRuntimeBackend(tiny_embedding_onnx(tmp_path / "dynamic.onnx", SPEC))
    batch = _batch(rng, 5)
    assert fixed.max_batch == 1
    with pytest.raises(ValueError, match="exceeds the model's max batch 1"):
        fixed.infer(batch)
    np.testing.assert_allclose(fixed.infer_all(batch), dynamic.infer(batch), rtol=1e-6, atol=1e-6)
