"""CUDA memory for the TensorRT backend: one stream, pinned host buffers, device buffers.

Through cuda-python (``cuda.bindings.runtime``, what NVIDIA's samples use; ``from cuda import cudart``
for older 12.x installs) or pycuda. Buffers, stream and copies as in NVIDIA's
``samples/python/common_runtime.py``: cudaMallocHost, cudaMalloc, cudaStreamCreate, cudaMemcpyAsync,
cudaStreamSynchronize. cuda-python import path: ``cuda.bindings.runtime`` (cuda-python >= 12.6; the old
``cuda.cudart`` trampoline was removed in 13.0:
https://nvidia.github.io/cuda-python/cuda-bindings/latest/release/13.0.0-notes.html); pycuda:
https://documen.tician.de/pycuda/driver.html .

The current CUDA device (runtime API) and the current context (pycuda, driver API) are per *thread*:
every call that touches the GPU runs inside :meth:`active`, which selects the device (cuda-python:
``cudaSetDevice``) or pushes the device's context (pycuda) on the calling thread, so a backend made on
one thread for ``cuda:1`` and used from another still works on device 1.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from typing import Any

import numpy as np

from dslnet_edge.backends.base import BackendError

__all__ = ["CudaRuntimeMemory", "PyCudaMemory", "open_cuda"]


class CudaRuntimeMemory:
    """Stream, pinned host and device memory through ``cuda.bindings.runtime``."""

    def __init__(self, device_index: int):
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 (the only path in 13.x)
        except ImportError:
            from cuda import cudart  # cuda-python 12.x before the bindings package; ImportError propagates
        self.rt = cudart
        self.device_index = device_index
        self._host: list[int] = []
        self._device: list[int] = []
        self._call(cudart.cudaSetDevice(device_index), "cudaSetDevice")
        props = self._call(cudart.cudaGetDeviceProperties(device_index), "cudaGetDeviceProperties")
        name = props.name
        self.gpu_name = (name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, bytes) else str(name)).strip()
        self.compute_capability = (int(props.major), int(props.minor))
        self.stream = self._call(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.stream_handle = _native_handle(self.stream)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """This object's device on the calling thread (the runtime API's current device is per thread)."""
        self._call(self.rt.cudaSetDevice(self.device_index), "cudaSetDevice")
        yield

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


class PyCudaMemory:
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

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """This device's context, pushed on the calling thread for the duration."""
        self.context.push()
        try:
            yield
        finally:
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


def open_cuda(device_index: int):
    errors = []
    for opener in (CudaRuntimeMemory, PyCudaMemory):
        try:
            return opener(device_index)
        except ImportError as exc:
            errors.append(str(exc))
    raise BackendError(
        "the TensorRT backend needs cuda-python (pip install 'cuda-python>=12') or pycuda to move buffers; "
        f"neither imports here ({'; '.join(errors)})"
    )
