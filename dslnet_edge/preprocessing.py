"""Person crops -> network input batch, per the model's :class:`InputSpec`.

This is the one preprocessing function of the project: evaluation, INT8 calibration,
training augmentation (through :func:`resize_crop`) and the runtime all use it, so
every stage sees the same pixels. Normalization (mean/std) is *not* done here: it lives
inside the model and the exported graphs, so it can never be applied twice or forgotten.

Input crops are what OpenCV gives: ``HxWx3 uint8`` in BGR order. Grayscale (``HxW`` or
``HxWx1``) and BGRA (``HxWx4``) crops are converted. Anything else raises ``ValueError``
naming the offending crop's index.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from dslnet_edge.spec import InputSpec

__all__ = ["preprocess", "resize_crop", "validate_crop", "to_three_channel_bgr"]

_CV2_INTERPOLATION = {
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


def validate_crop(crop: object, index: int = 0) -> np.ndarray:
    """Check one crop and return it as an ndarray; raise ``ValueError`` naming ``index``."""
    if crop is None:
        raise ValueError(f"crop {index} is None; expected an HxWx3 uint8 BGR image")
    if not isinstance(crop, np.ndarray):
        raise ValueError(f"crop {index} is a {type(crop).__name__}; expected a numpy.ndarray (HxWx3 uint8 BGR)")
    if crop.dtype != np.uint8:
        raise ValueError(f"crop {index} has dtype {crop.dtype}; expected uint8 (0-255 pixels as OpenCV reads them)")
    if crop.ndim not in (2, 3) or (crop.ndim == 3 and crop.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"crop {index} has shape {crop.shape}; expected HxWx3 (BGR), HxWx4 (BGRA), HxW or HxWx1 (grayscale)"
        )
    if crop.shape[0] == 0 or crop.shape[1] == 0:
        raise ValueError(f"crop {index} is empty (shape {crop.shape}); the detector box has zero size")
    return crop


def to_three_channel_bgr(crop: np.ndarray) -> np.ndarray:
    """Grayscale/BGRA -> BGR; BGR crops are returned as they are (no copy)."""
    if crop.ndim == 2 or crop.shape[2] == 1:
        return cv2.cvtColor(crop.reshape(crop.shape[0], crop.shape[1]), cv2.COLOR_GRAY2BGR)
    if crop.shape[2] == 4:
        return cv2.cvtColor(crop, cv2.COLOR_BGRA2BGR)
    return crop


def resize_crop(crop: np.ndarray, spec: InputSpec, *, index: int = 0) -> np.ndarray:
    """One BGR crop -> ``spec.height x spec.width x 3`` uint8 in ``spec.channel_order``.

    The resize every stage shares (training augmentation starts from it too).
    """
    crop = to_three_channel_bgr(validate_crop(crop, index))
    if crop.shape[0] != spec.height or crop.shape[1] != spec.width:
        crop = cv2.resize(crop, (spec.width, spec.height), interpolation=_CV2_INTERPOLATION[spec.interpolation])
    if spec.channel_order == "RGB":
        crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(crop)


def preprocess(
    crops: Sequence[np.ndarray] | np.ndarray,
    spec: InputSpec,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Turn person crops into the model's input batch.

    Args:
        crops: a sequence of crops (each ``HxWx3`` uint8 BGR as OpenCV gives them;
            grayscale and BGRA are converted), or one ``NxHxWx3`` uint8 array.
        spec: the model's input contract (size, channel order, interpolation).
        out: optional preallocated float32 array of at least ``N x 3 x H x W``
            (for example a pinned host buffer); filled in place and a view returned.

    Returns:
        ``float32`` array ``[N, 3, spec.height, spec.width]`` of raw pixels in
        ``spec.pixel_range`` (0-255), channels in ``spec.channel_order``.

    Example:
        >>> spec = InputSpec(height=4, width=2)
        >>> crop = np.zeros((8, 4, 3), np.uint8); crop[..., 2] = 255  # pure red in BGR
        >>> batch = preprocess([crop], spec)
        >>> batch.shape, float(batch[0, 0].mean()), float(batch[0, 2].mean())
        ((1, 3, 4, 2), 255.0, 0.0)
    """
    if isinstance(crops, np.ndarray) and crops.ndim == 4:
        crops = list(crops)
    if isinstance(crops, np.ndarray) and crops.ndim in (2, 3):
        raise ValueError(f"crops must be a list of crops; got one array of shape {crops.shape}: wrap it in a list")
    if not isinstance(crops, (list, tuple)):
        raise ValueError(f"crops must be a list of HxWx3 uint8 arrays, got {type(crops).__name__}")
    n = len(crops)
    shape = (n, 3, spec.height, spec.width)
    if out is None:
        batch = np.empty(shape, dtype=np.float32)
    else:
        if out.dtype != np.float32 or out.ndim != 4 or out.shape[0] < n or out.shape[1:] != shape[1:]:
            raise ValueError(f"out buffer has shape {out.shape} and dtype {out.dtype}; need float32 with shape {shape}")
        batch = out[:n]
    for i, crop in enumerate(crops):
        image = resize_crop(crop, spec, index=i)
        batch[i] = image.transpose(2, 0, 1)  # HWC uint8 -> CHW float32
    return batch
