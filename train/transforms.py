"""Training augmentation in numpy/OpenCV, on images already resized by the runtime's resize.

Every transform is a callable ``(image uint8 [H, W, 3], rng) -> image uint8 [H, W, 3]`` that keeps
the size: the images come out of :class:`train.data.ImageCache`, which resized them with
:func:`dslnet_edge.preprocessing.resize_crop` (the one resize of the project), so training sees
exactly the geometry the deployed model sees, plus random perturbations:

* :class:`HorizontalFlip` - a person seen from the other side;
* :class:`PadCrop` - pad by ``padding`` pixels then crop back at a random offset (small translations);
* :class:`ColorJitter` - brightness, contrast, saturation (and optional hue) changes, for
  cross-camera colour differences;
* :class:`RandomErasing` (Zhong et al., AAAI 2020) - a random rectangle replaced by the mean pixel,
  for occlusions. Mean-pixel fill is 0 after the model's internal normalization.

Channel order does not matter to any of them except the hue/saturation step, which is told the
order (``channel_order``) of the images it gets.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["Compose", "HorizontalFlip", "PadCrop", "ColorJitter", "RandomErasing", "AugmentConfig", "build_transform"]


class Compose:
    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for t in self.transforms:
            image = t(image, rng)
        return image

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def _check_prob(p: float, name: str) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} probability must be in [0, 1], got {p}")
    return float(p)


@dataclasses.dataclass
class HorizontalFlip:
    p: float = 0.5

    def __post_init__(self) -> None:
        _check_prob(self.p, "flip")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.ascontiguousarray(image[:, ::-1]) if rng.random() < self.p else image


@dataclasses.dataclass
class PadCrop:
    """Zero-pad by ``padding`` pixels on each side, then crop the original size at a random offset."""

    padding: int = 10
    p: float = 1.0

    def __post_init__(self) -> None:
        _check_prob(self.p, "pad-crop")
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0, got {self.padding}")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.padding == 0 or rng.random() >= self.p:
            return image
        h, w = image.shape[:2]
        pad = self.padding
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        y, x = rng.integers(0, 2 * pad + 1, size=2)
        return np.ascontiguousarray(padded[y : y + h, x : x + w])


@dataclasses.dataclass
class ColorJitter:
    """Random brightness/contrast/saturation (factors in ``[1 - v, 1 + v]``) and hue (shift in turns)."""

    brightness: float = 0.2
    contrast: float = 0.15
    saturation: float = 0.0
    hue: float = 0.0
    p: float = 0.5
    channel_order: str = "RGB"

    def __post_init__(self) -> None:
        _check_prob(self.p, "colour jitter")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"colour jitter {name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"colour jitter hue must be in [0, 0.5], got {self.hue}")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.p:
            return image
        out = image.astype(np.float32)
        if self.brightness:
            out *= rng.uniform(1 - self.brightness, 1 + self.brightness)
        if self.contrast:
            mean = out.mean()
            out = (out - mean) * rng.uniform(1 - self.contrast, 1 + self.contrast) + mean
        if self.saturation:
            grey = out @ np.array([0.299, 0.587, 0.114] if self.channel_order == "RGB" else [0.114, 0.587, 0.299],
                                  dtype=np.float32)
            out = (out - grey[..., None]) * rng.uniform(1 - self.saturation, 1 + self.saturation) + grey[..., None]
        out = np.clip(out, 0, 255).astype(np.uint8)
        if self.hue:
            to_hsv, from_hsv = ((cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB) if self.channel_order == "RGB"
                                else (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR))
            hsv = cv2.cvtColor(out, to_hsv)
            shift = int(round(rng.uniform(-self.hue, self.hue) * 180))  # OpenCV hue is 0..179
            hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
            out = cv2.cvtColor(hsv, from_hsv)
        return out


@dataclasses.dataclass
class RandomErasing:
    """Replace one random rectangle (area fraction ``area``, aspect ratio ``aspect``) by ``fill``."""

    p: float = 0.5
    area: tuple[float, float] = (0.02, 0.4)
    aspect: tuple[float, float] = (0.3, 1 / 0.3)
    fill: tuple[float, float, float] = (123.675, 116.28, 103.53)  # ImageNet mean x 255 (RGB)
    attempts: int = 20

    def __post_init__(self) -> None:
        _check_prob(self.p, "random erasing")
        if not 0.0 < self.area[0] <= self.area[1] < 1.0:
            raise ValueError(f"random erasing area must be 0 < low <= high < 1, got {self.area}")
        if not 0.0 < self.aspect[0] <= self.aspect[1]:
            raise ValueError(f"random erasing aspect must be 0 < low <= high, got {self.aspect}")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.p:
            return image
        h, w = image.shape[:2]
        for _ in range(self.attempts):
            target = rng.uniform(*self.area) * h * w
            ratio = math.exp(rng.uniform(math.log(self.aspect[0]), math.log(self.aspect[1])))
            eh, ew = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
            if 0 < eh < h and 0 < ew < w:
                y, x = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
                out = image.copy()
                out[y : y + eh, x : x + ew] = np.round(np.asarray(self.fill)).astype(np.uint8)
                return out
        return image


@dataclasses.dataclass
class AugmentConfig:
    """Which augmentations, with what strength (``data.augment.*`` in the training config)."""

    flip: float = 0.5  # probability
    pad: int = 10  # pixels at 256x128; scaled with the input height
    color_jitter: float = 0.0  # probability (0 = off)
    brightness: float = 0.2
    contrast: float = 0.15
    saturation: float = 0.1
    hue: float = 0.0
    erase: float = 0.5  # probability


def build_transform(cfg: AugmentConfig, *, height: int, channel_order: str = "RGB", mean=(0.485, 0.456, 0.406)) -> Compose:
    """The training augmentation pipeline for images of the given height (padding scales with it)."""
    fill = tuple(255.0 * m for m in (mean if channel_order == "RGB" else mean[::-1]))
    steps: list = []
    if cfg.flip > 0:
        steps.append(HorizontalFlip(cfg.flip))
    pad = int(round(cfg.pad * height / 256))
    if pad > 0:
        steps.append(PadCrop(pad))
    if cfg.color_jitter > 0:
        steps.append(ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=cfg.color_jitter,
                                 channel_order=channel_order))
    if cfg.erase > 0:
        steps.append(RandomErasing(cfg.erase, fill=fill))
    return Compose(steps)
