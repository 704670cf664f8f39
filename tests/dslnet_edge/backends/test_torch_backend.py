"""PyTorch backend, and agreement of the ONNX Runtime and PyTorch backends on the same crops.

A small random-init DSLNet (64x32 input, for speed) is saved as an fp16 inference-only
checkpoint, loaded back, exported with ``export.onnx.export_onnx`` and compared with the one
parity function, :func:`dslnet_edge.comparison.compare`.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch backend tests need torch (the 'train' extra)")

from testutils import random_crops  # noqa: E402

from dslnet_edge.backends import ArtifactNotFoundError, BackendError  # noqa: E402
from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from dslnet_edge.backends.torch_backend import TorchBackend  # noqa: E402
from dslnet_edge.comparison import compare  # noqa: E402
from dslnet_edge.engine import Engine  # noqa: E402
from dslnet_edge.model import build_dslnet  # noqa: E402
from dslnet_edge.model.checkpoint import CheckpointError, load_model, save_checkpoint  # noqa: E402
from dslnet_edge.preprocessing import preprocess  # noqa: E402
from dslnet_edge.spec import InputSpec  # noqa: E402

SPEC = InputSpec(height=64, width=32)


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    """(checkpoint, onnx) of the same weights: the ONNX is exported from the reloaded checkpoint."""
    export_onnx = pytest.importorskip("export.onnx", reason="export.onnx (the export agent's module) is not there").export_onnx
    folder = tmp_path_factory.mktemp("torch_backend")
    torch.manual_seed(0)
    model = build_dslnet(num_classes=7, spec=SPEC)
    checkpoint = save_checkpoint(folder / "tiny.pt", model, inference_only=True, half=True)
    onnx_path = export_onnx(load_model(checkpoint), folder / "tiny.onnx")
    return checkpoint, onnx_path


def test_checkpoint_backend_reads_its_spec(artefacts, rng):
    checkpoint, _ = artefacts
    backend = TorchBackend(checkpoint, max_batch=4)
    assert backend.spec == SPEC and backend.max_batch == 4
    out = backend.infer(preprocess(random_crops(rng, 3), SPEC))
    assert out.shape == (3, 512) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="exceeds the model's max batch 4"):
        backend.infer(preprocess(random_crops(rng, 5), SPEC))


def test_onnxruntime_and_torch_backends_agree(artefacts, rng):
    checkpoint, onnx_path = artefacts
    torch_backend, ort_backend = TorchBackend(checkpoint), OnnxRuntimeBackend(onnx_path)
    assert torch_backend.spec == ort_backend.spec == SPEC
    batches = [preprocess(random_crops(rng, n), SPEC) for n in (1, 5)]
    result = compare({"torch": torch_backend.infer, "onnxruntime": ort_backend.infer}, batches, label="onnx vs torch")
    assert result.passed, result.format()
    assert result.num_samples == 6


def test_engines_agree_end_to_end_on_crops(artefacts, rng):
    checkpoint, onnx_path = artefacts
    crops = random_crops(rng, 5)
    crops[1] = crops[1][..., 0]  # grayscale
    crops[2] = np.dstack([crops[2], np.full(crops[2].shape[:2], 255, np.uint8)])  # BGRA
    with Engine(checkpoint, max_batch=2) as by_torch, Engine(onnx_path, backend="onnxruntime") as by_onnx:  # FP32 parity
        assert type(by_torch.backend).__name__ == "TorchBackend"
        a, b = by_torch.embed(crops), by_onnx.embed(crops)
    cosine = np.sum(a * b, axis=1)
    assert cosine.min() > 0.9999, cosine
    assert np.abs(a - b).max() < 1e-4


def test_from_model_wraps_a_model_in_memory(artefacts, rng):
    checkpoint, _ = artefacts
    model = load_model(checkpoint)
    batch = preprocess(random_crops(rng, 2), SPEC)
    np.testing.assert_allclose(TorchBackend.from_model(model).infer(batch), TorchBackend(checkpoint).infer(batch), atol=1e-6)
    assert not model.training
    # channels-last input (what training's evaluation feeds): the same embeddings
    fast = TorchBackend.from_model(model.to(memory_format=torch.channels_last), channels_last=True)
    np.testing.assert_allclose(fast.infer(batch), TorchBackend(checkpoint).infer(batch), atol=1e-5)


def test_bad_checkpoints_and_devices(tmp_path, artefacts):
    with pytest.raises(ArtifactNotFoundError, match="missing.pt does not exist"):
        TorchBackend(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="junk.pt could not be read"):
        TorchBackend(tmp_path / "junk.pt")
    checkpoint, _ = artefacts
    with pytest.raises(ValueError, match="not a torch device"):
        TorchBackend(checkpoint, device="gpu7")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="torch sees no CUDA GPU"):
            TorchBackend(checkpoint, device="cuda")
