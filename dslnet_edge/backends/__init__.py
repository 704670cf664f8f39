"""Inference backends behind one small protocol (:class:`~dslnet_edge.backends.base.Backend`).

One module per backend; each imports its heavy library (onnxruntime, torch, tensorrt) only
when a backend is built, so importing this package stays cheap.

=====================  ===================================  =======================
suffix                 backend                              module
=====================  ===================================  =======================
``.onnx``              ONNX Runtime (CPU; CUDA/TensorRT EP)  ``onnxruntime_backend``
``.engine``/``.plan``  TensorRT + cuda-python (or pycuda)   ``tensorrt_backend``
``.pt``/``.pth``       PyTorch checkpoint (CPU/CUDA)        ``torch_backend``
=====================  ===================================  =======================
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from dslnet_edge.backends.base import (
    ArtifactError,
    ArtifactNotFoundError,
    Backend,
    BackendError,
)

__all__ = [
    "Backend",
    "BackendError",
    "ArtifactError",
    "ArtifactNotFoundError",
    "BACKENDS",
    "SUFFIXES",
    "backend_for_path",
    "backend_class",
    "read_onnx_spec",
]

#: backend name -> (module, class); a plain dict, so where a backend is built stays visible
BACKENDS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("dslnet_edge.backends.onnxruntime_backend", "OnnxRuntimeBackend"),
    "tensorrt": ("dslnet_edge.backends.tensorrt_backend", "TensorRTBackend"),
    "torch": ("dslnet_edge.backends.torch_backend", "TorchBackend"),
    "triton": ("dslnet_edge.backends.triton_client_backend", "TritonClientBackend"),  # grpc:// or http:// URLs
}

#: file suffix -> backend name
SUFFIXES: dict[str, str] = {
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".pt": "torch",
    ".pth": "torch",
}


def backend_for_path(path: str | os.PathLike) -> str:
    """The backend name for a model file, from its suffix (a ``grpc://``/``http://`` URL: Triton); ``ValueError`` otherwise."""
    if str(path).split("://", 1)[0] in ("grpc", "http") and "://" in str(path):
        return "triton"
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(
            f"cannot tell which backend runs {path}: unknown suffix {suffix or '(none)'!r}; expected one of "
            f"{sorted(SUFFIXES)} (.engine/.plan: TensorRT, .onnx: ONNX Runtime, .pt: PyTorch checkpoint); "
            f"from Python, Engine(path, backend=...) with one of {sorted(BACKENDS)} overrides the suffix"
        )
    return SUFFIXES[suffix]


def backend_class(name: str) -> type[Backend]:
    """Import and return the backend class registered under ``name``."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    module, cls = BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def read_onnx_spec(path: str | os.PathLike):
    """The :class:`~dslnet_edge.spec.InputSpec` stored in an ONNX file's metadata (see onnxruntime_backend)."""
    from dslnet_edge.backends.onnxruntime_backend import read_onnx_spec as _read

    return _read(path)
