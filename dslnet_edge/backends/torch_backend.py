"""PyTorch backend: a dslnet_edge ``.pt`` checkpoint (or an in-memory DSLNet) on the CPU or a CUDA GPU.

Useful for checking an exported artefact against the model it came from, and for running a
freshly trained checkpoint before it is exported. The input contract comes from the
checkpoint (:func:`dslnet_edge.model.checkpoint.load_model`); torch is imported when a backend
is built, never at ``import dslnet_edge`` time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dslnet_edge.backends.base import ArtifactNotFoundError, Backend, BackendError

if TYPE_CHECKING:
    from dslnet_edge.model import DSLNet

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """A DSLNet in eval mode under ``torch.inference_mode``.

    Args:
        path: a dslnet_edge checkpoint (``.pt``); fp16 inference-only checkpoints are loaded as float32.
        device: ``"cpu"`` (default) or ``"cuda"``/``"cuda:N"``.
        max_batch: largest batch per forward pass (None: no limit).

    Use :meth:`from_model` to wrap a model that is already in memory.
    """

    name = "torch"
    thread_safe = True  # an eval-mode forward under inference_mode keeps no state between calls

    def __init__(self, path: str | os.PathLike, *, device: str = "cpu", max_batch: int | None = None):
        torch = _import_torch()
        path = Path(path)
        if not path.exists():
            raise ArtifactNotFoundError(f"checkpoint {path} does not exist")
        from dslnet_edge.model.checkpoint import load_model  # CheckpointError (a ValueError) names the file

        dev = _device(torch, device)
        self._setup(load_model(path, map_location="cpu"), dev, max_batch, source=str(path))

    @classmethod
    def from_model(
        cls,
        model: DSLNet,
        *,
        device: str = "cpu",
        max_batch: int | None = None,
        source: str = "in-memory DSLNet",
        channels_last: bool = False,
    ) -> TorchBackend:
        """Wrap an in-memory :class:`~dslnet_edge.model.DSLNet` (it is switched to eval mode).

        ``channels_last`` feeds the batches in channels-last memory format (faster on CPUs and
        tensor cores for a model trained or converted that way; the numbers are the same maths).
        """
        torch = _import_torch()
        self = cls.__new__(cls)
        self._setup(model, _device(torch, device), max_batch, source=source, channels_last=channels_last)
        return self

    def _setup(self, model: DSLNet, device, max_batch: int | None, *, source: str, channels_last: bool = False) -> None:
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1):
            raise ValueError(f"max_batch must be a positive integer or None, got {max_batch!r}")
        self.source = source
        self.device = device
        self.model = model.to(device).eval()
        self.spec = model.spec
        self.max_batch = max_batch
        self.channels_last = bool(channels_last)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float().cpu().numpy()

    def close(self) -> None:
        self.model = None

    def __repr__(self) -> str:
        return f"TorchBackend({self.source!r}, device={str(self.device)!r}, max_batch={self.max_batch})"


def _import_torch():
    try:
        import torch
    except ImportError as exc:
        raise BackendError(f"the PyTorch backend needs torch (pip install 'dslnet-edge[train]'): {exc}") from None
    return torch


def _device(torch, device: str):
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device ('cpu', 'cuda', 'cuda:N'): {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"device {device!r} was asked for but torch sees no CUDA GPU here; use device='cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: the PyTorch backend runs on 'cpu' or 'cuda[:N]'")
    return dev
