"""FP32 ONNX + real person crops -> Q/DQ (explicitly quantized) INT8 ONNX for TensorRT.

TensorRT 11 has no calibrators and no ``BuilderFlag.INT8``: an INT8 engine is compiled from a
graph whose QuantizeLinear/DequantizeLinear (Q/DQ) nodes say exactly which tensors are INT8 and
with which scale. Every numerically important INT8 decision is therefore made here, on the CPU,
and checked in ONNX Runtime (the gate, :mod:`calibration.gate`) before TensorRT sees the file.

How the graph is quantized (ONNX Runtime's ``quantize_static``, QDQ format), and why:

* **INT8, symmetric, zero point 0** for activations *and* weights (``QuantType.QInt8``,
  ``ActivationSymmetric``/``WeightSymmetric``): TensorRT's quantization is symmetric, it
  rejects non-zero zero points. Every Q/DQ written is checked for it before the file is saved.
* **Per-channel weights** (one scale per output channel: Conv axis 0, Gemm per ``transB``,
  MatMul the last axis) -- depth-wise and 1x1 convolutions have very different channel ranges.
  Measured on the DSLNet convolutions: median relative weight error 0.59% per channel against
  1.04% per tensor, and per channel was the lower in all 91 of them. (End-to-end cosines of the
  two were within noise on one checkpoint; per tensor put a crop at 0.643 on another.)
* **Q/DQ on the inputs of weighted ops only** (Conv, Gemm, MatMul), outputs left to TensorRT
  (``OpTypesToExcludeOutputQuantization``), as NVIDIA's "Q/DQ layer-placement recommendations"
  (TensorRT developer guide, explicit quantization) advise: quantize all inputs of weighted
  operations, do not quantize their outputs by default, do not simulate BatchNorm/ReLU fusions
  (TensorRT fuses them). The same options as NVIDIA ModelOpt's ONNX INT8 path.
* **Float bias** (``QuantizeBias: False``): TensorRT's ONNX parser rejects a DequantizeLinear
  of an INT32 bias ("only activation types allowed as input to this layer").
* **Kept in float** by default (node-name patterns, :data:`DEFAULT_EXCLUDE`): the graph input
  and the input normalization (Sub/Div), the CSS heads (their FCs are tiny GEMVs feeding a
  softmax across streams: INT8 would gain nothing and moves the stream weights), the final L2
  normalization. The graph input ``images`` itself is never quantized; the first Q/DQ sits on
  the *normalized* image in front of the stem convolution. Measured on the CUHK03 checkpoint
  (``benchmarks/bench_int8.py --ablation``), see :data:`DEFAULT_EXCLUDE`.

Calibration: MinMax by default (with symmetric ranges, TensorRT's "max" calibration; the
fastest and, across the measured models, never the worst -- entropy put one crop at cosine 0.70
on a DSLNet checkpoint, percentile was best there and worst on OMZ 0267). ONNX Runtime on the
CPU runs these graphs as DequantizeLinear + float kernels (0.5-0.8x the FP32 speed here): its
INT8 speed says nothing about TensorRT's.

Calibration reads the crops through :func:`dslnet_edge.preprocessing.preprocess` with the model's
own InputSpec, in memory-bounded chunks (``CalibStridedMinMax``). The activation ranges are
kept as JSON next to the output (``<out stem>.calibration.json``), keyed by the FP32 ONNX's
sha256, the crop list (names and content hashes), the method and the ONNX Runtime version --
TensorRT's calibration cache, in spirit: re-running with the same inputs (for instance to try
other exclusions) skips the calibration pass and gives bit-identical scales.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from calibration.crops import collect_crops, read_crop
from calibration.errors import CalibrationError
from dslnet_edge._io import atomic_write, atomic_write_text, file_sha256
from dslnet_edge.spec import SPEC_METADATA_KEY, InputSpec

__all__ = [
    "METHODS",
    "DEFAULT_OP_TYPES",
    "DEFAULT_EXCLUDE",
    "CALIBRATION_METADATA_KEY",
    "QuantizeConfig",
    "QuantizeResult",
    "quantize",
    "quantize_onnx",
    "cache_path_for",
    "qdq_summary",
    "QdqSummary",
    "file_sha256",
]

_log = logging.getLogger(__name__)

METHODS = ("minmax", "entropy", "percentile")
#: Weighted operations: the ones whose inputs get Q/DQ (NVIDIA's placement recommendation).
DEFAULT_OP_TYPES = ("Conv", "Gemm", "MatMul")
#: What stays in float by default: role -> regex searched in node names (``export.onnx`` names
#: nodes after the PyTorch module path, e.g. ``/stage1/stage1.0/attention/MatMul``). The CSS
#: heads and the embedding FC are the weighted ops this keeps in float (12 MatMuls, 1 Gemm: a
#: negligible share of the 825M multiply-adds); the other patterns document intent and guard
#: graphs quantized with wider ``op_types``. Measured (``benchmarks/bench_int8.py --ablation``;
#: the table is in :mod:`calibration.gate`): with the CSS heads in INT8 too the worst crop fell
#: to cosine 0.254 (epoch-3 DSLNet) / 0.869 (epoch 5) from 0.950 / 0.901. The embedding FC is
#: cost-free in float; its effect was within noise (worst crop 0.950 -> 0.968 at epoch 3,
#: 0.908 -> 0.901 at epoch 5). The stem convolution in float did not help (0.901 -> 0.899).
DEFAULT_EXCLUDE: Mapping[str, str] = {
    "input normalization": r"^/(Sub|Div)$",
    "CSS heads": r"/attention/",
    "embedding FC": r"^/fc/",
    "L2 normalization": r"^/(ReduceL2|Clip|Shape|Expand|Div_1)$",
}
#: Where the Q/DQ ONNX records how it was calibrated (JSON), next to the InputSpec.
CALIBRATION_METADATA_KEY = "dslnet_edge.calibration"
CACHE_FORMAT = "dslnet_edge.calibration_cache"
CACHE_VERSION = 1
#: Images per calibration pass: ONNX Runtime keeps every calibrated activation of a pass in
#: memory (about 25 MB per 256x128 image for DSLNet), so passes are chunked.
_IMAGES_PER_PASS = 32


@dataclasses.dataclass(frozen=True)
class QuantizeConfig:
    """How :func:`quantize` calibrates and where it puts Q/DQ (defaults: see the module docstring).

    Attributes:
        num_images: calibration crops sampled from the folder (spread over identities/cameras).
        method: ``minmax`` (TensorRT's "max" calibration; with symmetric ranges, max|x|),
            ``entropy`` (KL divergence, TensorRT's legacy default) or ``percentile``.
        percentile: the percentile of |x| kept, for ``method="percentile"``.
        moving_average: MinMax with a moving average of the per-batch ranges (``CalibMovingAverage``).
        per_channel: one weight scale per output channel (TensorRT supports it for Conv/Gemm/MatMul).
        op_types: operator types whose inputs are quantized.
        exclude: regexes; nodes whose name matches any stay in float.
        batch_size: crops per calibration batch.
        seed: sampling seed (same seed, same crops).
        use_cache: read/write the activation-range cache beside the output.
    """

    num_images: int = 256
    method: str = "minmax"
    percentile: float = 99.999
    moving_average: bool = False
    per_channel: bool = True
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    exclude: tuple[str, ...] = tuple(DEFAULT_EXCLUDE.values())
    batch_size: int = 8
    seed: int = 0
    use_cache: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "op_types", tuple(self.op_types))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        for name in ("num_images", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 50.0 <= float(self.percentile) <= 100.0:
            raise ValueError(f"percentile must be in [50, 100], got {self.percentile!r}")
        if not self.op_types:
            raise ValueError("op_types must name at least one operator type to quantize")
        for pattern in self.exclude:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"exclude pattern {pattern!r} is not a valid regular expression: {exc}") from None

    def range_options(self) -> dict[str, Any]:
        """The options the activation ranges depend on (part of the cache key; exclusions are not)."""
        options: dict[str, Any] = {"method": self.method, "op_types": sorted(self.op_types)}
        if self.method == "percentile":
            options["percentile"] = float(self.percentile)
        if self.method == "minmax":
            options["moving_average"] = self.moving_average
            if self.moving_average:
                options["batch_size"] = self.batch_size  # a moving average depends on the batching
        return options


@dataclasses.dataclass(frozen=True)
class QdqSummary:
    """What a Q/DQ graph holds (counted by :func:`qdq_summary`)."""

    quantize_nodes: int
    dequantize_nodes: int
    per_channel_weights: int
    quantized_op_inputs: Mapping[str, int]  # op type -> number of nodes with a DequantizeLinear input

    def __post_init__(self) -> None:
        if min(self.quantize_nodes, self.dequantize_nodes, self.per_channel_weights) < 0:
            raise ValueError("QdqSummary counts must be >= 0")


@dataclasses.dataclass(frozen=True)
class QuantizeResult:
    """What :func:`quantize` made, from what, and how long it took."""

    path: Path
    fp32_onnx: Path
    cache_path: Path | None
    cache_hit: bool
    crops: tuple[Path, ...]
    spec: InputSpec
    method: str
    ranges: Mapping[str, tuple[float, float]]
    excluded_nodes: tuple[str, ...]
    unmatched_patterns: tuple[str, ...]
    summary: QdqSummary
    seconds: float

    def __post_init__(self) -> None:
        if self.spec.precision != "int8":
            raise ValueError(f"QuantizeResult.spec.precision must be 'int8', got {self.spec.precision!r}")
        if not self.crops:
            raise ValueError("QuantizeResult needs at least one calibration crop")
        if self.summary.quantize_nodes < 1 or self.summary.dequantize_nodes < 1:
            raise ValueError("QuantizeResult describes a graph without Q/DQ nodes")

    def format(self) -> str:
        notes = [f"wrote {self.path} ({self.summary.quantize_nodes} QuantizeLinear, "
                 f"{self.summary.dequantize_nodes} DequantizeLinear, {self.summary.per_channel_weights} per-channel weights; "
                 f"{self.method} calibration on {len(self.crops)} crops, "
                 f"{'ranges from the cache' if self.cache_hit else 'ranges measured'} in {self.seconds:.1f} s)"]
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.summary.quantized_op_inputs.items()))
        notes.append(f"INT8 inputs: {ops}; kept in float by pattern: {len(self.excluded_nodes)} nodes")
        for pattern in self.unmatched_patterns:
            notes.append(f"note: exclude pattern {pattern!r} matched no node of {self.fp32_onnx.name}")
        return "\n".join(notes)


# ---------------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------------
def quantize_onnx(
    fp32_onnx: str | os.PathLike,
    crops_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    num_images: int = 256,
    method: str = "minmax",
    per_channel: bool = True,
    exclude: Sequence[str] | None = None,
    **options: Any,
) -> Path:
    """Calibrate ``fp32_onnx`` on crops from ``crops_dir`` and write the Q/DQ INT8 ONNX to ``out``.

    The hook ``export.build_engine`` calls (``--int8 --calibration-dir``); see :func:`quantize`
    for everything it does and :class:`QuantizeConfig` for the options (``exclude=None`` keeps
    :data:`DEFAULT_EXCLUDE`). Returns ``out``.
    """
    fields = dict(num_images=num_images, method=method, per_channel=per_channel, **options)
    if exclude is not None:
        fields["exclude"] = tuple(exclude)
    return quantize(fp32_onnx, crops_dir, out, QuantizeConfig(**fields)).path


def quantize(
    fp32_onnx: str | os.PathLike,
    crops_dir: str | os.PathLike,
    out: str | os.PathLike,
    config: QuantizeConfig = QuantizeConfig(),
) -> QuantizeResult:
    """Q/DQ INT8 ONNX at ``out`` (atomically), its InputSpec saying ``precision="int8"``.

    Raises:
        CalibrationError: missing/empty crops folder, unreadable image, an input that is not a
            plain FP32 ONNX, or a quantized graph TensorRT would reject (non-zero zero points).
        ArtifactError (a ValueError): the ONNX is missing, corrupt or has no InputSpec metadata.
    """
    with _staged_qdq(fp32_onnx, crops_dir, out, config) as (tmp, result):
        pass
    return dataclasses.replace(result, path=Path(out))


def cache_path_for(out: str | os.PathLike) -> Path:
    """``model.int8.onnx`` -> ``model.int8.calibration.json`` (the activation-range cache)."""
    out = Path(out)
    return out.with_name(out.stem + ".calibration.json")


# ---------------------------------------------------------------------------------------------
# the pipeline (a context manager so the gate can judge the file before it lands at ``out``)
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _staged_qdq(
    fp32_onnx: str | os.PathLike,
    crops_dir: str | os.PathLike,
    out: str | os.PathLike,
    config: QuantizeConfig,
) -> Iterator[tuple[Path, QuantizeResult]]:
    """Quantize into a temporary file beside ``out``; it replaces ``out`` when the block exits cleanly.

    An exception in the block (a failed gate) leaves ``out`` untouched; the range cache is
    written either way (the ranges are right even when the model is not good enough).
    """
    import onnx

    from dslnet_edge.backends import read_onnx_spec

    started = time.perf_counter()
    fp32_onnx, out = Path(fp32_onnx), Path(out)
    if out.suffix.lower() != ".onnx":
        raise CalibrationError(f"output path must end in .onnx, got {out}")
    spec = read_onnx_spec(fp32_onnx)  # missing file / corrupt / no InputSpec: ArtifactError naming it
    if out.resolve() == fp32_onnx.resolve():
        raise CalibrationError(f"output {out} would overwrite the FP32 model it is made from")
    model = onnx.load_model(str(fp32_onnx))
    _check_plain_fp32(model, fp32_onnx)
    crops = collect_crops(crops_dir, config.num_images, seed=config.seed)
    onnx_sha = file_sha256(fp32_onnx)
    key = _cache_key(onnx_sha, crops, Path(crops_dir), config)
    cache_path = cache_path_for(out) if config.use_cache else None
    ranges = _read_cache(cache_path, key) if cache_path is not None else None
    cache_hit = ranges is not None
    excluded, unmatched = _excluded_nodes(model, config.exclude)
    _log.info(f"calibrating {fp32_onnx.name} ({spec.height}x{spec.width}) on {len(crops)} crops from {crops_dir} "
              f"({config.method}{', ranges from ' + str(cache_path) if cache_hit else ''})")
    with tempfile.TemporaryDirectory(prefix="dslnet_calib_") as work:
        work_dir = Path(work)
        raw = work_dir / "qdq.onnx"
        ranges = _run_quantize_static(fp32_onnx, raw, model, spec, crops, ranges, excluded, config, work_dir)
        qdq = onnx.load_model(str(raw))
    summary = qdq_summary(qdq)
    _check_tensorrt_compatible(qdq, out)
    int8_spec = spec.replace(precision="int8")
    _set_metadata(qdq, int8_spec, {
        "fp32_onnx_sha256": onnx_sha,
        "method": config.method,
        "num_images": len(crops),
        "crops_dir": str(crops_dir),
        "crops_sha256": key["crops_sha256"],
        "excluded_nodes": len(excluded),
        "onnxruntime": _ort_version(),
    })
    if cache_path is not None and not cache_hit:
        _write_cache(cache_path, key, ranges, config.method)
    result = QuantizeResult(
        path=out, fp32_onnx=fp32_onnx, cache_path=cache_path, cache_hit=cache_hit, crops=tuple(crops),
        spec=int8_spec, method=config.method, ranges=ranges, excluded_nodes=tuple(excluded),
        unmatched_patterns=tuple(unmatched), summary=summary, seconds=0.0,
    )
    with atomic_write(out) as tmp:
        onnx.save_model(qdq, tmp)
        yield tmp, dataclasses.replace(result, path=tmp, seconds=time.perf_counter() - started)


def _run_quantize_static(
    fp32_onnx: Path,
    raw_out: Path,
    model,
    spec: InputSpec,
    crops: Sequence[Path],
    ranges: Mapping[str, tuple[float, float]] | None,
    excluded: Sequence[str],
    config: QuantizeConfig,
    work_dir: Path,
) -> dict[str, tuple[float, float]]:
    """One ``quantize_static`` call; returns the activation ranges it used (measured or given)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    ort_cache = work_dir / "ranges.json"
    method = _ort_method(config.method)
    reader = None
    if ranges is not None:
        _write_ort_cache(ort_cache, ranges, method)
    else:
        input_name = _graph_input_name(model)
        reader = _CropReader(crops, spec, input_name, config.batch_size)
    stride = _stride(reader) if reader is not None else None
    extra_options: dict[str, Any] = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "ForceQuantizeNoInputCheck": True,
        "DedicatedQDQPair": False,
        "QDQKeepRemovableActivations": True,
        "OpTypesToExcludeOutputQuantization": sorted({n.op_type for n in model.graph.node}),
        "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "MatMul": -1},
        "CalibTensorRangeSymmetric": True,
        "CalibMovingAverage": config.moving_average,
        "CalibPercentile": float(config.percentile),
        "TensorQuantOverrides": _per_tensor_batched_weights(model),
    }
    if stride is not None:
        extra_options["CalibStridedMinMax"] = stride
    _check_ort_has_cache_support(quantize_static)
    with _quiet_ort_logging():
        try:
            quantize_static(
                str(fp32_onnx),
                str(raw_out),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(config.op_types),
                per_channel=config.per_channel,
                reduce_range=False,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(excluded),
                calibrate_method=method,
                extra_options=extra_options,
                calibration_cache_path=str(ort_cache),
            )
        except CalibrationError:
            raise
        except Exception as exc:  # ONNX Runtime raises bare Exceptions/ValueErrors with long texts
            first = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise CalibrationError(f"ONNX Runtime could not quantize {fp32_onnx}: {first}") from exc
    return ranges if ranges is not None else _read_ort_cache(ort_cache)


# ---------------------------------------------------------------------------------------------
# calibration data
# ---------------------------------------------------------------------------------------------
class _CropReader:
    """ONNX Runtime's calibration reader over crop files: decoded and preprocessed one batch at a time.

    A ``CalibrationDataReader`` by duck typing (``get_next``; ONNX Runtime's ABC recognises it),
    so this module does not import onnxruntime until it quantizes. ``__len__``/``set_range`` let ``quantize_static`` run calibration in passes of a few
    batches (``CalibStridedMinMax``), which bounds the memory the calibrator holds.
    """

    def __init__(self, paths: Sequence[Path], spec: InputSpec, input_name: str, batch_size: int):
        self.batches = [list(paths[i : i + batch_size]) for i in range(0, len(paths), batch_size)]
        self.spec, self.input_name = spec, input_name
        self._next, self._end = 0, len(self.batches)

    def get_next(self) -> dict | None:
        from dslnet_edge.preprocessing import preprocess

        if self._next >= self._end:
            return None
        chunk = self.batches[self._next]
        self._next += 1
        return {self.input_name: preprocess([read_crop(p) for p in chunk], self.spec)}

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, min(end_index, len(self.batches))

    def __iter__(self):
        return iter(self.get_next, None)


def _stride(reader: _CropReader) -> int:
    """Batches per calibration pass: the largest divisor of the batch count within the memory budget."""
    per_pass = max(1, _IMAGES_PER_PASS // max(1, len(reader.batches[0])))
    return max(d for d in range(1, min(per_pass, len(reader)) + 1) if len(reader) % d == 0)


# ---------------------------------------------------------------------------------------------
# the range cache
# ---------------------------------------------------------------------------------------------
def _cache_key(onnx_sha: str, crops: Sequence[Path], crops_dir: Path, config: QuantizeConfig) -> dict[str, Any]:
    """What the ranges depend on: the graph, the exact crops (content, in order), the options, ONNX Runtime."""
    crops_digest = hashlib.sha256()
    for path in crops:
        try:
            name = path.relative_to(crops_dir).as_posix()
        except ValueError:
            name = path.name
        crops_digest.update(name.encode() + b"\0" + file_sha256(path).encode() + b"\n")
    return {
        "onnx_sha256": onnx_sha,
        "crops_sha256": crops_digest.hexdigest(),
        "num_crops": len(crops),
        "options": config.range_options(),
        "onnxruntime": _ort_version(),
    }


def _read_cache(path: Path, key: Mapping[str, Any]) -> dict[str, tuple[float, float]] | None:
    """The cached ranges when ``path`` holds ranges for exactly ``key``; None otherwise (stale, absent, damaged)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != CACHE_FORMAT or data.get("format_version") != CACHE_VERSION or data.get("key") != key:
            return None
        ranges = {str(k): (float(v[0]), float(v[1])) for k, v in data["ranges"].items()}
    except (OSError, ValueError, TypeError, KeyError, IndexError):
        return None  # a damaged cache is recomputed and rewritten, never trusted
    return ranges or None


def _write_cache(path: Path, key: Mapping[str, Any], ranges: Mapping[str, tuple[float, float]], method: str) -> None:
    data = {
        "format": CACHE_FORMAT,
        "format_version": CACHE_VERSION,
        "key": dict(key),
        "method": method,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "ranges": {k: [lo, hi] for k, (lo, hi) in sorted(ranges.items())},
    }
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def _ort_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


def _write_ort_cache(path: Path, ranges: Mapping[str, tuple[float, float]], method) -> None:
    """The ranges in ONNX Runtime's own cache format (``save_tensors_data``), for ``calibration_cache_path``."""
    import numpy as np
    from onnxruntime.quantization import TensorData, TensorsData, save_tensors_data

    data = {k: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for k, (lo, hi) in ranges.items()}
    save_tensors_data(TensorsData(method, data), path)


def _read_ort_cache(path: Path) -> dict[str, tuple[float, float]]:
    import numpy as np
    from onnxruntime.quantization import load_tensors_data

    def scalar(name: str, value) -> float:
        flat = np.asarray(value, dtype=np.float64).reshape(-1)
        if flat.size != 1:  # per-tensor activation ranges only: TensorRT has no per-channel activations
            raise CalibrationError(f"calibration produced a range of {flat.size} values for {name}; expected one")
        return float(flat[0])

    tensors = load_tensors_data(path)
    return {name: (scalar(name, td.range_value[0]), scalar(name, td.range_value[1])) for name, td in tensors.items()}


def _check_ort_has_cache_support(quantize_static) -> None:
    import inspect

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise CalibrationError(
            f"onnxruntime {_ort_version()} is too old for INT8 calibration here: its quantize_static has no "
            "calibration_cache_path (added in 2026; onnxruntime 1.32 has it); upgrade onnxruntime"
        )


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


@contextlib.contextmanager
def _quiet_ort_logging() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice through the root logger ("consider pre-processing") and its
    histogram calibrators ``print`` progress; neither is ours to show (our own log says what happens)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


# ---------------------------------------------------------------------------------------------
# graph checks and edits
# ---------------------------------------------------------------------------------------------
def _graph_input_name(model) -> str:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise CalibrationError(f"expected a model with one image input, found inputs {inputs}")
    return inputs[0]


def _check_plain_fp32(model, path: Path) -> None:
    from onnx import TensorProto

    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear"}:
        raise CalibrationError(f"{path} is already quantized (it holds QuantizeLinear/DequantizeLinear nodes); "
                               "calibrate the plain FP32 ONNX from python -m export.onnx")
    if any(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer):
        raise CalibrationError(f"{path} is an FP16 graph; calibrate the plain FP32 ONNX from python -m export.onnx")
    custom = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        raise CalibrationError(f"{path} holds custom-domain nodes ({', '.join(custom)}, e.g. the CSS plugin); "
                               "calibrate the plain FP32 ONNX")


def _per_tensor_batched_weights(model) -> dict[str, list[dict[str, Any]]]:
    """Per-tensor scales for MatMul weights of rank > 2 (the stacked CSS FCs, when not kept in float).

    A per-channel scale on a batched ``[N, K, M]`` weight is rejected at run time by ONNX
    Runtime's CPU kernel (``MatMulIntegerToFloat``: "b zero point is not valid"); one scale
    per tensor runs everywhere (``TensorQuantOverrides``, ONNX Runtime's documented per-tensor switch).
    """
    ranks = {i.name: len(i.dims) for i in model.graph.initializer}
    batched = {n.input[1] for n in model.graph.node if n.op_type == "MatMul" and ranks.get(n.input[1], 2) > 2}
    return {name: [{"symmetric": True}] for name in sorted(batched)}


def _excluded_nodes(model, patterns: Sequence[str]) -> tuple[list[str], list[str]]:
    """(names of the nodes matching any pattern, the patterns that matched nothing)."""
    compiled = [(p, re.compile(p)) for p in patterns]
    names = [n.name for n in model.graph.node]
    excluded = [name for name in names if any(rx.search(name) for _, rx in compiled)]
    unmatched = [p for p, rx in compiled if not any(rx.search(name) for name in names)]
    return excluded, unmatched


def qdq_summary(model) -> QdqSummary:
    """Count the Q/DQ nodes of a graph, its per-channel weight scales, and which op types read INT8 inputs."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    per_channel = 0
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            scale = inits.get(node.input[1])
            if scale is not None and numpy_helper.to_array(scale).size > 1:
                per_channel += 1
    quantized: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in dq_outputs for i in node.input):
            quantized[node.op_type] = quantized.get(node.op_type, 0) + 1
    return QdqSummary(
        quantize_nodes=sum(n.op_type == "QuantizeLinear" for n in model.graph.node),
        dequantize_nodes=sum(n.op_type == "DequantizeLinear" for n in model.graph.node),
        per_channel_weights=per_channel,
        quantized_op_inputs=quantized,
    )


def _check_tensorrt_compatible(model, out: Path) -> None:
    """Every Q/DQ is INT8 with zero point 0 and a positive finite scale, as TensorRT requires."""
    import numpy as np
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        raise CalibrationError(f"quantizing for {out} inserted no Q/DQ nodes: no node of the chosen op types is left "
                               "after the exclusions")
    for node in qdq:
        if len(node.input) < 3 or node.input[2] not in inits:
            raise CalibrationError(f"{node.name} has no INT8 zero point; TensorRT needs explicit INT8 zero points of 0")
        zero_point = inits[node.input[2]]
        if zero_point.data_type != TensorProto.INT8:
            raise CalibrationError(f"{node.name} quantizes to {TensorProto.DataType.Name(zero_point.data_type)}, not INT8")
        if np.any(numpy_helper.to_array(zero_point) != 0):
            raise CalibrationError(f"{node.name} has a non-zero zero point; TensorRT supports symmetric INT8 only")
        scale = numpy_helper.to_array(inits[node.input[1]]) if node.input[1] in inits else None
        if scale is None or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise CalibrationError(f"{node.name} has a missing, zero or non-finite scale")


def _set_metadata(model, spec: InputSpec, calibration: Mapping[str, Any]) -> None:
    keep = [p for p in model.metadata_props if p.key not in (SPEC_METADATA_KEY, CALIBRATION_METADATA_KEY)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    model.metadata_props.add(key=SPEC_METADATA_KEY, value=spec.to_json())
    model.metadata_props.add(key=CALIBRATION_METADATA_KEY, value=json.dumps(dict(calibration), sort_keys=True))
