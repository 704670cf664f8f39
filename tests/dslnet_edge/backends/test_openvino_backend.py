"""OpenVINO backend on real (tiny) ONNX/IR files and real OpenVINO compiled models; the load-time check."""

from __future__ import annotations

import numpy as np
import pytest
from testutils import tiny_embedding_onnx

from dslnet_edge.backends import ArtifactError, ArtifactNotFoundError, BackendError, backend_for_path
from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from dslnet_edge.backends.precision_check import min_row_cosine, person_like_crops
from dslnet_edge.engine import Engine
from dslnet_edge.spec import InputSpec

ov = pytest.importorskip("openvino", reason="the openvino package is not installed (pip install 'dslnet-edge[openvino]')")

from dslnet_edge.backends.openvino_backend import OpenVinoBackend, cpu_has_bf16  # noqa: E402

SPEC = InputSpec(height=16, width=8, feature_dim=32)
needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16, so bf16 equals f32 here")


@pytest.fixture
def model_path(tmp_path):
    return tiny_embedding_onnx(tmp_path / "tiny.onnx", SPEC)


def _batch(rng, n, spec=SPEC):
    return rng.uniform(0, 255, size=(n, 3, spec.height, spec.width)).astype(np.float32)


def _qdq_onnx(path, spec=SPEC, seed=0):
    """The tiny model with its MatMul quantized the way ONNX Runtime's static quantization writes it.

    Activations: QuantizeLinear -> DequantizeLinear (uint8, scale from the 0-255 range centred);
    weights: int8 initializer -> DequantizeLinear (per tensor, symmetric).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from dslnet_edge.spec import SPEC_METADATA_KEY

    rng = np.random.default_rng(seed)
    flat = 3 * spec.height * spec.width
    weight = rng.standard_normal((flat, spec.feature_dim)) / np.sqrt(flat)
    w_scale = np.float32(np.abs(weight).max() / 127)
    inits = [
        numpy_helper.from_array(np.array(127.5, np.float32), "centre"),
        numpy_helper.from_array(np.clip(np.rint(weight / w_scale), -127, 127).astype(np.int8), "weight_q"),
        numpy_helper.from_array(np.array(w_scale, np.float32), "w_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "w_zero"),
        numpy_helper.from_array(np.array(1.0, np.float32), "a_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "a_zero"),
    ]
    nodes = [
        helper.make_node("Sub", ["images", "centre"], ["centred"]),
        helper.make_node("Flatten", ["centred"], ["flat"], axis=1),
        helper.make_node("QuantizeLinear", ["flat", "a_scale", "a_zero"], ["flat_q"]),
        helper.make_node("DequantizeLinear", ["flat_q", "a_scale", "a_zero"], ["flat_dq"]),
        helper.make_node("DequantizeLinear", ["weight_q", "w_scale", "w_zero"], ["weight"]),
        helper.make_node("MatMul", ["flat_dq", "weight"], ["projected"]),
        helper.make_node("LpNormalization", ["projected"], ["embeddings"], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes, "tiny_qdq",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, spec.height, spec.width])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", spec.feature_dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.add(key=SPEC_METADATA_KEY, value=spec.replace(precision="int8").to_json())
    onnx.checker.check_model(model)
    onnx.save_model(model, path)
    return path


# -- the check's ingredients -------------------------------------------------------------------
def test_person_like_crops_are_deterministic_varied_uint8():
    a, b = person_like_crops(6, seed=3), person_like_crops(6, seed=3)
    assert all(x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == 3 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len({x.shape for x in a}) > 1  # detector-like sizes, not one fixed shape
    assert not np.array_equal(a[0], person_like_crops(6, seed=4)[0])
    with pytest.raises(ValueError, match="positive integer"):
        person_like_crops(0)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([[1.0, 0.0], [0.0, 2.0]], [[2.0, 0.0], [0.0, 1.0]], 1.0),
        ([[1.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]], np.sqrt(0.5)),
        ([[1.0, 0.0]], [[-1.0, 0.0]], -1.0),
    ],
)
def test_min_row_cosine(a, b, expected):
    assert min_row_cosine(np.array(a), np.array(b)) == pytest.approx(expected)


def test_min_row_cosine_fails_closed_on_nan_and_zero_rows():
    assert np.isnan(min_row_cosine(np.array([[np.nan, 1.0]]), np.array([[1.0, 1.0]])))
    assert np.isnan(min_row_cosine(np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]])))
    with pytest.raises(ValueError, match="equal non-empty"):
        min_row_cosine(np.ones((2, 3)), np.ones((3, 3)))


# -- loading and running -----------------------------------------------------------------------
def test_f32_matches_onnxruntime(model_path, rng):
    batch = _batch(rng, 5)
    with OpenVinoBackend(model_path, precision="f32") as backend:
        assert backend.spec == SPEC and backend.precision == "f32" and not backend.int8
        assert backend.check_cosine is None  # f32 is the reference: nothing to check
        out = backend.infer(batch)
    reference = OnnxRuntimeBackend(model_path).infer(batch)
    assert out.shape == (5, SPEC.feature_dim) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference, atol=1e-5)


def test_ir_with_given_spec_and_fixed_batch(tmp_path, rng):
    """An IR (converted here from a fixed-batch ONNX without metadata) runs with spec=..., any batch size."""
    onnx_path = tiny_embedding_onnx(tmp_path / "fixed.onnx", SPEC, fixed_batch=1, with_spec=False)
    xml = tmp_path / "fixed.xml"
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    with pytest.raises(ArtifactError, match=r"fixed\.xml carries no 'dslnet_edge.input_spec'.*spec=InputSpec"):
        OpenVinoBackend(xml, precision="f32")
    batch = _batch(rng, 3)
    with OpenVinoBackend(xml, precision="f32", spec=SPEC) as backend:
        out = backend.infer(batch)
    expected = OnnxRuntimeBackend(tiny_embedding_onnx(tmp_path / "dyn.onnx", SPEC)).infer(batch)
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"precision": "int4"}, ValueError, "precision must be one of"),
        ({"device": "cuda"}, BackendError, "device .cpu. only"),
        ({"intra_op_threads": -1}, ValueError, "intra_op_threads must be an integer >= 0"),
        ({"max_batch": 0}, ValueError, "max_batch must be a positive integer"),
        ({"min_cosine": 1.5}, ValueError, r"min_cosine must be in \(0, 1\]"),
    ],
)
def test_bad_options(model_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        OpenVinoBackend(model_path, **kwargs)


def test_bad_files(tmp_path):
    with pytest.raises(ArtifactNotFoundError, match="missing.onnx does not exist"):
        OpenVinoBackend(tmp_path / "missing.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ArtifactError, match="is empty"):
        OpenVinoBackend(tmp_path / "empty.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07not a protobuf at all" * 10)
    with pytest.raises(ArtifactError, match=r"junk\.onnx could not be read by OpenVINO") as info:
        OpenVinoBackend(tmp_path / "junk.onnx")
    assert "\n" not in str(info.value)
    (tmp_path / "alone.xml").write_text("<net/>")
    with pytest.raises(ArtifactNotFoundError, match=r"alone\.bin does not exist"):
        OpenVinoBackend(tmp_path / "alone.xml")
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="reads .onnx or OpenVINO IR .xml"):
        OpenVinoBackend(tmp_path / "model.pt")


def test_wrong_spec_for_graph_is_refused(model_path):
    with pytest.raises(ArtifactError, match=r"input has shape .* spec says \[N, 3, 32, 16\]"):
        OpenVinoBackend(model_path, spec=InputSpec(height=32, width=16, feature_dim=32))
    with pytest.raises(ArtifactError, match=r"output has shape .* spec says \[N, 64\]"):
        OpenVinoBackend(model_path, spec=SPEC.replace(feature_dim=64))


def test_batch_checks_and_close(model_path, rng):
    backend = OpenVinoBackend(model_path, precision="f32", max_batch=2)
    with pytest.raises(ValueError, match="exceeds the model's max batch 2"):
        backend.infer(_batch(rng, 3))
    with pytest.raises(ValueError, match="float32"):
        backend.infer(_batch(rng, 1).astype(np.float64))
    backend.close()
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend.infer(_batch(rng, 1))


def test_threads_from_several_callers(model_path, rng):
    from concurrent.futures import ThreadPoolExecutor

    backend = OpenVinoBackend(model_path, precision="f32", intra_op_threads=1)
    batches = [_batch(rng, 2) for _ in range(8)]
    expected = [backend.infer(b) for b in batches]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(backend.infer, batches))
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


# -- the load-time precision check -------------------------------------------------------------
@needs_bf16
def test_bf16_is_checked_against_f32(model_path):
    backend = OpenVinoBackend(model_path, precision="bf16")
    assert backend.precision == "bf16"
    assert 0.999 <= backend.check_cosine < 1.0  # really ran in bf16, and close to f32
    assert OpenVinoBackend(model_path).precision == "bf16"  # auto takes bf16 on this CPU


@needs_bf16
def test_failed_check_refuses_explicit_bf16_in_one_line(model_path):
    with pytest.raises(ArtifactError, match=r"tiny\.onnx: OpenVINO bf16 embeddings differ from OpenVINO f32.*min cosine "
                       r"0\.9\d+ < 1\.0.*precision='f32'") as info:
        OpenVinoBackend(model_path, precision="bf16", min_cosine=1.0)
    assert "\n" not in str(info.value)


@needs_bf16
def test_failed_check_with_auto_falls_back_to_f32_and_says_so(model_path, rng, caplog):
    with caplog.at_level("WARNING", logger="dslnet_edge.backends.openvino_backend"):
        backend = OpenVinoBackend(model_path, min_cosine=1.0)
    assert backend.precision == "f32" and "falling back to f32" in backend.note
    assert any("falling back to f32" in r.message for r in caplog.records)
    batch = _batch(rng, 2)
    np.testing.assert_allclose(backend.infer(batch), OnnxRuntimeBackend(model_path).infer(batch), atol=1e-5)


def test_int8_qdq_runs_in_int8_and_is_checked_against_onnxruntime(tmp_path, rng):
    path = _qdq_onnx(tmp_path / "tiny.int8.onnx")
    backend = OpenVinoBackend(path, precision="f32")
    assert backend.int8 and backend.spec.precision == "int8"
    assert backend.check_cosine is not None and backend.check_cosine >= 0.999
    batch = _batch(rng, 4)
    assert min_row_cosine(backend.infer(batch), OnnxRuntimeBackend(path).infer(batch)) > 0.999
    with pytest.raises(ArtifactError, match=r"INT8 f32 embeddings differ from ONNX Runtime's run of the same Q/DQ"):
        OpenVinoBackend(path, precision="f32", min_cosine=1.0)


def test_check_false_skips_the_check(model_path):
    backend = OpenVinoBackend(model_path, precision="bf16", check=False)
    assert backend.check_cosine is None


# -- which backend Engine picks ----------------------------------------------------------------
def test_engine_picks_openvino_for_onnx_on_cpu(model_path, rng):
    assert backend_for_path(model_path) == "openvino"
    assert backend_for_path(model_path, "cpu") == "openvino"
    assert backend_for_path(model_path, "cuda") == "onnxruntime"
    assert backend_for_path(model_path, None, {"providers": ["CPUExecutionProvider"]}) == "onnxruntime"
    with Engine(model_path) as engine:
        assert isinstance(engine.backend, OpenVinoBackend)
        assert engine.max_batch == OpenVinoBackend.preferred_batch
    with Engine(model_path, backend="onnxruntime") as engine:
        assert isinstance(engine.backend, OnnxRuntimeBackend)
    with Engine(model_path, providers=["CPUExecutionProvider"]) as engine:
        assert isinstance(engine.backend, OnnxRuntimeBackend)
    with Engine(model_path, precision="f32", intra_op_threads=1) as engine:
        feats = engine.embed(person_like_crops(3))
        assert feats.shape == (3, SPEC.feature_dim)
        np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
