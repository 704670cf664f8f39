"""The one small protocol every inference backend implements (Polygraphy's runners are the model).

A backend owns one loaded model artefact and turns a preprocessed batch into embeddings::

    backend.spec        # InputSpec read from the artefact (never hard-coded)
    backend.max_batch   # largest batch one infer() call accepts (engine profile), or None
    backend.infer(batch)  # float32 [N, 3, H, W] raw 0-255 pixels -> float32 [N, D]
    backend.close()

Everything else (cropping, preprocessing, sub-batching, L2 normalization, NaN checks) lives once
in :class:`dslnet_edge.engine.Engine`, so a new backend is a short module. Heavy libraries
(onnxruntime, torch, tensorrt, cuda-python) are imported inside the backend modules' functions,
never at ``import dslnet_edge`` time.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import numpy as np

from dslnet_edge.errors import DslnetError
from dslnet_edge.spec import InputSpec

__all__ = [
    "Backend",
    "BackendError",
    "ArtifactError",
    "ArtifactNotFoundError",
    "check_batch",
    "check_output",
]


class BackendError(DslnetError, RuntimeError):
    """A backend cannot run here: its library is missing, or the requested device/provider is not available."""


class ArtifactError(DslnetError, ValueError):
    """A model file that cannot be used: corrupt, missing metadata, or built for another TensorRT/GPU."""


class ArtifactNotFoundError(ArtifactError, FileNotFoundError):
    """A model file (or its sidecar) that does not exist. Catchable as ``FileNotFoundError`` too."""


class Backend(abc.ABC):
    """Base class of the inference backends.

    Subclasses set ``spec``, ``max_batch`` and ``source`` in ``__init__`` and implement :meth:`_infer`
    and :meth:`close`. :meth:`infer` is a template, as Polygraphy's runners are: it checks the batch
    (:func:`check_batch`), runs :meth:`_infer`, and checks and converts what came back
    (:func:`check_output`), so every backend refuses and reports the same way. ``thread_safe`` says whether several threads may call :meth:`infer` at once
    (ONNX Runtime sessions may; a TensorRT execution context with its reused buffers may not, so
    :class:`~dslnet_edge.engine.Engine` serializes calls for it).
    """

    #: short name used in messages and by ``Engine(backend=...)``
    name: ClassVar[str] = "backend"
    #: whether concurrent infer() calls are safe
    thread_safe: ClassVar[bool] = True

    spec: InputSpec
    max_batch: int | None
    #: where the model came from (a path, or a description), for error messages
    source: str

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on ``batch`` (float32 ``[N, 3, H, W]``, ``N <= max_batch``); return float32 ``[N, D]``."""
        check_batch(batch, self.spec, self.max_batch, source=self.source)
        return check_output(self._infer(batch), batch.shape[0], self.spec, source=self.source)

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """The backend's own run on a checked batch; returns ``[N, D]`` (any float dtype: :meth:`infer` converts)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the session/engine/device memory. Calling it twice is harmless."""

    def infer_all(self, batch: np.ndarray) -> np.ndarray:
        """:meth:`infer` on a batch of any size, in slices of at most ``max_batch`` (a fixed-batch
        graph, an engine profile); a plain call when there is no limit. For checks and
        evaluation; :class:`~dslnet_edge.engine.Engine` does its own sub-batching with buffers."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        step = self.max_batch or len(batch)
        if len(batch) <= step:
            return self.infer(batch)
        return np.concatenate([self.infer(batch[i : i + step]) for i in range(0, len(batch), step)])

    def input_buffer(self, n: int) -> np.ndarray | None:
        """A float32 ``[>=n, 3, H, W]`` host buffer that :meth:`infer` reads without a copy, or None.

        The TensorRT backend returns its pinned (page-locked) host buffer here so that
        :func:`dslnet_edge.preprocessing.preprocess` writes straight into it (``out=``).
        """
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, max_batch={self.max_batch})"


def check_batch(batch: np.ndarray, spec: InputSpec, max_batch: int | None, *, source: str) -> None:
    """Refuse a batch a backend must not be given (a programming error upstream, named clearly)."""
    if not isinstance(batch, np.ndarray) or batch.dtype != np.float32:
        kind = f"dtype {batch.dtype}" if isinstance(batch, np.ndarray) else type(batch).__name__
        raise ValueError(f"{source}: batch must be a float32 numpy array [N, 3, H, W], got {kind}")
    expected = (3, spec.height, spec.width)
    if batch.ndim != 4 or batch.shape[1:] != expected:
        raise ValueError(f"{source}: batch has shape {batch.shape}; the model takes [N, {', '.join(map(str, expected))}]")
    if batch.shape[0] < 1:
        raise ValueError(f"{source}: batch is empty")
    if max_batch is not None and batch.shape[0] > max_batch:
        raise ValueError(f"{source}: batch of {batch.shape[0]} exceeds the model's max batch {max_batch}")


def check_output(output: np.ndarray, n: int, spec: InputSpec, *, source: str) -> np.ndarray:
    """The backend's raw output as float32 ``[n, D]``; a wrong shape names the artefact."""
    output = np.asarray(output)
    if output.ndim != 2 or output.shape != (n, spec.feature_dim):
        raise ArtifactError(
            f"{source}: the model returned shape {output.shape}; its input spec promises [{n}, {spec.feature_dim}]"
        )
    return output.astype(np.float32, copy=False)
