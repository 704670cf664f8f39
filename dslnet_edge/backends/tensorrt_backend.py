"""TensorRT backend: a serialized engine (``.engine``/``.plan``) and its JSON sidecar.

An engine only runs under the TensorRT version and on the GPU it was built for, and it carries
no dslnet_edge input contract of its own, so ``python -m export.build_engine`` writes a sidecar
``<engine>.json`` (``model.engine`` -> ``model.engine.json``) beside it. This module reads the
sidecar *before* touching the engine and turns every known way of failing into one clear error:

* sidecar missing or invalid                  -> :class:`ArtifactNotFoundError` / :class:`ArtifactError`
* built by another TensorRT version           -> :class:`EngineCompatibilityError` (versions named)
* built for a GPU of another compute capability -> :class:`EngineCompatibilityError` (GPUs named)
* needs a plugin that cannot be loaded        -> :class:`PluginError`
* empty, truncated or corrupt engine file     -> :class:`ArtifactError` (with TensorRT's own log lines)

The sidecar contract (keys this reader uses; ``python -m export.build_engine`` writes more)::

    {
      "format": "dslnet_edge.engine", "format_version": 1,     # optional; other formats/newer versions refused
      "input_spec": {...},                       # InputSpec.to_dict(), required
      "tensorrt_version": "10.3.0",              # trt.__version__ at build time, required
      "gpu": {"name": "Orin", "compute_capability": "8.7"},   # required
      "hardware_compatibility": "none",          # optional: "ampere_plus" engines run on any CC >= 8.0
      "version_compatible": false,               # optional: built with BuilderFlag.VERSION_COMPATIBLE
      "precision": "fp16",                       # optional, informational
      "profile": {"min": [1,3,256,128], "opt": [...], "max": [32,3,256,128]},  # optional (the engine is asked too)
      "css_plugin": {"used": false}              # or, for an engine with the fused CSS plugin:
                  | {"used": true, "name": "DSLNet_CSS", "namespace": "dslnet_edge", "version": "1",
                     "implementation": "aot" | "jit",
                     "register": "package.module:function"}  # JIT only: what registers it in this process
    }

(``"plugin": {...}`` with the same fields plus ``"module"`` (imported), ``"library"`` (a plugin
shared library, relative to the engine's folder) or ``"embedded": true`` is read too.)

How a plugin is made available *before* deserialization, as NVIDIA's quickly_deployable_plugins
sample does it (register the plugin in the process, then deserialize):
https://github.com/NVIDIA/TensorRT/blob/main/samples/python/quickly_deployable_plugins/qdp_runner.py

* ``implementation: "aot"`` (TensorRT >= 10.9): the compiled kernel is embedded in the engine,
  which then needs neither Python nor the plugin's source
  (https://docs.nvidia.com/deeplearning/tensorrt/10.16.1/inference-library/plugins-python.html):
  nothing to load.
* ``implementation: "jit"``: TensorRT calls back into Python, so the plugin must be registered in
  this process: the sidecar's ``register`` entry point (``module:function``) is imported and
  called, or its ``module`` imported, or a ``library`` loaded with
  ``IPluginRegistry.load_library``. dslnet_edge never imports the exporter's plugin module by
  itself: only the name the sidecar gives, with :func:`importlib.import_module`. If the sidecar
  names nothing, registering the plugin yourself before building the Engine works too.

Inference uses TensorRT 10/11's named-tensor API (``num_io_tensors``/``get_tensor_name``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) with one CUDA stream and
pinned host buffers allocated once for the profile's max batch; preprocessing writes into the
pinned input buffer directly (:meth:`TensorRTBackend.input_buffer`). API references:

* ICudaEngine: https://docs.nvidia.com/deeplearning/tensorrt/api/python_api/infer/Core/Engine.html
* IExecutionContext: https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/ExecutionContext.html
* ILogger subclassing: https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Logger.html
* IPluginRegistry.load_library / get_creator:
  https://docs.nvidia.com/deeplearning/tensorrt/api/python_api/infer/Plugin/IPluginRegistry.html
* buffers, stream and copies as in NVIDIA's samples/python/common_runtime.py
  (https://github.com/NVIDIA/TensorRT/blob/main/samples/python/common_runtime.py): cudaMallocHost,
  cudaMalloc, cudaStreamCreate, cudaMemcpyAsync, cudaStreamSynchronize.
* cuda-python import path: ``cuda.bindings.runtime`` (cuda-python >= 12.6; the old ``cuda.cudart``
  trampoline was removed in 13.0: https://nvidia.github.io/cuda-python/cuda-bindings/latest/release/13.0.0-notes.html);
  ``from cuda import cudart`` is tried for older 12.x installs, then pycuda
  (https://documen.tician.de/pycuda/driver.html) when that is what the user has.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import json
import os
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dslnet_edge.backends.base import (
    ArtifactError,
    ArtifactNotFoundError,
    Backend,
    BackendError,
    check_batch,
    check_output,
)
from dslnet_edge.spec import InputSpec

__all__ = [
    "TensorRTBackend",
    "EngineSidecar",
    "PluginInfo",
    "EngineCompatibilityError",
    "PluginError",
    "sidecar_path",
    "read_engine_sidecar",
    "check_compatibility",
    "tensorrt_available",
]


#: ``format`` / ``format_version`` of the sidecar written by ``python -m export.build_engine``
SIDECAR_FORMAT = "dslnet_edge.engine"
SIDECAR_VERSION = 1


class EngineCompatibilityError(ArtifactError):
    """The engine was built for another TensorRT version or another GPU: rebuild it on this machine."""


class PluginError(ArtifactError):
    """The engine needs a TensorRT plugin that could not be loaded or registered."""


def tensorrt_available() -> bool:
    """True when ``import tensorrt`` works here (tests use it to skip with a reason)."""
    try:
        importlib.import_module("tensorrt")
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# The sidecar (pure Python: readable and testable without TensorRT)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """The plugin an engine needs, and how to make it available (see the module docstring)."""

    name: str | None = None
    version: str = "1"
    namespace: str = ""
    module: str | None = None  # imported
    register: str | None = None  # "module:function", imported and called
    library: str | None = None  # shared library for IPluginRegistry.load_library
    embedded: bool = False  # AOT: compiled into the engine, nothing to load

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", str(self.version))
        if self.register is not None and (":" not in self.register or not all(self.register.split(":", 1))):
            raise ValueError(f"plugin 'register' must be 'module:function', got {self.register!r}")
        if not (self.name or self.module or self.register or self.library or self.embedded):
            raise ValueError("plugin entry names no plugin and nothing to load")


@dataclasses.dataclass(frozen=True)
class EngineSidecar:
    """What ``model.engine.json`` says about its engine."""

    input_spec: InputSpec
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    plugin: PluginInfo | None = None
    hardware_compatibility: str = "none"
    version_compatible: bool = False
    precision: str | None = None
    max_batch: int | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str) -> EngineSidecar:
        """Validate a parsed sidecar; every problem names ``source`` and the key."""
        if not isinstance(data, Mapping):
            raise ArtifactError(f"engine sidecar {source} must hold a JSON object, found {type(data).__name__}")
        if data.get("format", SIDECAR_FORMAT) != SIDECAR_FORMAT:
            raise ArtifactError(f"{source} is not a dslnet_edge engine sidecar (format {data.get('format')!r})")
        version = data.get("format_version", SIDECAR_VERSION)
        if not isinstance(version, int) or version > SIDECAR_VERSION:
            raise ArtifactError(f"engine sidecar {source} has format_version {version!r}; this dslnet_edge reads up to {SIDECAR_VERSION}")
        try:
            spec = InputSpec.from_dict(_required(data, "input_spec", source))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ArtifactError):
                raise
            raise ArtifactError(f"engine sidecar {source} has an invalid input_spec: {exc}") from None
        version = data.get("tensorrt_version", data.get("trt_version"))
        if not isinstance(version, str) or not _version_tuple(version):
            raise ArtifactError(f"engine sidecar {source} lacks a valid 'tensorrt_version' (found {version!r})")
        gpu = data.get("gpu") if isinstance(data.get("gpu"), Mapping) else {}
        gpu_name = gpu.get("name", data.get("gpu_name"))
        cc = _parse_compute_capability(gpu.get("compute_capability", data.get("compute_capability")))
        if not isinstance(gpu_name, str) or cc is None:
            raise ArtifactError(
                f"engine sidecar {source} lacks the GPU it was built for ('gpu': {{'name': ..., 'compute_capability': 'X.Y'}})"
            )
        plugin = _parse_plugin(data["css_plugin"] if "css_plugin" in data else data.get("plugin"), source)
        hardware = str(data.get("hardware_compatibility") or "none").lower()
        if hardware not in ("none", "ampere_plus", "same_compute_capability"):
            raise ArtifactError(f"engine sidecar {source}: unknown hardware_compatibility {hardware!r}")
        profile = data.get("profile") if isinstance(data.get("profile"), Mapping) else {}
        max_batch = profile.get("max_batch", data.get("max_batch"))
        if max_batch is None and isinstance(profile.get("max"), (list, tuple)) and profile["max"]:
            max_batch = profile["max"][0]  # export.build_engine writes the max input shape
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
            raise ArtifactError(f"engine sidecar {source}: profile max_batch must be a positive integer, got {max_batch!r}")
        return cls(
            input_spec=spec,
            tensorrt_version=version,
            gpu_name=gpu_name,
            compute_capability=cc,
            plugin=plugin,
            hardware_compatibility=hardware,
            version_compatible=bool(data.get("version_compatible", False)),
            precision=data.get("precision"),
            max_batch=max_batch,
            raw=dict(data),
        )


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """``model.engine`` -> ``model.engine.json`` (the file ``export.build_engine`` writes)."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def read_engine_sidecar(engine_path: str | os.PathLike) -> EngineSidecar:
    """Read and validate the sidecar of ``engine_path``."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise ArtifactNotFoundError(
            f"engine sidecar {path} does not exist; it holds the engine's input spec, TensorRT version, GPU and "
            f"plugin, and python -m export.build_engine writes it next to {Path(engine_path).name}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"engine sidecar {path} is not valid JSON (truncated or corrupt?): {exc}") from None
    return EngineSidecar.from_dict(data, source=str(path))


def check_compatibility(
    sidecar: EngineSidecar,
    *,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
    source: str,
) -> None:
    """Refuse an engine built for another TensorRT or GPU, before TensorRT tries to deserialize it.

    TensorRT engines are tied to the TensorRT version (major.minor.patch) and the GPU they were
    built on, unless built version-compatible (same major, runtime not older) or
    hardware-compatible (``ampere_plus``: any GPU of compute capability 8.0 or newer). The same
    compute capability with another GPU name runs but may be slower: that is a warning.
    """
    built, here = _version_tuple(sidecar.tensorrt_version)[:3], _version_tuple(tensorrt_version)[:3]
    rebuild = f"rebuild it here: python -m export.build_engine --onnx <model.onnx> --out {Path(source).name}"
    if sidecar.version_compatible:
        if built[:1] != here[:1] or here < built:
            raise EngineCompatibilityError(
                f"{source} was built version-compatible with TensorRT {sidecar.tensorrt_version}, which only runs on "
                f"TensorRT {built[0]}.x >= {sidecar.tensorrt_version}; this machine has TensorRT {tensorrt_version}; {rebuild}"
            )
    elif built != here:
        raise EngineCompatibilityError(
            f"{source} was built with TensorRT {sidecar.tensorrt_version} but this machine has TensorRT "
            f"{tensorrt_version}; engines only run under the TensorRT version that built them; {rebuild}"
        )
    cc_built, cc_here = tuple(sidecar.compute_capability), tuple(compute_capability)
    built_gpu = f"{sidecar.gpu_name} (compute capability {cc_built[0]}.{cc_built[1]})"
    this_gpu = f"{gpu_name} (compute capability {cc_here[0]}.{cc_here[1]})"
    if sidecar.hardware_compatibility == "ampere_plus":
        if cc_here < (8, 0):
            raise EngineCompatibilityError(
                f"{source} was built hardware-compatible for Ampere and newer GPUs; this GPU is {this_gpu}; {rebuild}"
            )
        return
    if cc_built != cc_here:
        raise EngineCompatibilityError(f"{source} was built for {built_gpu} but this GPU is {this_gpu}; {rebuild}")
    if _normalize_gpu_name(sidecar.gpu_name) != _normalize_gpu_name(gpu_name):
        warnings.warn(
            f"{source} was built on {built_gpu} and runs on {this_gpu}: same compute capability, so it runs, "
            "but its kernels were tuned for the other GPU; rebuild it here for best speed",
            RuntimeWarning,
            stacklevel=3,
        )


def _required(data: Mapping[str, Any], key: str, source: str) -> Any:
    if key not in data:
        raise ArtifactError(f"engine sidecar {source} lacks the {key!r} entry")
    return data[key]


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in str(version).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _parse_compute_capability(value: Any) -> tuple[int, int] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    if isinstance(value, (str, float)) and not isinstance(value, bool):
        major, _, minor = str(value).partition(".")
        if major.isdigit() and minor.isdigit():
            return int(major), int(minor)
    return None


def _parse_plugin(value: Any, source: str) -> PluginInfo | None:
    if value in (None, False, "", "none"):
        return None
    if isinstance(value, str):  # shorthand: the module to import
        value = {"module": value}
    if not isinstance(value, Mapping):
        raise ArtifactError(f"engine sidecar {source}: 'plugin' must be null or an object, got {type(value).__name__}")
    if "used" in value:  # export.build_engine's css_plugin entry
        if not value["used"]:
            return None
        value = {**value, "embedded": value.get("embedded", value.get("implementation") == "aot")}
    known = {f.name for f in dataclasses.fields(PluginInfo)}
    try:
        return PluginInfo(**{k: v for k, v in value.items() if k in known})
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"engine sidecar {source}: invalid 'plugin' entry: {exc}") from None


def _normalize_gpu_name(name: str) -> str:
    return " ".join(str(name).lower().replace("nvidia", "").split())


# ---------------------------------------------------------------------------------------------
# CUDA memory: cuda-python (what NVIDIA's samples use) or pycuda
# ---------------------------------------------------------------------------------------------
class _CudaPython:
    """Stream, pinned host and device memory through ``cuda.bindings.runtime``."""

    def __init__(self, device_index: int):
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 (the only path in 13.x)
        except ImportError:
            from cuda import cudart  # cuda-python 12.x before the bindings package; ImportError propagates
        self.rt = cudart
        self._host: list[int] = []
        self._device: list[int] = []
        self._call(cudart.cudaSetDevice(device_index), "cudaSetDevice")
        props = self._call(cudart.cudaGetDeviceProperties(device_index), "cudaGetDeviceProperties")
        name = props.name
        self.gpu_name = (name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, bytes) else str(name)).strip()
        self.compute_capability = (int(props.major), int(props.minor))
        self.stream = self._call(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.stream_handle = _native_handle(self.stream)

    def _call(self, result, what: str):
        err, rest = result[0], result[1:]
        if err != self.rt.cudaError_t.cudaSuccess:
            _, text = self.rt.cudaGetErrorString(err)
            message = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
            raise BackendError(f"CUDA runtime call {what} failed: {err.name if hasattr(err, 'name') else err} ({message})")
        return rest[0] if len(rest) == 1 else (rest or None)

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        ptr = self._call(self.rt.cudaMallocHost(count * dtype.itemsize), "cudaMallocHost")
        self._host.append(ptr)
        raw = (ctypes.c_byte * (count * dtype.itemsize)).from_address(int(ptr))
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)

    def device(self, nbytes: int) -> int:
        ptr = self._call(self.rt.cudaMalloc(nbytes), "cudaMalloc")
        self._device.append(ptr)
        return int(ptr)

    def to_device(self, dst: int, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync(dst, host.ctypes.data, host.nbytes, kind, self.stream), "cudaMemcpyAsync H2D")

    def to_host(self, host: np.ndarray, src: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync(host.ctypes.data, src, host.nbytes, kind, self.stream), "cudaMemcpyAsync D2H")

    def synchronize(self) -> None:
        self._call(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def free(self) -> None:
        for ptr in self._device:
            self.rt.cudaFree(ptr)
        for ptr in self._host:
            self.rt.cudaFreeHost(ptr)
        self._device, self._host = [], []
        if self.stream is not None:
            self.rt.cudaStreamDestroy(self.stream)
            self.stream = None


class _PyCuda:
    """The same operations through pycuda, for installations that have it instead of cuda-python."""

    def __init__(self, device_index: int):
        import pycuda.driver as cuda

        self.cuda = cuda
        cuda.init()
        device = cuda.Device(device_index)
        self.context = device.retain_primary_context()
        self.context.push()
        try:
            self.gpu_name = device.name()
            self.compute_capability = tuple(int(v) for v in device.compute_capability())
            self.stream = cuda.Stream()
            self.stream_handle = int(self.stream.handle)
        finally:
            self.context.pop()
        self._keep: list[Any] = []

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        self.context.push()
        try:
            array = self.cuda.pagelocked_empty(shape, dtype)
        finally:
            self.context.pop()
        self._keep.append(array)
        return array

    def device(self, nbytes: int) -> int:
        self.context.push()
        try:
            allocation = self.cuda.mem_alloc(nbytes)
        finally:
            self.context.pop()
        self._keep.append(allocation)
        return int(allocation)

    def to_device(self, dst: int, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(dst, host, self.stream)

    def to_host(self, host: np.ndarray, src: int) -> None:
        self.cuda.memcpy_dtoh_async(host, src, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def activate(self):
        self.context.push()

    def deactivate(self):
        self.context.pop()

    def free(self) -> None:
        self._keep.clear()  # pycuda frees allocations when they are collected
        self.stream = None


def _native_handle(obj) -> int:
    try:
        from cuda.bindings.utils import get_cuda_native_handle  # cuda-python 13: int(obj) is deprecated
    except ImportError:
        return int(obj)
    return int(get_cuda_native_handle(obj))


def _open_cuda(device_index: int):
    errors = []
    for opener in (_CudaPython, _PyCuda):
        try:
            return opener(device_index)
        except ImportError as exc:
            errors.append(str(exc))
    raise BackendError(
        "the TensorRT backend needs cuda-python (pip install 'cuda-python>=12') or pycuda to move buffers; "
        f"neither imports here ({'; '.join(errors)})"
    )


# ---------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------
class TensorRTBackend(Backend):
    """One deserialized TensorRT engine, one execution context, one CUDA stream.

    Args:
        path: the ``.engine``/``.plan`` file; ``<path>.json`` must sit beside it.
        device: ``"cuda"`` or ``"cuda:N"`` (the GPU to run on).
        max_batch: cap below the engine profile's max batch (pinned buffers are sized for it).

    Not thread-safe by itself (one context, reused buffers): :class:`~dslnet_edge.engine.Engine`
    serializes calls. For parallel GPU work create one Engine per thread.
    """

    name = "tensorrt"
    thread_safe = False

    def __init__(self, path: str | os.PathLike, *, device: str = "cuda", max_batch: int | None = None):
        self.path = Path(path)
        self.source = str(self.path)
        self._cuda = None
        self._lock = threading.Lock()
        if not self.path.is_file():
            raise ArtifactNotFoundError(f"TensorRT engine {self.path} does not exist")
        if self.path.stat().st_size == 0:
            raise ArtifactError(f"TensorRT engine {self.path} is empty (0 bytes): an interrupted build or copy?")
        self.sidecar = read_engine_sidecar(self.path)
        self.spec = self.sidecar.input_spec
        trt = _import_tensorrt()
        device_index = _cuda_device_index(device)
        self._cuda = _open_cuda(device_index)
        try:
            check_compatibility(
                self.sidecar,
                tensorrt_version=trt.__version__,
                gpu_name=self._cuda.gpu_name,
                compute_capability=self._cuda.compute_capability,
                source=self.source,
            )
            self._logger = _make_logger(trt)
            trt.init_libnvinfer_plugins(self._logger, "")  # NVIDIA's built-in plugins, as Polygraphy does
            _load_plugin(trt, self.sidecar.plugin, engine_dir=self.path.parent, source=self.source)
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._deserialize(trt)
            self._setup_io(trt, max_batch)
        except BaseException:
            self.close()
            raise

    # -- loading -----------------------------------------------------------------------------
    def _deserialize(self, trt):
        data = self.path.read_bytes()
        engine = self._runtime.deserialize_cuda_engine(data)  # None on failure; reasons go to the logger
        if engine is None:
            said = "; ".join(self._logger.errors[-3:]) or "no message"
            hint = " (it uses a plugin: is it the plugin the engine was built with?)" if self.sidecar.plugin else ""
            raise ArtifactError(
                f"TensorRT could not deserialize {self.source}: the file is corrupt or truncated, or does not match "
                f"its sidecar{hint}. TensorRT said: {said}"
            )
        return engine

    def _setup_io(self, trt, max_batch: int | None) -> None:
        engine = self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ArtifactError(f"{self.source}: expected one input and one output tensor, found inputs {inputs} and outputs {outputs}")
        self._input, self._output = inputs[0], outputs[0]
        shape = tuple(engine.get_tensor_shape(self._input))
        expected = (3, self.spec.height, self.spec.width)
        if len(shape) != 4 or shape[1:] != expected:
            raise ArtifactError(f"{self.source}: input {self._input!r} has shape {list(shape)}; its sidecar spec says [N, 3, {self.spec.height}, {self.spec.width}]")
        if shape[0] == -1:  # dynamic batch: the optimization profile bounds it
            _, _, profile_max = engine.get_tensor_profile_shape(self._input, 0)
            engine_max = int(profile_max[0])
        else:
            engine_max = int(shape[0])
        self._fixed_batch = None if shape[0] == -1 else int(shape[0])
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
            raise ValueError(f"max_batch must be a positive integer or None, got {max_batch!r}")
        self.max_batch = engine_max if max_batch is None else min(engine_max, max_batch)
        buffer_rows = self._fixed_batch or self.max_batch
        in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._input)))
        out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._output)))
        self._host_in = self._cuda.pinned((buffer_rows, *expected), in_dtype)
        self._host_out = self._cuda.pinned((buffer_rows, self.spec.feature_dim), out_dtype)
        self._dev_in = self._cuda.device(self._host_in.nbytes)
        self._dev_out = self._cuda.device(self._host_out.nbytes)
        self._context = engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"{self.source}: TensorRT could not create an execution context (out of GPU memory?)")
        # Addresses stay valid for the backend's life: set them once.
        self._context.set_tensor_address(self._input, self._dev_in)
        self._context.set_tensor_address(self._output, self._dev_out)

    # -- inference ---------------------------------------------------------------------------
    def input_buffer(self, n: int) -> np.ndarray | None:
        if self._host_in.dtype != np.float32 or n > self._host_in.shape[0]:
            return None
        return self._host_in

    def infer(self, batch: np.ndarray) -> np.ndarray:
        check_batch(batch, self.spec, self.max_batch, source=self.source)
        n = batch.shape[0]
        rows = self._fixed_batch or n
        with self._lock:
            if batch.ctypes.data != self._host_in.ctypes.data:  # not preprocessed in place: copy into pinned memory
                self._host_in[:n] = batch
            if rows > n:
                self._host_in[n:rows] = 0
            activate = getattr(self._cuda, "activate", None)
            if activate:
                activate()
            try:
                if not self._context.set_input_shape(self._input, (rows, *batch.shape[1:])):
                    raise ValueError(f"{self.source}: TensorRT refused input shape {(rows, *batch.shape[1:])} (outside the profile?)")
                self._cuda.to_device(self._dev_in, self._host_in[:rows])
                if not self._context.execute_async_v3(self._cuda.stream_handle):
                    said = "; ".join(self._logger.errors[-3:]) or "no message"
                    raise BackendError(f"{self.source}: TensorRT execution failed: {said}")
                self._cuda.to_host(self._host_out[:rows], self._dev_out)
                self._cuda.synchronize()
            finally:
                if activate:
                    self._cuda.deactivate()
            output = self._host_out[:n].astype(np.float32, copy=True)  # the pinned buffer is reused next call
        return check_output(output, n, self.spec, source=self.source)

    def close(self) -> None:
        for attr in ("_context", "_engine", "_runtime"):
            if hasattr(self, attr):
                setattr(self, attr, None)
        if self._cuda is not None:
            self._cuda.free()
            self._cuda = None


def _make_logger(trt):
    """A TensorRT ILogger that keeps error messages for our exceptions and passes warnings on."""

    class CollectingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)  # required by TensorRT's ILogger docs
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(str(msg))
            elif severity == trt.ILogger.Severity.WARNING:
                warnings.warn(f"TensorRT: {msg}", RuntimeWarning, stacklevel=2)

    return CollectingLogger()


def _import_tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendError(
            "the TensorRT backend needs the tensorrt package (NVIDIA's pip wheel `tensorrt`, or JetPack on Jetson); "
            f"it does not import here ({exc}). Use the .onnx model with ONNX Runtime instead."
        ) from None
    return tensorrt


def _cuda_device_index(device: str) -> int:
    kind, _, index = str(device).lower().partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"the TensorRT backend runs on a CUDA GPU: device must be 'cuda' or 'cuda:N', got {device!r}")
    return int(index or 0)


def _load_plugin(trt, plugin: PluginInfo | None, *, engine_dir: Path, source: str) -> None:
    """Register the engine's plugin before deserialization (no-op when it has none or embeds it)."""
    if plugin is None or plugin.embedded:
        return
    label = plugin.name or plugin.module or plugin.library
    if plugin.register:
        module_name, function_name = plugin.register.split(":", 1)
        try:
            register = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as exc:
            raise PluginError(
                f"{source} needs the TensorRT plugin {label}, registered by {plugin.register!r}, which does not "
                f"import here ({exc}); install the package that provides it"
            ) from None
        try:
            register()
        except Exception as exc:
            raise PluginError(f"{source}: registering the TensorRT plugin {label} with {plugin.register} failed: {exc}") from None
    if plugin.library:
        library = Path(plugin.library)
        library = library if library.is_absolute() else engine_dir / library
        if not library.is_file():
            raise PluginError(f"{source} needs the TensorRT plugin library {library}, which does not exist")
        if trt.get_plugin_registry().load_library(str(library)) is None:
            raise PluginError(f"{source}: TensorRT could not load the plugin library {library}")
    if plugin.module:
        try:
            importlib.import_module(plugin.module)  # importing it registers the plugin (tensorrt.plugin)
        except ImportError as exc:
            raise PluginError(
                f"{source} needs the TensorRT plugin {label}, registered by the Python module {plugin.module!r}, "
                f"which does not import here ({exc}); install the package that provides it"
            ) from None
    if plugin.name and not _plugin_registered(trt, plugin):
        loaded = plugin.register or plugin.module or plugin.library
        how = (
            f"after loading {loaded}"
            if loaded
            else "and its sidecar names nothing that registers it; register the plugin in this process before "
            "creating the Engine (for DSLNet's CSS plugin: export.plugin.trt_plugin.register_css_plugin()), or rebuild "
            "with an ahead-of-time plugin (TensorRT >= 10.9) or without it (--css-plugin off)"
        )
        raise PluginError(
            f"{source} needs the TensorRT plugin {plugin.name!r} (version {plugin.version}, namespace "
            f"{plugin.namespace!r}) but it is not registered {how}"
        )


def _plugin_registered(trt, plugin: PluginInfo) -> bool:
    registry = trt.get_plugin_registry()
    lookup = getattr(registry, "get_creator", None) or registry.get_plugin_creator  # TensorRT 10 / older
    try:
        return lookup(plugin.name, str(plugin.version), plugin.namespace) is not None
    except Exception:  # a lookup that raises means "not there" too
        return False
