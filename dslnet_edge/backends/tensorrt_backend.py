"""TensorRT backend: a serialized engine (``.engine``/``.plan``) and its JSON sidecar.

The sidecar (:mod:`dslnet_edge.backends.tensorrt_sidecar`, written by ``python -m export.build_engine``)
is read *before* the engine is touched, and every known way of failing is one clear error:

* sidecar missing or invalid                  -> :class:`ArtifactNotFoundError` / :class:`ArtifactError`
* built by another TensorRT version           -> :class:`EngineCompatibilityError` (versions named)
* built for a GPU of another compute capability -> :class:`EngineCompatibilityError` (GPUs named)
* needs a plugin that cannot be registered    -> :class:`PluginError`
* empty, truncated or corrupt engine file     -> :class:`ArtifactError` (with TensorRT's own log lines)

How a plugin is made available *before* deserialization, as NVIDIA's quickly_deployable_plugins
sample does it (register the plugin in the process, then deserialize):
https://github.com/NVIDIA/TensorRT/blob/main/samples/python/quickly_deployable_plugins/qdp_runner.py

* ``implementation: "aot"`` (TensorRT >= 10.9): the compiled kernel is embedded in the engine,
  which then needs neither Python nor the plugin's source
  (https://docs.nvidia.com/deeplearning/tensorrt/10.16.1/inference-library/plugins-python.html):
  nothing to load.
* ``implementation: "jit"``: TensorRT calls back into Python, so the plugin must be registered in
  this process: the sidecar's ``register`` entry point (``module:function``) is imported with
  :func:`importlib.import_module` and called (dslnet_edge never imports the exporter by itself).
  If the sidecar names nothing, registering the plugin yourself before building the Engine works too.

Inference uses TensorRT 10/11's named-tensor API (``num_io_tensors``/``get_tensor_name``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) with one CUDA stream and
pinned host buffers allocated once for the profile's max batch (:mod:`dslnet_edge.backends.cuda_memory`);
preprocessing writes into the pinned input buffer directly (:meth:`TensorRTBackend.input_buffer`).
Batches below the profile's min batch are padded with zero rows (and the rows dropped again); the
:class:`~dslnet_edge.engine.Engine` splits batches above ``max_batch``. Every TensorRT and CUDA
call runs with the backend's device made current on the calling thread. API references:

* ICudaEngine: https://docs.nvidia.com/deeplearning/tensorrt/api/python_api/infer/Core/Engine.html
* IExecutionContext: https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/ExecutionContext.html
* ILogger subclassing: https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Logger.html
* IPluginRegistry.get_creator:
  https://docs.nvidia.com/deeplearning/tensorrt/api/python_api/infer/Plugin/IPluginRegistry.html
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from dslnet_edge.backends.base import (
    ArtifactError,
    ArtifactNotFoundError,
    Backend,
    BackendError,
)
from dslnet_edge.backends.cuda_memory import open_cuda
from dslnet_edge.backends.tensorrt_sidecar import (
    EngineCompatibilityError,
    EnginePlugin,
    EngineSidecar,
    check_compatibility,
    read_engine_sidecar,
    sidecar_path,
)

__all__ = [
    "TensorRTBackend",
    "PluginError",
    "EngineSidecar",
    "EnginePlugin",
    "EngineCompatibilityError",
    "sidecar_path",
    "read_engine_sidecar",
    "check_compatibility",
    "tensorrt_available",
]


class PluginError(ArtifactError):
    """The engine needs a TensorRT plugin that could not be registered."""


def tensorrt_available() -> bool:
    """True when ``import tensorrt`` works here (tests use it to skip with a reason)."""
    try:
        importlib.import_module("tensorrt")
    except ImportError:
        return False
    return True


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
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
            raise ValueError(f"max_batch must be a positive integer or None, got {max_batch!r}")
        self._cuda = open_cuda(device_index)
        try:
            check_compatibility(
                self.sidecar,
                tensorrt_version=trt.__version__,
                gpu_name=self._cuda.gpu_name,
                compute_capability=self._cuda.compute_capability,
                source=self.source,
            )
            with self._cuda.active():  # runtime, engine and context belong to this device
                self._logger = _make_logger(trt)
                trt.init_libnvinfer_plugins(self._logger, "")  # NVIDIA's built-in plugins, as Polygraphy does
                _load_plugin(trt, self.sidecar.plugin, source=self.source)
                self._runtime = trt.Runtime(self._logger)
                self._engine = self._deserialize()
                self._setup_io(trt, max_batch)
        except BaseException:
            self.close()
            raise

    # -- loading -----------------------------------------------------------------------------
    def _deserialize(self):
        data = self.path.read_bytes()
        engine = self._runtime.deserialize_cuda_engine(data)  # None on failure; reasons go to the logger
        if engine is None:
            said = "; ".join(self._logger.errors[-3:]) or "no message"
            hint = " (it uses a plugin: is it the plugin the engine was built with?)" if self.sidecar.plugin.used else ""
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
            profile_min, _, profile_max = engine.get_tensor_profile_shape(self._input, 0)
            engine_min, engine_max = int(profile_min[0]), int(profile_max[0])
        else:
            engine_min = engine_max = int(shape[0])
        self._min_rows = engine_min  # smaller batches are padded up to it
        self.max_batch = engine_max if max_batch is None else min(engine_max, max_batch)
        buffer_rows = max(self.max_batch, engine_min)
        in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._input)))
        out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._output)))
        self._host_in = self._cuda.pinned((buffer_rows, *expected), in_dtype)
        self._host_out = self._cuda.pinned((buffer_rows, self.spec.feature_dim), out_dtype)
        self._dev_in = self._cuda.device(self._host_in.nbytes)
        self._dev_out = self._cuda.device(self._host_out.nbytes)
        self._context = engine.create_execution_context()
        if self._context is None:
            said = "; ".join(self._logger.errors[-3:]) or "no message"
            raise BackendError(f"{self.source}: TensorRT could not create an execution context (out of GPU memory?). "
                               f"TensorRT said: {said}")
        # Addresses stay valid for the backend's life: set them once.
        self._context.set_tensor_address(self._input, self._dev_in)
        self._context.set_tensor_address(self._output, self._dev_out)

    # -- inference ---------------------------------------------------------------------------
    def input_buffer(self, n: int) -> np.ndarray | None:
        if self._host_in.dtype != np.float32 or n > self._host_in.shape[0]:
            return None
        return self._host_in

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        rows = max(n, self._min_rows)
        with self._lock:
            if batch.ctypes.data != self._host_in.ctypes.data:  # not preprocessed in place: copy into pinned memory
                self._host_in[:n] = batch
            if rows > n:
                self._host_in[n:rows] = 0  # padding up to the profile's min batch (dropped below)
            with self._cuda.active():  # the device is per thread: this call may come from any thread
                if not self._context.set_input_shape(self._input, (rows, *batch.shape[1:])):
                    said = "; ".join(self._logger.errors[-3:]) or "no message"
                    raise BackendError(f"{self.source}: TensorRT refused input shape {(rows, *batch.shape[1:])}: {said}")
                self._cuda.to_device(self._dev_in, self._host_in[:rows])
                if not self._context.execute_async_v3(self._cuda.stream_handle):
                    said = "; ".join(self._logger.errors[-3:]) or "no message"
                    raise BackendError(f"{self.source}: TensorRT execution failed: {said}")
                self._cuda.to_host(self._host_out[:rows], self._dev_out)
                self._cuda.synchronize()
            return self._host_out[:n].astype(np.float32, copy=True)  # the pinned buffer is reused next call

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


def _load_plugin(trt, plugin: EnginePlugin, *, source: str) -> None:
    """Register the engine's plugin before deserialization (no-op when it has none or embeds it)."""
    if not plugin.used or plugin.embedded:
        return
    if plugin.register:
        module_name, function_name = plugin.register.split(":", 1)
        try:
            register = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError) as exc:
            raise PluginError(
                f"{source} needs the TensorRT plugin {plugin.name}, registered by {plugin.register!r}, which does not "
                f"import here ({exc}); install the package that provides it"
            ) from None
        try:
            register()
        except Exception as exc:
            raise PluginError(f"{source}: registering the TensorRT plugin {plugin.name} with {plugin.register} failed: {exc}") from None
    if not _plugin_registered(trt, plugin):
        how = (
            f"after calling {plugin.register}"
            if plugin.register
            else "and its sidecar names nothing that registers it; register the plugin in this process before "
            "creating the Engine (for DSLNet's CSS plugin: export.plugin.trt_plugin.register_css_plugin()), or rebuild "
            "with an ahead-of-time plugin (TensorRT >= 10.9) or without it (--css-plugin off)"
        )
        raise PluginError(
            f"{source} needs the TensorRT plugin {plugin.name!r} (version {plugin.version}, namespace "
            f"{plugin.namespace!r}) but it is not registered {how}"
        )


def _plugin_registered(trt, plugin: EnginePlugin) -> bool:
    try:
        return trt.get_plugin_registry().get_creator(plugin.name, str(plugin.version), plugin.namespace) is not None
    except Exception:  # a lookup that raises means "not there" too
        return False
