"""Parity checks run on every export: the graph in ONNX Runtime against PyTorch (or another graph).

The comparison itself is :func:`dslnet_edge.comparison.compare` and the models run in the
runtime's own backends (:mod:`dslnet_edge.backends`: PyTorch, ONNX Runtime from a file or from
memory, TensorRT); this module only brings the inputs (random 0-255 images and, when available,
real person crops through the one preprocessing function :func:`dslnet_edge.preprocessing.preprocess`)
and :func:`backend_runner`, which hands a backend to ``compare`` under the graph's output name.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from dslnet_edge.comparison import ComparisonResult, Tolerances, compare
from dslnet_edge.images import IMAGE_SUFFIXES, is_image_file, read_image
from dslnet_edge.spec import InputSpec
from export.contract import OUTPUT_NAME, random_images

if TYPE_CHECKING:
    from dslnet_edge.backends.base import Backend
    from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dslnet_edge.backends.torch_backend import TorchBackend
    from dslnet_edge.model import DSLNet

__all__ = [
    "FP32_TOLERANCES",
    "ParityReport",
    "default_crops_dir",
    "load_crops",
    "backend_runner",
    "torch_backend",
    "ort_backend",
    "parity_inputs",
    "check_parity",
]

#: FP32 ONNX Runtime vs PyTorch: the same maths in the same precision. Measured on the full-size
#: model: max|diff| ~1e-7 and cosine 1 - 1e-12; these bounds leave two orders of magnitude.
FP32_TOLERANCES = Tolerances(max_abs=1e-4, min_cosine=0.99999)


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """Parity on random inputs and (when crops were found) on real crops."""

    random: ComparisonResult
    real: ComparisonResult | None
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.random.passed and (self.real is None or self.real.passed)

    @property
    def results(self) -> tuple[ComparisonResult, ...]:
        return (self.random,) if self.real is None else (self.random, self.real)

    def format(self) -> str:
        lines = [r.format() for r in self.results]
        if self.note:
            lines.append(f"note: {self.note}")
        return "\n".join(lines)

    def summary(self) -> str:
        return " | ".join(r.summary() for r in self.results)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "results": [r.to_dict() for r in self.results], "note": self.note}


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
def default_crops_dir() -> Path | None:
    """CUHK03 query crops from ``$DSLNET_DATA`` or ``../shared/data`` beside the checkout, if present."""
    repo = Path(__file__).resolve().parents[1]
    for root in (os.environ.get("DSLNET_DATA"), repo.parent / "shared" / "data", repo / "shared" / "data"):
        if root and Path(root, "cuhk03-pair1", "query").is_dir():
            return Path(root, "cuhk03-pair1", "query")
    return None


def load_crops(folder: str | os.PathLike, limit: int) -> list[np.ndarray]:
    """Up to ``limit`` images (sorted by name, so runs are repeatable) from ``folder`` as BGR uint8."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"crops folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if is_image_file(p))
    if not files:
        raise FileNotFoundError(f"crops folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [read_image(path) for path in files[:limit]]


def parity_inputs(
    spec: InputSpec,
    *,
    num_random: int = 4,
    crops_dir: str | os.PathLike | None = None,
    num_crops: int = 8,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(random batch, real batch or None, note saying why real crops are missing)."""
    from dslnet_edge.preprocessing import preprocess

    if num_random < 1:
        raise ValueError(f"num_random must be >= 1, got {num_random}")
    rand = random_images(spec, num_random, seed=seed)
    if crops_dir is None:
        crops_dir = default_crops_dir()
        if crops_dir is None:
            return rand, None, (
                "real crops not found (set DSLNET_DATA or pass --crops DIR); parity checked on random inputs only"
            )
    if num_crops < 1:
        return rand, None, "real-crop parity switched off (num_crops=0)"
    crops = load_crops(crops_dir, num_crops)
    return rand, preprocess(crops, spec), ""


# ---------------------------------------------------------------------------------------------
# the models, run by the runtime's backends
# ---------------------------------------------------------------------------------------------
def backend_runner(backend: Backend) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """``backend`` as a :func:`~dslnet_edge.comparison.compare` runner: its embeddings under the graph's
    output name, in sub-batches of its ``max_batch`` (a fixed-batch graph or a TensorRT profile)."""

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        return {OUTPUT_NAME: backend.infer_all(batch)}

    return run


def torch_backend(model: DSLNet) -> TorchBackend:
    """The PyTorch backend on an in-memory model (eval mode, on the device its weights are on)."""
    from dslnet_edge.backends.torch_backend import TorchBackend

    return TorchBackend.from_model(model, device=str(next(model.parameters()).device), source="the PyTorch model")


def ort_backend(
    model: str | os.PathLike | bytes | onnx.ModelProto, *, custom_ops: bool = False, threads: int = 0
) -> OnnxRuntimeBackend:
    """The ONNX Runtime CPU backend on a file or an in-memory model.

    ``custom_ops`` registers onnxruntime-extensions' custom-op library (the CSS plugin's reference op).
    """
    from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    libraries = []
    if custom_ops:
        from onnxruntime_extensions import get_library_path

        libraries.append(get_library_path())
    options = {"device": "cpu", "intra_op_threads": threads or None, "custom_ops_libraries": libraries}
    if isinstance(model, (bytes, onnx.ModelProto)):
        return OnnxRuntimeBackend.from_model(model, **options)
    return OnnxRuntimeBackend(model, **options)


# ---------------------------------------------------------------------------------------------
# the check
# ---------------------------------------------------------------------------------------------
def check_parity(
    runners: dict[str, Callable[[np.ndarray], dict[str, np.ndarray]]],
    spec: InputSpec,
    *,
    tolerances: Tolerances = FP32_TOLERANCES,
    label: str = "parity",
    num_random: int = 4,
    crops_dir: str | os.PathLike | None = None,
    num_crops: int = 8,
    reference: str | None = None,
) -> ParityReport:
    """Compare ``runners`` (the first, or ``reference``, is the reference) on random and real inputs."""
    rand, real, note = parity_inputs(spec, num_random=num_random, crops_dir=crops_dir, num_crops=num_crops)
    random_result = compare(runners, rand, reference=reference, tolerances=tolerances, label=f"{label} (random inputs)")
    real_result = None
    if real is not None:
        real_result = compare(runners, real, reference=reference, tolerances=tolerances, label=f"{label} (real crops)")
    return ParityReport(random_result, real_result, note)

