"""OpenVINO backend (CPU): ``.onnx`` or OpenVINO IR ``.xml``/``.bin``, in FP32, bf16 or the INT8 of a Q/DQ ONNX.

::

    Engine("model.onnx", backend="openvino")                    # precision="auto": bf16 where the CPU has it
    Engine("model.onnx", backend="openvino", precision="f32")
    Engine("model.int8.onnx", backend="openvino")               # the Q/DQ ONNX from `python -m calibration`
    Engine("peer.xml", backend="openvino", spec=InputSpec(channel_order="BGR", feature_dim=256, l2_normalized=False))

Precision is OpenVINO's ``INFERENCE_PRECISION_HINT`` (``f32`` or ``bf16``); ``auto`` takes bf16
when the CPU reports it (``OPTIMIZATION_CAPABILITIES`` contains ``BF16``: AVX512-BF16/AMX),
else f32. A Q/DQ ONNX runs its quantized layers in INT8 whatever the hint (OpenVINO's
low-precision transformations turn Q/DQ pairs into INT8 kernels).

**The load-time check.** Every reduced precision is compared at load with a reference on a fixed
batch of person-like crops (:mod:`dslnet_edge.backends.precision_check`); the smallest per-crop
cosine must reach ``min_cosine`` (0.999):

* bf16 is compared with the same model compiled in f32;
* an INT8 Q/DQ graph passed calibration's accuracy gate against FP32 (Rank-1/mAP and cosine on
  real crops, recorded in its metadata) in ONNX Runtime; here OpenVINO's run of it is compared
  with ONNX Runtime's run of the same file, so what runs is what the gate accepted.

A failed check with ``precision="auto"`` falls back to f32 and says so (a ``logging`` warning and
:attr:`OpenVinoBackend.note`); with an explicit ``precision="bf16"`` it refuses with one line
(:class:`~dslnet_edge.backends.base.ArtifactError`). ``check=False`` skips it.

The input contract: a DSLNet ONNX carries it in ``metadata_props`` (OpenVINO keeps it under the
model's ``rt_info["framework"]``, also in an IR converted from that ONNX); other models (the
OMZ peers) take it from ``spec=``. API used: OpenVINO's documented Python API
(``Core.read_model``/``compile_model``, ``CompiledModel.create_infer_request``, the
``INFERENCE_PRECISION_HINT``/``INFERENCE_NUM_THREADS``/``PERFORMANCE_HINT`` properties):
https://docs.openvino.ai/2026/api/ie_python_api/api.html
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

from dslnet_edge._checks import int_at_least, positive_int
from dslnet_edge.backends.base import (
    ArtifactError,
    ArtifactNotFoundError,
    Backend,
    BackendError,
)
from dslnet_edge.backends.precision_check import CHECK_MIN_COSINE, min_row_cosine, person_like_crops
from dslnet_edge.spec import SPEC_METADATA_KEY, InputSpec

__all__ = ["OpenVinoBackend", "PRECISIONS", "openvino_available", "cpu_has_bf16"]

log = logging.getLogger(__name__)

#: accepted ``precision=`` values (``fp32`` is an alias of ``f32``)
PRECISIONS = ("auto", "f32", "bf16")
_SUFFIXES = (".onnx", ".xml")
_QDQ_OPS = {"FakeQuantize", "QuantizeLinear", "DequantizeLinear", "FakeConvert"}


def openvino_available() -> bool:
    """Whether the ``openvino`` package can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def cpu_has_bf16(core=None) -> bool:
    """Whether OpenVINO's CPU plugin reports native bf16 (``BF16`` in ``OPTIMIZATION_CAPABILITIES``)."""
    core = core or _import_openvino().Core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoBackend(Backend):
    """One OpenVINO ``CompiledModel`` on the CPU.

    Args:
        path: ``.onnx`` (a DSLNet export, FP32 or the calibration's INT8 Q/DQ) or OpenVINO IR ``.xml``.
        device: ``"cpu"`` (the only device this backend is built and tested for).
        precision: ``"auto"`` (bf16 where the CPU has it, else f32), ``"f32"`` or ``"bf16"``.
        intra_op_threads: OpenVINO's ``INFERENCE_NUM_THREADS`` (None/0: its default, all cores);
            the same name as the ONNX Runtime backend's option.
        max_batch: largest batch per ``infer`` call (None: no limit).
        spec: the input contract of a model whose file does not carry one (e.g. an OMZ IR).
        check: run the load-time precision check (see the module docstring).
        min_cosine: the smallest per-crop cosine the check accepts.
    """

    name = "openvino"
    thread_safe = True  # one infer request per calling thread

    #: Engine's default batch (issue 14): the demo ONNX on the 2-core AVX-512 EPYC ran bf16 at
    #: 416/433/373 crops/s at batch 1/8/32 and f32 at 241/219 (batch 1/8; undisturbed run of
    #: issue 11); a run disturbed by training (1/4/8/16/32/64) again put bf16's best at 8-16 and
    #: f32's flat from 4 up. 8 is at or near the best for both; re-measure with dslnet_edge.bench.
    preferred_batch = 8

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "cpu",
        precision: str = "auto",
        intra_op_threads: int | None = None,
        max_batch: int | None = None,
        spec: InputSpec | None = None,
        check: bool = True,
        min_cosine: float = CHECK_MIN_COSINE,
    ):
        self.path = _existing_model(path)
        self.source = str(self.path)
        if str(device).lower() != "cpu":
            raise BackendError(f"{self.source}: the OpenVINO backend runs on device 'cpu' only, got {device!r}")
        precision = {"fp32": "f32"}.get(str(precision).lower(), str(precision).lower())
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)} (or 'fp32'), got {precision!r}")
        if intra_op_threads is not None:
            intra_op_threads = int_at_least(intra_op_threads, "intra_op_threads", 0, hint=" (0 = OpenVINO's default)")
        if max_batch is not None:
            max_batch = positive_int(max_batch, "max_batch", hint=" or None")
        if not (isinstance(min_cosine, (int, float)) and 0.0 < min_cosine <= 1.0):
            raise ValueError(f"min_cosine must be in (0, 1], got {min_cosine!r}")
        ov = _import_openvino()
        self._ov = ov
        self._core = ov.Core()
        model = self._read(ov)
        self.spec = self._spec(model, spec)
        self._input_type, self._fixed_batch = self._check_graph(model)
        self.int8 = any(op.get_type_name() in _QDQ_OPS for op in model.get_ordered_ops())
        self.max_batch = max_batch
        self._config = {"PERFORMANCE_HINT": "LATENCY"}
        if intra_op_threads:
            self._config["INFERENCE_NUM_THREADS"] = int(intra_op_threads)
        self.requested_precision = precision
        self.precision = ("bf16" if cpu_has_bf16(self._core) else "f32") if precision == "auto" else precision
        #: what the load-time check found (None when nothing was checked), and any fallback note
        self.check_cosine: float | None = None
        self.note = ""
        self._local = threading.local()
        self._compiled = self._compile(model, self.precision)
        if check and (self.precision != "f32" or self.int8):
            self._check(model, min_cosine)

    # -- loading -------------------------------------------------------------------------------
    def _read(self, ov):
        try:
            return self._core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises RuntimeError with multi-line text
            raise ArtifactError(f"{self.source} could not be read by OpenVINO (corrupt, truncated, or a .xml without "
                                f"its .bin?): {_first_line(exc)}") from None

    def _spec(self, model, given: InputSpec | None) -> InputSpec:
        if given is not None:
            if not isinstance(given, InputSpec):
                raise TypeError(f"spec must be an InputSpec, got {type(given).__name__}")
            return given
        key = ["framework", SPEC_METADATA_KEY]
        if not model.has_rt_info(key):
            raise ArtifactError(
                f"{self.source} carries no {SPEC_METADATA_KEY!r} metadata, so its input contract (size, channel order, "
                "feature dim) is unknown; export it with `python -m export.onnx`, or pass spec=InputSpec(...)"
            )
        try:
            return InputSpec.from_json(model.get_rt_info(key).astype(str))
        except ValueError as exc:
            raise ArtifactError(f"{self.source} has an invalid {SPEC_METADATA_KEY!r} metadata entry: {exc}") from None

    def _check_graph(self, model) -> tuple[np.dtype, int | None]:
        if len(model.inputs) != 1 or len(model.outputs) < 1:
            raise ArtifactError(f"{self.source}: expected one image input and an embedding output, found "
                                f"{len(model.inputs)} inputs and {len(model.outputs)} outputs")
        inp, out = model.inputs[0], model.outputs[0]
        shape, expected = inp.get_partial_shape(), [3, self.spec.height, self.spec.width]
        if shape.rank.is_dynamic or shape.rank.get_length() != 4 or any(
            shape[i + 1].is_static and shape[i + 1].get_length() != e for i, e in enumerate(expected)
        ):
            raise ArtifactError(f"{self.source}: input has shape {shape} but its input spec says [N, {', '.join(map(str, expected))}]")
        out_shape = out.get_partial_shape()
        if out_shape.rank.is_static and (
            out_shape.rank.get_length() != 2 or (out_shape[1].is_static and out_shape[1].get_length() != self.spec.feature_dim)
        ):
            raise ArtifactError(f"{self.source}: output has shape {out_shape} but its input spec says [N, {self.spec.feature_dim}]")
        types = {"f32": np.float32, "f16": np.float16, "u8": np.uint8}
        type_name = inp.get_element_type().get_type_name()
        if type_name not in types:
            raise ArtifactError(f"{self.source}: input type {type_name}; expected f32, f16 or u8 (raw 0-255 pixels)")
        fixed = None
        if shape[0].is_static:
            try:  # a fixed-batch IR (the OMZ models): make the batch dynamic, else feed one by one
                model.reshape({inp: self._ov.PartialShape([-1, *expected])})
            except Exception:
                fixed = shape[0].get_length()
        return np.dtype(types[type_name]), fixed

    def _compile(self, model, precision: str):
        try:
            return self._core.compile_model(model, "CPU", {**self._config, "INFERENCE_PRECISION_HINT": precision})
        except Exception as exc:
            raise ArtifactError(f"{self.source}: OpenVINO could not compile it for the CPU in {precision}: {_first_line(exc)}") from None

    def _check(self, model, min_cosine: float) -> None:
        from dslnet_edge.preprocessing import preprocess

        batch = preprocess(person_like_crops(), self.spec)
        reference, against = self._reference(model, batch)
        while True:
            self.check_cosine = min_row_cosine(self._run(self._compiled, batch), reference)
            if self.check_cosine >= min_cosine:
                return
            what = f"{'INT8 ' if self.int8 else ''}{self.precision}"
            failure = (f"{self.source}: OpenVINO {what} embeddings differ from {against} on the check crops "
                       f"(min cosine {self.check_cosine:.6f} < {min_cosine})")
            if self.requested_precision != "auto" or self.precision == "f32":
                raise ArtifactError(failure + ("; use precision='f32'" if self.precision != "f32" else ""))
            self.note = failure + "; falling back to f32"
            log.warning(self.note)
            self.precision = "f32"
            self._compiled = self._compile(model, "f32")
            if not self.int8:
                self.check_cosine = None  # f32 is the reference itself
                return

    def _reference(self, model, batch: np.ndarray) -> tuple[np.ndarray, str]:
        if not self.int8:
            return self._run(self._compile(model, "f32"), batch), "OpenVINO f32"
        if self.path.suffix.lower() != ".onnx":
            raise ArtifactError(f"{self.source}: an INT8 IR cannot be checked (no ONNX to run in ONNX Runtime); "
                                "load the calibration's Q/DQ .onnx, or pass check=False")
        from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

        ort = OnnxRuntimeBackend(self.path, device="cpu", spec=self.spec)
        try:
            return ort.infer(batch), "ONNX Runtime's run of the same Q/DQ graph (the one calibration's gate judged)"
        finally:
            ort.close()

    # -- running -------------------------------------------------------------------------------
    def _run(self, compiled, batch: np.ndarray) -> np.ndarray:
        request = compiled.create_infer_request() if compiled is not self._compiled else self._request()
        if self._input_type == np.uint8:  # an IR taking u8 pixels
            feed = np.clip(np.rint(batch), 0, 255).astype(np.uint8)
        else:
            feed = batch.astype(self._input_type, copy=False)
        if self._fixed_batch is None:
            return np.array(request.infer({0: feed})[0])
        step, parts = self._fixed_batch, []
        for start in range(0, len(feed), step):
            part = feed[start : start + step]
            padded = np.zeros((step, *feed.shape[1:]), feed.dtype)
            padded[: len(part)] = part
            parts.append(np.array(request.infer({0: padded})[0])[: len(part)])
        return np.concatenate(parts)

    def _request(self):
        request = getattr(self._local, "request", None)
        if request is None or self._local.compiled is not self._compiled:
            request = self._local.request = self._compiled.create_infer_request()
            self._local.compiled = self._compiled
        return request

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if self._compiled is None:
            raise RuntimeError(f"{self.source}: this OpenVINO backend is closed")
        return self._run(self._compiled, batch)

    def close(self) -> None:
        self._compiled = None
        self._local = threading.local()

    def __repr__(self) -> str:
        kind = f"{'int8+' if self.int8 else ''}{self.precision}"
        return f"OpenVinoBackend({self.source!r}, precision={kind}, max_batch={self.max_batch})"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _import_openvino():
    try:
        import openvino
    except ImportError as exc:
        raise BackendError(f"the OpenVINO backend needs the openvino package (pip install 'dslnet-edge[openvino]'): {exc}") from None
    return openvino


def _existing_model(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise ArtifactNotFoundError(f"model {path} does not exist")
    if not path.is_file():
        raise ArtifactError(f"model {path} is not a file")
    if path.stat().st_size == 0:
        raise ArtifactError(f"model {path} is empty (0 bytes): an interrupted copy or download?")
    if path.suffix.lower() not in _SUFFIXES:
        raise ArtifactError(f"{path}: the OpenVINO backend reads .onnx or OpenVINO IR .xml (with its .bin), "
                            f"not {path.suffix or 'a file without suffix'}")
    if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
        raise ArtifactNotFoundError(f"{path}: its weights file {path.with_suffix('.bin')} does not exist")
    return path


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # OpenVINO prefixes messages with "Exception from src/...cpp:NNN:"; the next line says what.
    for line in lines:
        if not line.startswith("Exception from") and not line.startswith("Check "):
            return line[:300]
    return lines[0][:300] if lines else type(exc).__name__
