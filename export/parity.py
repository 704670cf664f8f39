"""Parity checks run on every export: the graph in ONNX Runtime against PyTorch (or another graph).

The comparison itself is :func:`dslnet_edge.comparison.compare`; this module only brings the
runners (PyTorch, ONNX Runtime) and the inputs: random 0-255 images and, when available, real
person crops through the one preprocessing function :func:`dslnet_edge.preprocessing.preprocess`.
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
    from dslnet_edge.model import DSLNet

__all__ = [
    "FP32_TOLERANCES",
    "ParityReport",
    "default_crops_dir",
    "load_crops",
    "torch_runner",
    "ort_runner",
    "ort_session",
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
# runners
# ---------------------------------------------------------------------------------------------
def torch_runner(model: DSLNet, *, batch_size: int = 8) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """PyTorch eval-mode embeddings, on the model's device, in sub-batches."""
    import torch

    model.eval()
    param = next(model.parameters())

    def run(batch: np.ndarray) -> np.ndarray:
        outs = []
        with torch.no_grad():
            for start in range(0, len(batch), batch_size):
                x = torch.from_numpy(np.ascontiguousarray(batch[start : start + batch_size])).to(param.device, param.dtype)
                outs.append(model(x).float().cpu().numpy())
        return {OUTPUT_NAME: np.concatenate(outs)}

    return run


def ort_session(model: str | os.PathLike | bytes | onnx.ModelProto, *, custom_ops: bool = False, threads: int = 0):
    """A CPU ONNX Runtime session; ``custom_ops`` loads onnxruntime-extensions' custom-op library."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    if custom_ops:
        from onnxruntime_extensions import get_library_path

        options.register_custom_ops_library(get_library_path())
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif not isinstance(model, bytes):
        model = str(model)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def ort_runner(session, *, batch_size: int = 8) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Embeddings from an ONNX Runtime session (inputs cast to the graph's input type)."""
    (inp,) = session.get_inputs()
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32

    def run(batch: np.ndarray) -> np.ndarray:
        outs = []
        for start in range(0, len(batch), batch_size):
            x = np.ascontiguousarray(batch[start : start + batch_size], dtype=dtype)
            outs.append(session.run([OUTPUT_NAME], {inp.name: x})[0].astype(np.float32))
        return {OUTPUT_NAME: np.concatenate(outs)}

    return run


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

