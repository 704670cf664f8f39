"""A thin TensorRT compile of a precision-annotated ONNX (TensorRT 10 and 11).

Precision is decided in the ONNX (see :mod:`export.precision`); this module compiles what it is
given. Polygraphy's ``NetworkFromOnnxPath`` / ``CreateConfig`` / ``EngineFromNetwork`` loaders
are the model for the steps; the API facts come from NVIDIA's documentation:

* strongly typed networks: ``1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)`` to
  ``Builder.create_network`` (TensorRT >= 10.0; in TensorRT 10 ``EXPLICIT_BATCH`` is deprecated and
  ignored, in 11 it is gone, so it is never passed). TensorRT 11 removed ``BuilderFlag.FP16/INT8``
  and calibrators ("Removed Python APIs", TensorRT 10.x -> 11.x migration guide); the flags are
  used only on a TensorRT without ``STRONGLY_TYPED``.
  https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Builder.html
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
* ``PREFER_AOT_PYTHON_PLUGINS`` network flag (10.9+): the AOT implementation of a Python plugin.
* ``OnnxParser.parse_from_file`` / ``num_errors`` / ``get_error`` -- errors are collected and the
  build fails (a parse that "succeeds" with errors is still a failure here).
* ``IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)``,
  ``create_optimization_profile().set_shape(name, min, opt, max)``,
  ``create_timing_cache`` / ``set_timing_cache`` / ``get_timing_cache().serialize()``,
  ``Builder.build_serialized_network`` (None on failure).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from dslnet_edge._io import atomic_write_bytes
from dslnet_edge.errors import DslnetError
from dslnet_edge.spec import InputSpec
from export.onnx import INPUT_NAME

_log = logging.getLogger(__name__)

__all__ = ["BuildError", "Profile", "GpuInfo", "gpu_info", "build_engine_bytes"]


class BuildError(DslnetError, RuntimeError):
    """TensorRT could not parse or build the network."""


@dataclasses.dataclass(frozen=True)
class Profile:
    """The dynamic-batch optimization profile."""

    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32

    def __post_init__(self) -> None:
        for name in ("min_batch", "opt_batch", "max_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"batch profile must satisfy min <= opt <= max, got {self.min_batch} / {self.opt_batch} / {self.max_batch}"
            )

    def shapes(self, spec: InputSpec) -> dict[str, list[int]]:
        return {k: [b, *spec.input_shape] for k, b in (("min", self.min_batch), ("opt", self.opt_batch), ("max", self.max_batch))}


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str


def gpu_info() -> GpuInfo | None:
    """The first CUDA GPU (cuda-python, else torch), or None when there is none."""
    try:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python
        err, count = cudart.cudaGetDeviceCount()
        if int(err) == 0 and count > 0:
            err, props = cudart.cudaGetDeviceProperties(0)
            if int(err) == 0:
                name = props.name
                name = name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, bytes) else str(name)
                return GpuInfo(name.strip(), f"{props.major}.{props.minor}")
    except Exception:  # no driver, no cuda-python: fall through to torch
        pass
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return GpuInfo(torch.cuda.get_device_name(0), f"{major}.{minor}")
    except Exception:
        pass
    return None


def _logger(trt, verbose: bool):
    return trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)


def build_engine_bytes(
    onnx_path: str | os.PathLike,
    *,
    spec: InputSpec,
    profile: Profile,
    precision: str,
    workspace_bytes: int | None = None,
    timing_cache: str | os.PathLike | None = None,
    prefer_aot_plugins: bool = False,
    verbose: bool = False,
) -> tuple[bytes, dict]:
    """Parse ``onnx_path`` and build a serialized engine; returns (engine bytes, build facts).

    ``precision`` is the ONNX's precision ("fp32", "fp16", "int8"); with strong typing it only
    labels the result, without it (old TensorRT 10) it picks the builder flags.
    """
    import tensorrt as trt

    logger = _logger(trt, verbose)
    builder = trt.Builder(logger)
    flags_enum = trt.NetworkDefinitionCreationFlag
    strongly_typed = hasattr(flags_enum, "STRONGLY_TYPED")
    flags = 1 << int(flags_enum.STRONGLY_TYPED) if strongly_typed else 0
    if prefer_aot_plugins and hasattr(flags_enum, "PREFER_AOT_PYTHON_PLUGINS"):
        flags |= 1 << int(flags_enum.PREFER_AOT_PYTHON_PLUGINS)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    parsed = parser.parse_from_file(str(onnx_path))
    errors = [_describe_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
    if not parsed or errors:
        for line in errors:
            _log.warning(f"  TensorRT parser: {line}")
        raise BuildError(f"TensorRT could not parse {onnx_path}: {len(errors) or 'unknown'} error(s) (listed above)")

    config = builder.create_builder_config()
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    used_flags = []
    if not strongly_typed:  # TensorRT 10 builds without strong typing: the classic flags
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
            used_flags.append("FP16")
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            used_flags.append("INT8")
    opt_profile = builder.create_optimization_profile()
    shapes = profile.shapes(spec)
    opt_profile.set_shape(INPUT_NAME, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(opt_profile)
    cache_path = Path(timing_cache) if timing_cache else None
    if cache_path is not None:
        data = cache_path.read_bytes() if cache_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(data), False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT messages above)")
    if cache_path is not None:
        atomic_write_bytes(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    facts = {
        "tensorrt_version": trt.__version__,
        "strongly_typed": strongly_typed,
        "builder_flags": used_flags,
        "workspace_bytes": workspace_bytes,
        "timing_cache": str(cache_path) if cache_path else None,
    }
    return bytes(memoryview(serialized)), facts


def _describe_parser_error(error) -> str:
    parts = []
    for attr in ("desc", "node_name", "node_operator"):
        fn = getattr(error, attr, None)
        try:
            value = fn() if callable(fn) else None
        except Exception:
            value = None
        if value:
            parts.append(f"{attr}={value}" if attr != "desc" else str(value))
    return "; ".join(parts) or str(error)
