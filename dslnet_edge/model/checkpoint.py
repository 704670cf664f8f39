"""Checkpoints: weights + InputSpec + model config (+ training state and metrics).

A checkpoint is a plain dict saved with ``torch.save`` and loaded with
``torch.load(weights_only=True)``, so loading one can never run code. Keys:

* ``format`` = ``"dslnet_edge.checkpoint"``, ``format_version``
* ``model_config`` (:class:`DSLNetConfig` as a dict), ``input_spec`` (:class:`InputSpec` dict)
* ``state_dict`` (model weights; ``inference_only=True`` leaves classifiers out)
* anything else the caller adds: ``epoch``, ``optimizer``, ``scheduler``, ``metrics``, ...
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from dslnet_edge._io import atomic_write_bytes
from dslnet_edge.errors import DslnetError
from dslnet_edge.model.dslnet import DSLNet, DSLNetConfig
from dslnet_edge.spec import InputSpec

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "CheckpointError", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "dslnet_edge.checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(DslnetError, ValueError):
    """A file that is not a readable dslnet_edge checkpoint."""


def save_checkpoint(
    path: str | os.PathLike,
    model: DSLNet,
    *,
    inference_only: bool = False,
    half: bool = False,
    **extra: Any,
) -> Path:
    """Save ``model`` (and ``extra`` entries) atomically to ``path``.

    ``inference_only`` drops classifiers and the auxiliary branch; ``half`` stores floating
    weights in float16 (they are cast back to float32 on load).
    """
    state = model.inference_state_dict() if inference_only else model.state_dict()
    state = {k: v.detach().cpu() for k, v in state.items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    config = model.config.to_dict()
    if inference_only:
        config["aux_branch"] = False
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "model_config": config,
        "input_spec": model.spec.to_dict(),
        "inference_only": inference_only,
        "state_dict": state,
        **extra,
    }
    path = Path(path)
    # Serialized in memory, written by Python: a full disk is then an OSError naming the reason
    # (torch.save's own file writer reports it as an opaque RuntimeError, "unexpected pos ...").
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    try:
        atomic_write_bytes(path, buffer.getbuffer())
    except OSError as exc:
        error = OSError(f"could not write checkpoint {path}: {exc.strerror or exc}")
        error.errno = exc.errno  # ENOSPC, EFBIG, EDQUOT... kept for callers; the message stays one plain line
        raise error from None
    return path


def _torch_reason(exc: BaseException) -> str:
    """The reason in torch.load's message, one line; never its advice to retry with the unsafe loader."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # the safe unpickler's finding follows its paragraph of advice
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _unsafe_content_message(path: Path, torch_message: str) -> str:
    """What is wrong with a file the safe loader refused, without PyTorch's advice to load it unsafely."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", torch_message)
    what = f"the Python object {found.group(1)}" if found else "Python objects other than tensors and plain values"
    return (
        f"checkpoint {path} was not loaded: it holds {what}, which a dslnet_edge checkpoint never contains "
        "(only tensors, numbers, strings, lists and dicts); loading it would mean running code from the file. "
        "Use a checkpoint written by train.run or dslnet_edge.model.checkpoint.save_checkpoint"
    )


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint dict. Raises :class:`CheckpointError` with the reason."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; expected a .pt file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise CheckpointError(_unsafe_content_message(path, str(exc))) from None
        raise CheckpointError(
            f"checkpoint {path} could not be read (truncated, corrupt or not a PyTorch file): {_torch_reason(exc)}"
        ) from None
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError, ValueError) as exc:
        reason = _torch_reason(exc)
        raise CheckpointError(
            f"checkpoint {path} could not be read (truncated, corrupt or not a PyTorch file): {reason}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is a PyTorch file but not a dslnet_edge checkpoint (no format={CHECKPOINT_FORMAT!r} key)"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format_version {version!r}; this dslnet_edge reads up to {CHECKPOINT_VERSION}")
    for key in ("model_config", "input_spec", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"checkpoint {path} lacks the {key!r} entry")
    try:
        InputSpec.from_dict(payload["input_spec"])
        DSLNetConfig.from_dict(payload["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has an invalid input_spec/model_config: {exc}") from None
    return payload


def model_from_checkpoint(payload: dict[str, Any], *, source: str = "checkpoint") -> DSLNet:
    """Build the model described by a loaded checkpoint dict and load its weights."""
    config = DSLNetConfig.from_dict(payload["model_config"])
    if payload.get("inference_only"):
        config = DSLNetConfig.from_dict({**config.to_dict(), "aux_branch": False})
    model = DSLNet(config, InputSpec.from_dict(payload["input_spec"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    strict = not payload.get("inference_only")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if strict:
        problems = missing + unexpected
    else:
        problems = [k for k in missing if k in model.inference_state_dict()] + unexpected
    if problems:
        raise CheckpointError(f"{source}: weights do not match the model config: {problems[:5]}")
    return model


def load_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> DSLNet:
    """Load a checkpoint into a :class:`DSLNet` in eval mode."""
    payload = load_checkpoint(path, map_location=map_location)
    return model_from_checkpoint(payload, source=str(path)).eval()
