"""ONNX Runtime backend: the embedded default (CPU), with CUDA/TensorRT execution providers on request.

The input contract is read from the ONNX ``metadata_props`` key ``dslnet_edge.input_spec``
(:func:`read_onnx_spec`, shared with the tools); the graph's own input/output shapes are checked
against it, so a model exported for 256x128 can never be fed 128x64 crops.

``onnxruntime`` is imported when a backend is built, not when this module is imported.
Session options used here are ONNX Runtime's documented Python API:
https://onnxruntime.ai/docs/api/python/api_summary.html (``SessionOptions.intra_op_num_threads``,
``InferenceSession(providers=...)``, ``get_modelmeta().custom_metadata_map``) and
https://onnxruntime.ai/docs/execution-providers/ (provider names and ``device_id`` options).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from dslnet_edge._checks import int_at_least, positive_int
from dslnet_edge.backends.base import (
    ArtifactError,
    ArtifactNotFoundError,
    Backend,
    BackendError,
)
from dslnet_edge.spec import SPEC_METADATA_KEY, InputSpec

__all__ = ["OnnxRuntimeBackend", "read_onnx_spec", "spec_from_metadata", "providers_for_device"]

Provider = str | tuple[str, Mapping[str, Any]]

_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_TRT = "TensorrtExecutionProvider"
#: ONNX Runtime log severity for our sessions: errors only. Its warnings on load (e.g. one line per
#: unused initializer, ~90 for a foreign export) would bury the one-line error or the result.
_QUIET = 3


def spec_from_metadata(metadata: Mapping[str, str], *, source: str) -> InputSpec:
    """The :class:`InputSpec` stored under ``dslnet_edge.input_spec`` in ONNX metadata; clear errors naming ``source``."""
    if SPEC_METADATA_KEY not in metadata:
        raise ArtifactError(
            f"{source} has no {SPEC_METADATA_KEY!r} entry in its ONNX metadata_props, so its input contract "
            "(size, channel order, feature dim) is unknown; export it with `python -m export.onnx`, which writes it"
        )
    try:
        return InputSpec.from_json(metadata[SPEC_METADATA_KEY])
    except ValueError as exc:
        raise ArtifactError(f"{source} has an invalid {SPEC_METADATA_KEY!r} metadata entry: {exc}") from None


def read_onnx_spec(path: str | os.PathLike) -> InputSpec:
    """Read the input contract of an ONNX file without running it.

    Uses the ``onnx`` package when installed (reads metadata only, so it also works on graphs
    with custom plugin nodes that ONNX Runtime cannot load), else ONNX Runtime's model metadata.
    Raises :class:`ArtifactNotFoundError` / :class:`ArtifactError` naming the file.
    """
    path = _existing_file(path, what="ONNX model")
    try:
        import onnx
    except ImportError:
        return _read_spec_with_onnxruntime(path)
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends carry no useful text
        raise ArtifactError(f"{path} is not a readable ONNX model (truncated or corrupt?): {type(exc).__name__}") from None
    if not proto.graph.node:
        raise ArtifactError(f"{path} is not a readable ONNX model (truncated or corrupt?): its graph has no nodes")
    return spec_from_metadata({p.key: p.value for p in proto.metadata_props}, source=str(path))


def _read_spec_with_onnxruntime(path: Path) -> InputSpec:
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = _QUIET
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = _create_session(ort, str(path), options, [_CPU], source=str(path))
    return spec_from_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))


def providers_for_device(device: str) -> list[Provider]:
    """ONNX Runtime providers for a device string: ``"cpu"``, ``"cuda"``/``"cuda:N"``, ``"tensorrt"``/``"tensorrt:N"``.

    GPU devices keep the CPU provider last, as ONNX Runtime recommends, for nodes the GPU
    providers do not take.
    """
    kind, _, index = str(device).lower().partition(":")
    if index and not index.isdigit():
        raise ValueError(f"device {device!r}: expected 'cpu', 'cuda', 'cuda:N', 'tensorrt' or 'tensorrt:N'")
    device_id = int(index or 0)
    if kind == "cpu" and not index:
        return [_CPU]
    if kind == "cuda":
        return [(_CUDA, {"device_id": device_id}), _CPU]
    if kind == "tensorrt":
        return [(_TRT, {"device_id": device_id}), (_CUDA, {"device_id": device_id}), _CPU]
    raise ValueError(f"device {device!r}: expected 'cpu', 'cuda', 'cuda:N', 'tensorrt' or 'tensorrt:N'")


class _InMemoryModel(NamedTuple):
    """What :meth:`OnnxRuntimeBackend.from_model` hands the constructor instead of a path."""

    data: bytes
    source: str


class OnnxRuntimeBackend(Backend):
    """One ``onnxruntime.InferenceSession`` on a dslnet_edge ONNX file.

    Args:
        path: the ``.onnx`` file (with the input contract in its metadata).
        device: ``"cpu"`` (default), ``"cuda[:N]"`` or ``"tensorrt[:N]"``; ignored when ``providers`` is given.
        providers: explicit ONNX Runtime providers (names or ``(name, options)`` tuples).
        intra_op_threads: threads inside one operator (ONNX Runtime's default: one per physical core).
        inter_op_threads: threads across operators (only used by the parallel execution mode).
        max_batch: largest batch per ``run`` call (None: no limit, except a fixed batch in the graph).
        spec: the input contract of a model whose file carries none (a foreign ONNX such as an
            OMZ peer); None: read it from the metadata (an error when absent).
        custom_ops_libraries: shared libraries of custom operators to register (e.g.
            onnxruntime-extensions' ``get_library_path()`` for a graph with Python reference ops).
        session_options: an ``onnxruntime.SessionOptions`` to use (the backend sets its log level,
            threads and custom op libraries on it).

    Use :meth:`from_model` for a model held in memory (an ``onnx.ModelProto`` or its bytes).
    """

    name = "onnxruntime"
    thread_safe = True  # InferenceSession.run may be called from several threads

    #: Engine's default batch (issue 14): on the 2-core AVX-512 EPYC, CPU FP32 with the demo ONNX
    #: ran 150/143/124 crops/s at batch 1/8/32 (issue 11) and 134/126/92 at 1/16/64 through
    #: Engine.embed (issue 14): larger batches are slower on this CPU. 8 stays within 5% of the
    #: best while keeping calls few. GPU providers keep Engine's DEFAULT_CHUNK (set in __init__).
    preferred_batch: int | None = 8

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "cpu",
        providers: Sequence[Provider] | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        max_batch: int | None = None,
        spec: InputSpec | None = None,
        custom_ops_libraries: Sequence[str | os.PathLike] = (),
        session_options=None,
    ):
        if isinstance(path, _InMemoryModel):  # from_model
            self.path, model, source = None, path.data, path.source
        else:
            self.path = _existing_file(path, what="ONNX model")
            model = source = str(self.path)
        if spec is not None and not isinstance(spec, InputSpec):
            raise TypeError(f"spec must be an InputSpec, got {type(spec).__name__}")
        self.source = source
        ort = _import_onnxruntime()
        requested = list(providers) if providers is not None else providers_for_device(device)
        _check_providers_available(ort, requested, source=self.source)
        options = session_options if session_options is not None else ort.SessionOptions()
        options.log_severity_level = _QUIET
        for library in custom_ops_libraries:
            options.register_custom_ops_library(str(library))
        for attr, value in (("intra_op_num_threads", intra_op_threads), ("inter_op_num_threads", inter_op_threads)):
            if value is not None:
                setattr(options, attr, int_at_least(value, attr.replace("_num", ""), 0, hint=" (0 = ONNX Runtime's default)"))
        self._session = _create_session(ort, model, options, requested, source=self.source)
        _check_providers_used(self._session, requested, source=self.source)
        self.providers = list(self._session.get_providers())
        if self.providers != [_CPU]:
            self.preferred_batch = None
        self.spec = spec or spec_from_metadata(self._session.get_modelmeta().custom_metadata_map, source=self.source)
        self._input, self._output, self._input_dtype, fixed_batch = self._check_graph()
        self._fixed_batch = fixed_batch
        self.max_batch = _combine_max_batch(max_batch, fixed_batch)

    @classmethod
    def from_model(cls, model, *, source: str = "in-memory ONNX model", **options) -> OnnxRuntimeBackend:
        """A backend on an ONNX model in memory: an ``onnx.ModelProto`` or its serialized bytes.

        ``options``: the constructor's keywords (``device``, ``providers``, threads, ``max_batch``,
        ``spec``, ``custom_ops_libraries``, ``session_options``). The same checks as a file (the
        input contract from the metadata unless ``spec`` is given, one image input, the embedding
        output); ``source`` names the model in messages.
        """
        if hasattr(model, "SerializeToString"):  # an onnx.ModelProto (onnx itself is not imported here)
            model = model.SerializeToString()
        if not isinstance(model, (bytes, bytearray)) or not model:
            raise TypeError(f"model must be an onnx.ModelProto or its non-empty serialized bytes, got {type(model).__name__}")
        return cls(_InMemoryModel(bytes(model), source), **options)

    def _check_graph(self) -> tuple[str, str, np.dtype, int | None]:
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ArtifactError(
                f"{self.source}: expected one image input and an embedding output, found inputs "
                f"{[i.name for i in inputs]} and outputs {[o.name for o in outputs]}"
            )
        inp, out = inputs[0], outputs[0]
        dtypes = {"tensor(float)": np.dtype(np.float32), "tensor(float16)": np.dtype(np.float16)}
        if inp.type not in dtypes:
            raise ArtifactError(f"{self.source}: input {inp.name!r} has type {inp.type}; expected tensor(float) (raw 0-255 pixels)")
        shape = list(inp.shape)
        expected = [3, self.spec.height, self.spec.width]
        if len(shape) != 4 or any(isinstance(s, int) and s != e for s, e in zip(shape[1:], expected)):
            raise ArtifactError(
                f"{self.source}: input {inp.name!r} has shape {shape} but its input spec says [N, {', '.join(map(str, expected))}]"
            )
        out_shape = list(out.shape)
        if len(out_shape) != 2 or (isinstance(out_shape[1], int) and out_shape[1] != self.spec.feature_dim):
            raise ArtifactError(
                f"{self.source}: output {out.name!r} has shape {out_shape} but its input spec says [N, {self.spec.feature_dim}]"
            )
        fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        return inp.name, out.name, dtypes[inp.type], fixed

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        feed = batch
        if self._fixed_batch is not None and n < self._fixed_batch:  # a fixed-batch graph: pad, then drop the padding
            feed = np.zeros((self._fixed_batch, *batch.shape[1:]), np.float32)
            feed[:n] = batch
        if feed.dtype != self._input_dtype:
            feed = feed.astype(self._input_dtype)
        (output,) = self._session.run([self._output], {self._input: feed})
        return output[:n]

    def close(self) -> None:
        self._session = None  # the session frees its memory when collected

    def __repr__(self) -> str:
        return f"OnnxRuntimeBackend({self.source!r}, providers={self.providers}, max_batch={self.max_batch})"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendError(f"the ONNX Runtime backend needs the onnxruntime package (pip install onnxruntime): {exc}") from None
    return onnxruntime


def _existing_file(path: str | os.PathLike, *, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise ArtifactNotFoundError(f"{what} {path} does not exist")
    if not path.is_file():
        raise ArtifactError(f"{what} {path} is not a file")
    if path.stat().st_size == 0:
        raise ArtifactError(f"{what} {path} is empty (0 bytes): an interrupted copy or download?")
    return path


def _create_session(ort, model: str | bytes, options, providers: list[Provider], *, source: str):
    try:
        return ort.InferenceSession(model, sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... classes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"{source} could not be loaded by ONNX Runtime (corrupt, truncated or not ONNX?): {first}") from None


def _provider_name(provider: Provider) -> str:
    return provider[0] if isinstance(provider, tuple) else provider


def _check_providers_available(ort, providers: list[Provider], *, source: str) -> None:
    available = ort.get_available_providers()
    missing = [_provider_name(p) for p in providers if _provider_name(p) not in available]
    if missing:
        raise BackendError(
            f"{source}: ONNX Runtime execution provider(s) {missing} are not available in this onnxruntime "
            f"build (available: {available}); install onnxruntime-gpu for CUDA/TensorRT, or use device='cpu'"
        )


def _check_providers_used(session, providers: list[Provider], *, source: str) -> None:
    # ONNX Runtime silently falls back to the CPU when a GPU provider fails to load (missing
    # CUDA/cuDNN libraries); a user who asked for the GPU gets an error instead.
    used = session.get_providers()
    dropped = [_provider_name(p) for p in providers if _provider_name(p) not in used]
    if dropped:
        raise BackendError(
            f"{source}: ONNX Runtime could not start the {dropped} execution provider(s) (using {used} instead); "
            "check the CUDA/cuDNN/TensorRT libraries onnxruntime-gpu needs, or use device='cpu'"
        )


def _combine_max_batch(requested: int | None, fixed: int | None) -> int | None:
    if requested is not None:
        requested = positive_int(requested, "max_batch", hint=" or None")
    if fixed is None:
        return requested
    return fixed if requested is None else min(requested, fixed)
