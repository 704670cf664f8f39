"""Engine: backend choice, sub-batching, normalization, bad inputs (incl. property-based), threads.

Runs real ONNX Runtime sessions (and OpenVINO, the CPU default for ``.onnx`` when installed) on
tiny real ONNX files (``testutils.tiny_embedding_onnx``).
"""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from testutils import random_crops, tiny_embedding_onnx

from dslnet_edge.backends import ArtifactNotFoundError, backend_for_path
from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from dslnet_edge.backends.openvino_backend import openvino_available
from dslnet_edge.engine import DEFAULT_CHUNK, EmbeddingError, Engine
from dslnet_edge.preprocessing import preprocess
from dslnet_edge.spec import InputSpec
from dslnet_edge.weights import DEMO_ONNX

SPEC = InputSpec(height=16, width=8, feature_dim=32)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_embedding_onnx(tmp_path_factory.mktemp("engine") / "tiny.onnx", SPEC)


class RecordingBackend(OnnxRuntimeBackend):
    """The real ONNX Runtime backend, remembering the batch sizes it was given."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch_sizes: list[int] = []

    def infer(self, batch):
        self.batch_sizes.append(len(batch))
        return super().infer(batch)


# -- choosing the backend ----------------------------------------------------------------------
_CPU_ONNX = "openvino" if openvino_available() else "onnxruntime"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("m.onnx", _CPU_ONNX),
        ("m.ONNX", _CPU_ONNX),
        ("m.xml", "openvino"),
        ("m.engine", "tensorrt"),
        ("m.plan", "tensorrt"),
        ("m.pt", "torch"),
        ("m.pth", "torch"),
        ("m.tflite", ValueError),
        ("model", ValueError),
    ],
)
def test_backend_is_chosen_by_suffix(name, expected):
    if expected is ValueError:
        with pytest.raises(ValueError, match=r"unknown suffix.*\.engine"):
            backend_for_path(name)
    else:
        assert backend_for_path(name) == expected


@pytest.mark.parametrize(
    ("device", "options", "expected"),
    [
        (None, {}, _CPU_ONNX),
        ("cpu", {"intra_op_threads": 1}, _CPU_ONNX),
        ("CPU", {}, _CPU_ONNX),
        ("cuda", {}, "onnxruntime"),
        ("cuda:1", {}, "onnxruntime"),
        ("tensorrt", {}, "onnxruntime"),
        (None, {"providers": ["CPUExecutionProvider"]}, "onnxruntime"),
        ("cpu", {"inter_op_threads": 1}, "onnxruntime"),
    ],
)
def test_onnx_backend_depends_on_device_and_options(device, options, expected):
    assert backend_for_path("m.onnx", device, options) == expected


def test_default_engine_names_the_missing_demo_weights():
    if DEMO_ONNX.exists():
        with Engine() as engine:
            assert engine.backend.name == _CPU_ONNX
        return
    with pytest.raises(FileNotFoundError, match=r"dslnet_cuhk03\.onnx are not there"):
        Engine()


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(ArtifactNotFoundError, match="nothing.onnx does not exist"):
        Engine(tmp_path / "nothing.onnx")
    with pytest.raises(FileNotFoundError):  # also catchable as FileNotFoundError
        Engine(tmp_path / "nothing.onnx")


def test_backend_override_and_ready_backend(model_path, tmp_path):
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(model_path.read_bytes())
    with Engine(renamed, backend="onnxruntime") as engine:
        assert engine.spec == SPEC
    backend = OnnxRuntimeBackend(model_path)
    assert Engine(backend=backend).backend is backend
    with pytest.raises(ValueError, match="either a ready Backend instance or a path"):
        Engine(model_path, backend=backend)
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        Engine(model_path, backend="tflite")


# -- embedding ---------------------------------------------------------------------------------
def test_embed_returns_unit_float32_rows_matching_the_backend(model_path, rng):
    engine = Engine(model_path)
    crops = random_crops(rng, 5)
    out = engine.embed(crops)
    assert out.shape == (5, SPEC.feature_dim) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    direct = engine.backend.infer(preprocess(crops, SPEC))
    np.testing.assert_allclose(out, direct, atol=1e-6)
    assert engine(crops).shape == out.shape  # callable


def test_empty_list_gives_an_empty_array(model_path):
    out = Engine(model_path).embed([])
    assert out.shape == (0, SPEC.feature_dim) and out.dtype == np.float32


def test_large_batches_are_split_small_ones_are_not_padded(model_path, rng):
    backend = RecordingBackend(model_path, max_batch=4)
    engine = Engine(backend=backend)
    crops = random_crops(rng, 10)
    split = engine.embed(crops)
    assert backend.batch_sizes == [4, 4, 2]
    backend.batch_sizes.clear()
    engine.embed(crops[:3])
    assert backend.batch_sizes == [3]
    np.testing.assert_allclose(split, Engine(model_path, backend="onnxruntime").embed(crops), atol=1e-6)


def test_engine_max_batch_caps_the_backend_and_defaults_to_the_preferred_batch(model_path, rng):
    engine = Engine(model_path)
    assert engine.max_batch == type(engine.backend).preferred_batch == 8  # measured per backend (issue 14)
    assert Engine(model_path, max_batch=3).max_batch == 3
    assert Engine(model_path, max_batch=100).max_batch == 100  # the caller's choice beats the preference
    backend = RecordingBackend(model_path)
    Engine(backend=backend).embed(random_crops(rng, 19, max_hw=(40, 20)))
    assert backend.batch_sizes == [8, 8, 3]
    backend = RecordingBackend(model_path)
    backend.preferred_batch = None  # a backend without a measured preference: one bounded chunk
    Engine(backend=backend).embed(random_crops(rng, DEFAULT_CHUNK + 1, max_hw=(40, 20)))
    assert backend.batch_sizes == [DEFAULT_CHUNK, 1]
    with pytest.raises(ValueError, match="max_batch must be a positive integer"):
        Engine(model_path, max_batch=0)


def test_nhwc_array_input(model_path, rng):
    stack = rng.integers(0, 256, (3, 30, 15, 3), dtype=np.uint8)
    engine = Engine(model_path)
    np.testing.assert_allclose(engine.embed(stack), engine.embed(list(stack)), atol=0)


def test_unnormalized_model_output_is_normalized(tmp_path, rng):
    raw = Engine(tiny_embedding_onnx(tmp_path / "raw.onnx", SPEC, normalize=False), backend="onnxruntime")
    unit = Engine(tiny_embedding_onnx(tmp_path / "unit.onnx", SPEC, normalize=True), backend="onnxruntime")
    crops = random_crops(rng, 3)
    assert np.linalg.norm(raw.backend.infer(preprocess(crops, SPEC)), axis=1).max() > 2  # the model really is raw
    np.testing.assert_allclose(raw.embed(crops), unit.embed(crops), atol=1e-6)


@pytest.mark.parametrize(("scale", "error"), [(float("nan"), "NaN/inf embeddings"), (0.0, "all-zero embeddings")])
def test_broken_outputs_are_refused_naming_the_crops(tmp_path, rng, scale, error):
    engine = Engine(tiny_embedding_onnx(tmp_path / "broken.onnx", SPEC, scale=scale, normalize=False), max_batch=2)
    with pytest.raises(EmbeddingError, match=rf"broken\.onnx returned {error} for crop\(s\) \[0, 1\]"):
        engine.embed(random_crops(rng, 3))


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (None, "crop 5 is None"),
        (np.zeros((0, 10, 3), np.uint8), r"crop 5 is empty"),
        (np.zeros((10, 10, 3), np.float32), "crop 5 has dtype float32"),
        (np.zeros((10, 10, 2), np.uint8), r"crop 5 has shape \(10, 10, 2\)"),
        ([[1, 2, 3]], "crop 5 is a list"),
    ],
)
def test_bad_crop_errors_name_the_callers_index_across_chunks(model_path, rng, bad, error):
    engine = Engine(model_path, max_batch=2)  # index 5 sits in the third chunk
    crops = random_crops(rng, 7)
    crops[5] = bad
    with pytest.raises(ValueError, match=error):
        engine.embed(crops)


def test_not_a_list_is_refused(model_path):
    with pytest.raises(ValueError, match="crops must be a list"):
        Engine(model_path).embed("crop.jpg")


def test_closed_engine_refuses_work(model_path, rng):
    with Engine(model_path) as engine:
        engine.embed(random_crops(rng, 1))
    with pytest.raises(RuntimeError, match="closed"):
        engine.embed(random_crops(rng, 1))
    engine.close()


# -- property-based: any list of "crops" gives embeddings or a ValueError naming the first bad one
def _is_valid_crop(crop) -> bool:
    """The contract, restated independently of preprocess."""
    if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8:
        return False
    if crop.ndim == 2:
        return crop.shape[0] > 0 and crop.shape[1] > 0
    return crop.ndim == 3 and crop.shape[2] in (1, 3, 4) and crop.shape[0] > 0 and crop.shape[1] > 0


_valid_crops = arrays(
    np.uint8,
    st.one_of(
        st.tuples(st.integers(1, 24), st.integers(1, 24)),
        st.tuples(st.integers(1, 24), st.integers(1, 24), st.sampled_from([1, 3, 4])),
    ),
)
_odd_crops = st.one_of(
    st.none(),
    arrays(st.sampled_from([np.float32, np.int16, np.bool_, np.uint16]), st.tuples(st.integers(1, 8), st.integers(1, 8), st.just(3))),
    arrays(np.uint8, st.tuples(st.integers(0, 6), st.integers(0, 6), st.integers(0, 6))),
    arrays(np.uint8, st.one_of(st.tuples(st.integers(0, 5)), st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)))),
    st.lists(st.integers(0, 255), max_size=3),
    st.text(max_size=3),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(crops=st.lists(st.one_of(_valid_crops, _valid_crops, _odd_crops), max_size=7))
def test_property_embeddings_or_value_error_naming_the_index(model_path, crops):
    engine = Engine(model_path, max_batch=3)
    bad = [i for i, c in enumerate(crops) if not _is_valid_crop(c)]
    if bad:
        with pytest.raises(ValueError, match=rf"^crop {bad[0]} "):
            engine.embed(crops)
    else:
        out = engine.embed(crops)
        assert out.shape == (len(crops), SPEC.feature_dim) and out.dtype == np.float32
        assert np.isfinite(out).all()
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


# -- threads -------------------------------------------------------------------------------------
def test_concurrent_embeds_equal_serial(model_path, rng):
    engine = Engine(model_path, max_batch=4)
    work = [random_crops(np.random.default_rng(seed), 6, max_hw=(60, 30)) for seed in range(8)]
    serial = [engine.embed(crops) for crops in work]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def run(i):
        try:
            results[i] = engine.embed(work[i])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, expected in enumerate(serial):
        np.testing.assert_allclose(results[i], expected, atol=1e-6)


# -- import weight ---------------------------------------------------------------------------------
def test_runtime_modules_import_no_heavy_library():
    code = (
        "import sys\n"
        "import dslnet_edge, dslnet_edge.engine, dslnet_edge.matcher, dslnet_edge.gallery, dslnet_edge.threshold\n"
        "import dslnet_edge.backends, dslnet_edge.backends.onnxruntime_backend, dslnet_edge.backends.torch_backend\n"
        "import dslnet_edge.backends.tensorrt_backend, dslnet_edge.weights\n"
        "dslnet_edge.Engine, dslnet_edge.Matcher, dslnet_edge.Match, dslnet_edge.Gallery\n"
        "heavy = [m for m in ('torch', 'tensorrt', 'onnxruntime', 'onnx', 'faiss', 'pycuda', 'cuda.bindings') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
