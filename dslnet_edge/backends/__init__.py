"""Inference backends behind one small protocol (:class:`~dslnet_edge.backends.base.Backend`).

One module per backend; each imports its heavy library (onnxruntime, torch, tensorrt) only
when a backend is built, so importing this package stays cheap.

=====================  ===================================  =======================
suffix                 backend                              module
=====================  ===================================  =======================
``.onnx`` (CPU)        OpenVINO when installed, else ONNX   ``openvino_backend`` /
                       Runtime (see :func:`backend_for_path`) ``onnxruntime_backend``
``.onnx`` (GPU)        ONNX Runtime (CUDA/TensorRT EP)      ``onnxruntime_backend``
``.xml`` (+ ``.bin``)  OpenVINO IR                          ``openvino_backend``
``.engine``/``.plan``  TensorRT + cuda-python (or pycuda)   ``tensorrt_backend``
``.pt``/``.pth``       PyTorch checkpoint (CPU/CUDA)        ``torch_backend``
=====================  ===================================  =======================

Why OpenVINO for ``.onnx`` on the CPU: measured in one run on a 2-core AVX-512/BF16 EPYC with the
demo ONNX (README "CPU speed"), OpenVINO f32 ran ~1.6x and its bf16 ~2.8x ONNX Runtime FP32 at
batch 1, and bf16 passed the load-time check against f32 (min cosine 0.99999 on the check crops).
ONNX Runtime stays the default where OpenVINO is not installed, on GPU devices, and whenever an
ONNX Runtime-only option (``providers=``, ``inter_op_threads=``) is passed.
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
    "ORT_ONLY_OPTIONS",
    "backend_for_path",
    "backend_class",
    "read_onnx_spec",
]

#: backend name -> (module, class); a plain dict, so where a backend is built stays visible
BACKENDS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("dslnet_edge.backends.onnxruntime_backend", "OnnxRuntimeBackend"),
    "openvino": ("dslnet_edge.backends.openvino_backend", "OpenVinoBackend"),
    "tensorrt": ("dslnet_edge.backends.tensorrt_backend", "TensorRTBackend"),
    "torch": ("dslnet_edge.backends.torch_backend", "TorchBackend"),
    "triton": ("dslnet_edge.backends.triton_client_backend", "TritonClientBackend"),  # grpc:// or http:// URLs
}

#: file suffix -> backend name
SUFFIXES: dict[str, str] = {
    ".onnx": "onnxruntime",  # on the CPU: "openvino" when installed (backend_for_path)
    ".xml": "openvino",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".pt": "torch",
    ".pth": "torch",
}


#: options only the ONNX Runtime backend takes: passing one keeps a ``.onnx`` on ONNX Runtime
ORT_ONLY_OPTIONS = frozenset({"providers", "inter_op_threads"})


def backend_for_path(path: str | os.PathLike, device: str | None = None, options=()) -> str:
    """The backend name for a model file, from its suffix; ``ValueError`` listing the known suffixes.

    A ``grpc://``/``http://`` URL is a model on a Triton Inference Server. A ``.onnx`` on the CPU
    (``device`` None or ``"cpu"``) goes to OpenVINO when the ``openvino`` package is installed and no
    ONNX Runtime-only option (:data:`ORT_ONLY_OPTIONS`) is among ``options``; otherwise (GPU devices,
    no OpenVINO) to ONNX Runtime.
    """
    if str(path).split("://", 1)[0] in ("grpc", "http") and "://" in str(path):
        return "triton"
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(
            f"cannot tell which backend runs {path}: unknown suffix {suffix or '(none)'!r}; expected one of "
            f"{sorted(SUFFIXES)} (.engine/.plan: TensorRT, .onnx: OpenVINO or ONNX Runtime, .xml: OpenVINO IR, "
            ".pt: PyTorch checkpoint); "
            f"from Python, Engine(path, backend=...) with one of {sorted(BACKENDS)} overrides the suffix"
        )
    name = SUFFIXES[suffix]
    if name == "onnxruntime" and str(device or "cpu").lower() == "cpu" and not ORT_ONLY_OPTIONS & set(options):
        from dslnet_edge.backends.openvino_backend import openvino_available

        if openvino_available():
            return "openvino"
    return name


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
