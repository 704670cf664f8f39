"""The graph contract every exported DSLNet ONNX keeps: tensor names, batch dimension, opset, errors.

One place for what the exporter (:mod:`export.onnx`), its flavours (:mod:`export.plugin.graph`,
:mod:`export.precision`), the parity checks (:mod:`export.parity`) and the engine build agree on.
It imports nothing of the project but :mod:`dslnet_edge.spec`, so any of them can use it without
importing another.
"""

from __future__ import annotations

import numpy as np

from dslnet_edge.errors import DslnetError
from dslnet_edge.spec import InputSpec

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "BATCH_DIM",
    "DEFAULT_OPSET",
    "PRODUCER",
    "ExportError",
    "ParityError",
    "random_images",
]

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
BATCH_DIM = "N"
#: Opset 17: the newest that TensorRT 10.3 (JetPack 6) parses fully and ONNX Runtime >= 1.17 runs.
DEFAULT_OPSET = 17
PRODUCER = "dslnet_edge.export"


class ExportError(DslnetError, RuntimeError):
    """Export could not produce a valid graph (or a graph failed its checks)."""


class ParityError(ExportError):
    """An exported graph disagrees with its reference beyond the tolerances."""


def random_images(spec: InputSpec, batch: int, *, seed: int = 0) -> np.ndarray:
    """``batch`` random 0-255 float32 images in the model's input layout (for parity checks)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 255.0, size=(batch, *spec.input_shape)).astype(np.float32)
