"""``Engine``: person crops in, L2-normalized embeddings out, on whichever backend the model file needs.

::

    engine = dslnet_edge.Engine()                    # bundled demo ONNX on the CPU (OpenVINO, else ONNX Runtime)
    engine = dslnet_edge.Engine("model.engine")      # TensorRT (sidecar model.engine.json beside it)
    engine = dslnet_edge.Engine("model.onnx", device="cuda")
    features = engine.embed(crops)                   # float32 [N, D], unit rows

The engine owns what every backend shares, once: validating crops (``ValueError`` naming the
index), :func:`dslnet_edge.preprocessing.preprocess` per the artefact's InputSpec, splitting
batches larger than the backend's max batch (smaller ones go through as they are, unpadded),
refusing NaN/inf or all-zero embeddings, and L2 normalization (applied even when the model
promises it: it costs nothing and keeps cosine = dot product exact downstream).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dslnet_edge._checks import positive_int
from dslnet_edge.backends import Backend, backend_class, backend_for_path
from dslnet_edge.errors import DslnetError
from dslnet_edge.preprocessing import preprocess, validate_crop
from dslnet_edge.spec import InputSpec

__all__ = ["Engine", "EmbeddingError", "DEFAULT_CHUNK"]

#: Batch size used when the backend sets no limit and names no ``preferred_batch`` (the batch
#: its measurements favour): bounds the memory of one preprocessed chunk (64 x 3 x 256 x 128
#: float32 = 25 MB) however many crops a call brings.
DEFAULT_CHUNK = 64


class EmbeddingError(DslnetError, ValueError):
    """The model returned embeddings that cannot be used (NaN/inf, or all zeros)."""


class Engine:
    """A loaded DSLNet on one backend.

    Args:
        path: ``.onnx`` (on the CPU OpenVINO when installed, else ONNX Runtime; see
            :func:`~dslnet_edge.backends.backend_for_path`), ``.xml`` (OpenVINO IR),
            ``.engine``/``.plan`` (TensorRT) or ``.pt`` (PyTorch).
            None: the bundled demo ONNX ``dslnet_edge/weights/dslnet_cuhk03.onnx`` on the CPU.
        backend: a backend name (``"openvino"``, ``"onnxruntime"``, ``"tensorrt"``, ``"torch"``)
            overriding the suffix, or a ready :class:`~dslnet_edge.backends.Backend` instance (then ``path`` is None).
        device: ``"cpu"``, ``"cuda"``/``"cuda:N"`` (``"tensorrt[:N]"``: ONNX Runtime's TensorRT
            provider). TensorRT engines default to ``"cuda"``.
        max_batch: largest batch per backend call; capped by the engine's own profile. None: the
            backend's measured ``preferred_batch`` (else 64).
        **backend_options: passed to the backend (``providers=``, ``intra_op_threads=``, ...).
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        backend: str | Backend | None = None,
        device: str | None = None,
        max_batch: int | None = None,
        **backend_options,
    ):
        if isinstance(backend, Backend):
            if path is not None or backend_options:
                raise ValueError("pass either a ready Backend instance or a path (with options), not both")
            self._backend = backend
        else:
            self._backend = _build_backend(path, backend, device, max_batch, backend_options)
        self._spec = self._backend.spec
        limit = self._backend.max_batch
        if max_batch is not None:
            max_batch = positive_int(max_batch, "max_batch", hint=" or None")
            limit = max_batch if limit is None else min(limit, max_batch)
        if limit is None:
            limit = getattr(self._backend, "preferred_batch", None) or DEFAULT_CHUNK
        self.max_batch = limit
        # Backends that reuse buffers (TensorRT) must not run two calls at once.
        self._lock = contextlib.nullcontext() if self._backend.thread_safe else threading.Lock()
        self._closed = False

    # -- properties --------------------------------------------------------------------------
    @property
    def spec(self) -> InputSpec:
        """The input contract read from the model artefact."""
        return self._spec

    @property
    def feature_dim(self) -> int:
        return self._spec.feature_dim

    @property
    def backend(self) -> Backend:
        return self._backend

    # -- the work ----------------------------------------------------------------------------
    def embed(self, crops: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Embed person crops.

        Args:
            crops: a list of ``HxWx3`` uint8 BGR crops (grayscale and BGRA are converted), or one
                ``NxHxWx3`` uint8 array.

        Returns:
            float32 ``[N, feature_dim]`` with unit-length rows; ``(0, feature_dim)`` for no crops.

        Raises:
            ValueError: a crop is None, empty, not uint8 or wrongly shaped (the message names its index).
            EmbeddingError: the model produced NaN/inf or all-zero embeddings (names the crops).
        """
        if self._closed:
            raise RuntimeError("this Engine is closed")
        if isinstance(crops, np.ndarray) and crops.ndim == 4:
            crops = list(crops)
        if not isinstance(crops, (list, tuple)):
            raise ValueError(f"crops must be a list of HxWx3 uint8 arrays, got {type(crops).__name__}")
        for i, crop in enumerate(crops):  # every index checked up front, so errors name the caller's index
            validate_crop(crop, i)
        out = np.empty((len(crops), self.feature_dim), np.float32)
        for start in range(0, len(crops), self.max_batch):
            chunk = crops[start : start + self.max_batch]
            out[start : start + len(chunk)] = self._embed_chunk(chunk, start)
        return out

    __call__ = embed

    def _embed_chunk(self, chunk: Sequence[np.ndarray], offset: int) -> np.ndarray:
        with self._lock:
            buffer = self._backend.input_buffer(len(chunk))
            batch = preprocess(chunk, self._spec, out=buffer)
            raw = self._backend.infer(batch)
        return _normalize(raw, offset, self._backend.source)

    def close(self) -> None:
        """Release the backend (sessions, engines, GPU buffers)."""
        if not self._closed:
            self._closed = True
            self._backend.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Engine({self._backend!r}, spec={self._spec.height}x{self._spec.width}->{self.feature_dim}, max_batch={self.max_batch})"


def _build_backend(path, backend: str | None, device: str | None, max_batch: int | None, options: dict) -> Backend:
    if path is None:
        from dslnet_edge.weights import demo_weights

        path = demo_weights("onnx")  # FileNotFoundError naming the missing file
    path = path if "://" in str(path) else Path(path)  # a server URL (grpc://host:port/model) stays a string
    name = backend or backend_for_path(path, device, options)
    cls = backend_class(name)
    if device is not None:
        options["device"] = device
    return cls(path, max_batch=max_batch, **options)


def _normalize(raw: np.ndarray, offset: int, source: str) -> np.ndarray:
    """L2-normalize rows; refuse non-finite or zero rows (naming the crops, in the caller's numbering)."""
    bad = ~np.isfinite(raw).all(axis=1)
    if bad.any():
        idx = (np.flatnonzero(bad) + offset).tolist()
        raise EmbeddingError(
            f"{source} returned NaN/inf embeddings for crop(s) {idx[:10]}; the model or engine is broken "
            "(for example an FP16 overflow); check it against the FP32 ONNX with dslnet_edge.compare"
        )
    norms = np.linalg.norm(raw.astype(np.float64), axis=1)
    zero = norms < 1e-12
    if zero.any():
        idx = (np.flatnonzero(zero) + offset).tolist()
        raise EmbeddingError(f"{source} returned all-zero embeddings for crop(s) {idx[:10]}; they have no direction to compare")
    return (raw / norms[:, None]).astype(np.float32)
