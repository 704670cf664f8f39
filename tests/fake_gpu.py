"""A stand-in GPU for tests on machines without one: ``cuda.bindings.runtime`` and ``tensorrt`` fakes.

Only what :class:`dslnet_edge.backends.tensorrt_backend.TensorRTBackend` and ``export.build_engine``
call exists here, with the behaviour TensorRT and the CUDA runtime document for it:

* CUDA: the current device is per thread (``cudaSetDevice``); memory is host memory standing in for
  device memory, copied with ``memmove``; an execution context works only with the device that was
  current when it was created current on the calling thread (a kernel launched on another device fails).
* TensorRT: a "serialized engine" is ``FAKEENGINE`` + a JSON header (profile, failure switches) + the
  bytes of a real ONNX model, which ``execute_async_v3`` runs in ONNX Runtime on the bound buffers;
  ``set_input_shape`` refuses batches outside the profile and returns False, as TensorRT does;
  ``deserialize_cuda_engine`` logs an error and returns None for anything else.

Every public name the fakes define is checked against the real TensorRT bindings of each version by
``tests/export/test_tensorrt_contract.py``, so code that runs here uses only names TensorRT has.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import json
import sys
import threading
import types

import numpy as np

MAGIC = b"FAKEENGINE\n"


def fake_engine_bytes(onnx_bytes: bytes, *, min_batch=1, opt_batch=4, max_batch=8, fail_context=False) -> bytes:
    header = {"min": min_batch, "opt": opt_batch, "max": max_batch, "fail_context": fail_context}
    return MAGIC + json.dumps(header).encode() + b"\n" + onnx_bytes


# ---------------------------------------------------------------------------------------------
# cuda.bindings.runtime
# ---------------------------------------------------------------------------------------------
class cudaError_t(enum.IntEnum):  # noqa: N801 - the CUDA name
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorInvalidDevice = 101


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class FakeCudart(types.ModuleType):
    """The CUDA runtime calls used, returning ``(error, value...)`` tuples like cuda-python."""

    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind

    def __init__(self, device_names=("NVIDIA H200", "NVIDIA H200"), compute_capability=(9, 0)):
        super().__init__("cuda.bindings.runtime")
        self.device_names = list(device_names)
        self.cc = compute_capability
        self._local = threading.local()
        self._buffers: dict[int, object] = {}
        self.device_of: dict[int, int] = {}  # device pointer -> device it was allocated on
        self.calls: list[tuple[int, str, object]] = []  # (thread id, call, detail)

    # the per-thread current device (CUDA runtime semantics: device 0 until cudaSetDevice)
    @property
    def current(self) -> int:
        return getattr(self._local, "device", 0)

    def _log(self, name, detail=None):
        self.calls.append((threading.get_ident(), name, detail))

    def cudaGetDeviceCount(self):  # noqa: N802
        return cudaError_t.cudaSuccess, len(self.device_names)

    def cudaSetDevice(self, index):  # noqa: N802
        self._log("cudaSetDevice", index)
        if not 0 <= index < len(self.device_names):
            return (cudaError_t.cudaErrorInvalidDevice,)
        self._local.device = index
        return (cudaError_t.cudaSuccess,)

    def cudaGetDeviceProperties(self, index):  # noqa: N802
        props = types.SimpleNamespace(name=self.device_names[index].encode() + b"\0" * 8, major=self.cc[0], minor=self.cc[1])
        return cudaError_t.cudaSuccess, props

    def cudaGetErrorString(self, err):  # noqa: N802
        return cudaError_t.cudaSuccess, f"error {int(err)}".encode()

    def cudaStreamCreate(self):  # noqa: N802
        return cudaError_t.cudaSuccess, 7

    def cudaStreamDestroy(self, stream):  # noqa: N802
        return (cudaError_t.cudaSuccess,)

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (cudaError_t.cudaSuccess,)

    def _alloc(self, nbytes):
        buffer = ctypes.create_string_buffer(max(int(nbytes), 1))
        address = ctypes.addressof(buffer)
        self._buffers[address] = buffer
        return address

    def cudaMallocHost(self, nbytes):  # noqa: N802
        return cudaError_t.cudaSuccess, self._alloc(nbytes)

    def cudaMalloc(self, nbytes):  # noqa: N802
        address = self._alloc(nbytes)
        self.device_of[address] = self.current
        self._log("cudaMalloc", self.current)
        return cudaError_t.cudaSuccess, address

    def cudaFree(self, ptr):  # noqa: N802
        self._buffers.pop(int(ptr), None)
        return (cudaError_t.cudaSuccess,)

    cudaFreeHost = cudaFree

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):  # noqa: N802
        self._log("cudaMemcpyAsync", self.current)
        ctypes.memmove(int(dst), int(src), int(nbytes))
        return (cudaError_t.cudaSuccess,)


# ---------------------------------------------------------------------------------------------
# tensorrt
# ---------------------------------------------------------------------------------------------
class _Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    Severity = _Severity

    def __init__(self):
        pass

    def log(self, severity, msg):
        pass


class Logger(ILogger):
    VERBOSE, INFO, WARNING, ERROR, INTERNAL_ERROR = (_Severity.VERBOSE, _Severity.INFO, _Severity.WARNING,
                                                     _Severity.ERROR, _Severity.INTERNAL_ERROR)

    def __init__(self, min_severity=_Severity.WARNING):
        super().__init__()


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1


class IPluginRegistry:
    def __init__(self):
        self.creators: dict[tuple[str, str, str], object] = {}

    def get_creator(self, name, version, namespace=""):
        return self.creators.get((name, str(version), namespace))


class IExecutionContext:
    def __init__(self, engine, device):
        self.engine, self.device = engine, device
        self.addresses: dict[str, int] = {}
        self.shape = None

    def set_input_shape(self, name, shape):
        lo, hi = self.engine.header["min"], self.engine.header["max"]
        if name != "images" or not lo <= shape[0] <= hi:
            self.engine.logger.log(_Severity.ERROR, f"IExecutionContext::setInputShape: {tuple(shape)} is outside the "
                                                    f"profile [{lo}, {hi}]")
            return False
        self.shape = tuple(shape)
        return True

    def set_tensor_address(self, name, address):
        self.addresses[name] = int(address)
        return True

    def execute_async_v3(self, stream_handle):
        cuda = self.engine.cuda
        if self.device is None or cuda.current != self.device:
            self.engine.logger.log(_Severity.ERROR, f"the context belongs to device {self.device}, the thread's current "
                                                    f"device is {cuda.current}: invalid resource handle")
            return False
        if self.shape is None:
            return False
        count = int(np.prod(self.shape))
        x = np.ctypeslib.as_array((ctypes.c_float * count).from_address(self.addresses["images"])).reshape(self.shape)
        y = self.engine.session.run(None, {"images": x.copy()})[0].astype(np.float32)
        ctypes.memmove(self.addresses["embeddings"], y.ctypes.data, y.nbytes)
        self.engine.executed.append(self.shape[0])
        return True


class ICudaEngine:
    def __init__(self, header, onnx_bytes, logger, cuda):
        import onnx
        import onnxruntime as ort

        self.header, self.logger, self.cuda = header, logger, cuda
        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        model = onnx.load_from_string(onnx_bytes)
        dims = model.graph.input[0].type.tensor_type.shape.dim
        self._in = (-1, *[d.dim_value for d in dims[1:]])
        self._out = (-1, model.graph.output[0].type.tensor_type.shape.dim[1].dim_value or 0)
        self.num_io_tensors = 2
        self.executed: list[int] = []

    def get_tensor_name(self, index):
        return ("images", "embeddings")[index]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == "images" else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return self._in if name == "images" else self._out

    def get_tensor_dtype(self, name):
        return DataType.FLOAT

    def get_tensor_profile_shape(self, name, profile_index):
        h = self.header
        return tuple((b, *self._in[1:]) for b in (h["min"], h["opt"], h["max"]))

    def create_execution_context(self):
        if self.header.get("fail_context"):
            self.logger.log(_Severity.ERROR, "out of device memory")
            return None
        return IExecutionContext(self, self.cuda.current)


class Runtime:
    def __init__(self, logger):
        self.logger = logger

    def deserialize_cuda_engine(self, data):
        data = bytes(data)
        if not data.startswith(MAGIC):
            self.logger.log(_Severity.ERROR, "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (magic tag mismatch)")
            return None
        header, onnx_bytes = data[len(MAGIC):].split(b"\n", 1)
        return ICudaEngine(json.loads(header), onnx_bytes, self.logger, sys.modules.get("cuda.bindings.runtime") or _PYCUDA)


class NetworkDefinitionCreationFlag(enum.Enum):
    STRONGLY_TYPED = 1


class FakeTensorRT(types.ModuleType):
    ILogger = ILogger
    Logger = Logger
    Runtime = Runtime
    TensorIOMode = TensorIOMode
    DataType = DataType
    NetworkDefinitionCreationFlag = NetworkDefinitionCreationFlag
    float32 = DataType.FLOAT
    float16 = DataType.HALF

    def __init__(self, version="10.16.1.11"):
        super().__init__("tensorrt")
        self.__version__ = version
        self.registry = IPluginRegistry()

    def init_libnvinfer_plugins(self, logger, namespace):
        return True

    def get_plugin_registry(self):
        return self.registry

    @staticmethod
    def nptype(dtype):
        return {DataType.FLOAT: np.float32, DataType.HALF: np.float16}[dtype]


#: The fakes' public names by the TensorRT class they stand for (checked against the real bindings).
FAKE_TENSORRT_NAMES = {
    "tensorrt": ["ILogger", "Logger", "Runtime", "TensorIOMode", "DataType", "NetworkDefinitionCreationFlag",
                 "float32", "float16", "init_libnvinfer_plugins", "get_plugin_registry", "nptype", "__version__"],
    "ILogger": ["Severity", "log", "INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"],
    "Logger": ["VERBOSE", "INFO", "WARNING", "ERROR", "INTERNAL_ERROR"],
    "TensorIOMode": ["INPUT", "OUTPUT", "NONE"],
    "DataType": ["FLOAT", "HALF"],
    "NetworkDefinitionCreationFlag": ["STRONGLY_TYPED"],
    "IPluginRegistry": ["get_creator"],
    "Runtime": ["deserialize_cuda_engine"],
    "ICudaEngine": ["num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_shape", "get_tensor_dtype",
                    "get_tensor_profile_shape", "create_execution_context"],
    "IExecutionContext": ["set_input_shape", "set_tensor_address", "execute_async_v3"],
}


# ---------------------------------------------------------------------------------------------
# pycuda.driver (the driver API: the current context is per thread, pushed and popped)
# ---------------------------------------------------------------------------------------------
class FakePyCuda(types.ModuleType):
    def __init__(self, device_names):
        super().__init__("pycuda.driver")
        self.device_names = list(device_names)
        self._local = threading.local()
        self.device_of: dict[int, int | None] = {}
        self._keep = []
        fake = self

        class Context:
            def __init__(self, index):
                self.index = index

            def push(self):
                fake._stack().append(self.index)

            def pop(self):
                fake._stack().pop()

        class Device:
            def __init__(self, index):
                if not 0 <= index < len(fake.device_names):
                    raise RuntimeError(f"cuDeviceGet failed: invalid device ordinal {index}")
                self.index = index

            def retain_primary_context(self):
                return Context(self.index)

            def name(self):
                return fake.device_names[self.index]

            def compute_capability(self):
                return (9, 0)

        class Stream:
            handle = 7

            def synchronize(self):
                pass

        self.Device, self.Stream = Device, Stream

    def _stack(self):
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    @property
    def current(self):  # the device of the thread's current context; None when none is pushed
        stack = self._stack()
        return stack[-1] if stack else None

    def init(self):
        pass

    def pagelocked_empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def mem_alloc(self, nbytes):
        buffer = ctypes.create_string_buffer(max(int(nbytes), 1))
        self._keep.append(buffer)
        self.device_of[ctypes.addressof(buffer)] = self.current
        return ctypes.addressof(buffer)

    def memcpy_htod_async(self, dst, host, stream):
        ctypes.memmove(int(dst), host.ctypes.data, host.nbytes)

    def memcpy_dtoh_async(self, host, src, stream):
        ctypes.memmove(host.ctypes.data, int(src), host.nbytes)


_PYCUDA = None


@contextlib.contextmanager
def fake_gpu(monkeypatch, *, version="10.16.1.11", devices=("NVIDIA H200", "NVIDIA H200"), pycuda=False):
    """Install the fakes as ``tensorrt`` and ``cuda.bindings.runtime`` (or, with ``pycuda``, ``pycuda.driver``
    with cuda-python absent) for the duration (``monkeypatch``)."""
    global _PYCUDA
    trt = FakeTensorRT(version)
    if pycuda:
        driver = _PYCUDA = FakePyCuda(devices)
        package = types.ModuleType("pycuda")
        package.driver, package.__path__ = driver, []
        for name, module in (("pycuda", package), ("pycuda.driver", driver), ("tensorrt", trt), ("cuda", None),
                             ("cuda.bindings", None), ("cuda.bindings.runtime", None), ("tensorrt.plugin", None)):
            monkeypatch.setitem(sys.modules, name, module)
        yield types.SimpleNamespace(driver=driver, trt=trt)
        _PYCUDA = None
        return
    cudart = FakeCudart(devices)
    cuda_pkg = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda_pkg.bindings = bindings
    cuda_pkg.__path__ = []
    bindings.__path__ = []
    for name, module in (("cuda", cuda_pkg), ("cuda.bindings", bindings), ("cuda.bindings.runtime", cudart),
                         ("tensorrt", trt)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "cuda.bindings.utils", None)  # cuda-python 12: int(stream) is the handle
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", None)  # no Python plugins in this fake
    yield types.SimpleNamespace(cudart=cudart, trt=trt)
