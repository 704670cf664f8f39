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
* :class:`RandomResizedCrop` - a random box (a fraction of the area, a jittered aspect ratio) resized
  back to the full size: scale and framing changes, like a detector's loose or tight box;
* :class:`RandomGrayscale` - the image in grey (three equal channels), so colour is not all there is.

Across images (a batch at a time): :func:`mix_batch` - mixup (Zhang et al., ICLR 2018) or cutmix
(Yun et al., ICCV 2019) between the batch's images, the "function matching" inputs of Beyer et al.
(CVPR 2022): with a teacher that answers for every mixed image, a small data set becomes a much
larger input distribution.

Channel order does not matter to any of them except the hue/saturation step, which is told the
order (``channel_order``) of the images it gets.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["Compose", "HorizontalFlip", "PadCrop", "ColorJitter", "RandomErasing", "RandomResizedCrop",
           "RandomGrayscale", "AugmentConfig", "build_transform", "MixedBatch", "mix_batch"]


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
class RandomResizedCrop:
    """A box of ``scale`` x the area and ``ratio`` x the image's aspect ratio, resized back to the size.

    The aspect ratio is jittered *relative to the image's own* (a person crop is tall: a square box
    would cut the person off), in log space; the box lies wholly inside the image.
    """

    p: float = 0.5
    scale: tuple[float, float] = (0.6, 1.0)
    ratio: tuple[float, float] = (0.8, 1.25)

    def __post_init__(self) -> None:
        _check_prob(self.p, "resized crop")
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ValueError(f"resized crop scale must be 0 < low <= high <= 1, got {self.scale}")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"resized crop ratio must be 0 < low <= high, got {self.ratio}")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.p:
            return image
        h, w = image.shape[:2]
        area = rng.uniform(*self.scale)
        ratio = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
        bw = min(w, max(1, int(round(w * math.sqrt(area * ratio)))))
        bh = min(h, max(1, int(round(h * math.sqrt(area / ratio)))))
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        return cv2.resize(image[y : y + bh, x : x + bw], (w, h), interpolation=cv2.INTER_LINEAR)


@dataclasses.dataclass
class RandomGrayscale:
    """The image's luma in all three channels, with probability ``p`` (told the channel order)."""

    p: float = 0.1
    channel_order: str = "RGB"

    def __post_init__(self) -> None:
        _check_prob(self.p, "grayscale")

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.p:
            return image
        code = cv2.COLOR_RGB2GRAY if self.channel_order == "RGB" else cv2.COLOR_BGR2GRAY
        return np.ascontiguousarray(np.repeat(cv2.cvtColor(image, code)[..., None], 3, axis=2))


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
    resized_crop: float = 0.0  # probability of a random resized crop (0 = off)
    crop_scale: tuple[float, float] = (0.6, 1.0)  # its area fraction
    crop_ratio: tuple[float, float] = (0.8, 1.25)  # its aspect ratio, relative to the image's
    grayscale: float = 0.0  # probability
    # across the batch (function matching; needs labels or an online teacher, see mix_batch):
    mixup: float = 0.0  # probability that a batch is mixed up
    cutmix: float = 0.0  # probability that a batch is cut-mixed (mixup + cutmix <= 1)
    mix_alpha: float = 1.0  # Beta(alpha, alpha) of the mixing weight

    def __post_init__(self) -> None:
        for name in ("flip", "color_jitter", "erase", "resized_crop", "grayscale", "mixup", "cutmix"):
            _check_prob(getattr(self, name), f"data.augment.{name}")
        if self.mixup + self.cutmix > 1.0:
            raise ValueError(f"data.augment.mixup + cutmix must be <= 1 (one mixing per batch), got {self.mixup} + {self.cutmix}")
        if not (math.isfinite(self.mix_alpha) and self.mix_alpha > 0):
            raise ValueError(f"data.augment.mix_alpha must be > 0, got {self.mix_alpha}")
        if self.pad < 0:
            raise ValueError(f"data.augment.pad must be >= 0, got {self.pad}")
        RandomResizedCrop(self.resized_crop, self.crop_scale, self.crop_ratio)  # validates scale and ratio

    @property
    def mixes(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0


def build_transform(cfg: AugmentConfig, *, height: int, channel_order: str = "RGB", mean=(0.485, 0.456, 0.406)) -> Compose:
    """The training augmentation pipeline for images of the given height (padding scales with it)."""
    fill = tuple(255.0 * m for m in (mean if channel_order == "RGB" else mean[::-1]))
    steps: list = []
    if cfg.flip > 0:
        steps.append(HorizontalFlip(cfg.flip))
    if cfg.resized_crop > 0:
        steps.append(RandomResizedCrop(cfg.resized_crop, cfg.crop_scale, cfg.crop_ratio))
    pad = int(round(cfg.pad * height / 256))
    if pad > 0:
        steps.append(PadCrop(pad))
    if cfg.color_jitter > 0:
        steps.append(ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=cfg.color_jitter,
                                 channel_order=channel_order))
    if cfg.grayscale > 0:
        steps.append(RandomGrayscale(cfg.grayscale, channel_order=channel_order))
    if cfg.erase > 0:
        steps.append(RandomErasing(cfg.erase, fill=fill))
    return Compose(steps)


# ---------------------------------------------------------------------------------------------
# Across the batch: mixup / cutmix
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MixedBatch:
    """A batch after :func:`mix_batch`: image ``i`` is ``lam`` of image ``i`` and ``1 - lam`` of
    image ``partner[i]`` (``kind`` "none": unmixed, ``lam`` 1, ``partner`` the identity)."""

    images: np.ndarray  # uint8 [B, H, W, 3]
    partner: np.ndarray  # int64 [B]
    lam: float
    kind: str  # none | mixup | cutmix

    @property
    def mixed(self) -> bool:
        return self.kind != "none"


def mix_batch(images: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> MixedBatch:
    """Mix the batch with itself (a random pairing) per ``cfg.mixup`` / ``cfg.cutmix``.

    Mixup blends whole images, ``round(lam * a + (1 - lam) * b)``; cutmix pastes a box of ``b``
    (``1 - lam`` of the area) into ``a``, and ``lam`` is then the area actually kept. The result stays
    uint8, so the teacher and the student get exactly the same pixels through the one preprocessing
    function. ``lam`` is drawn from Beta(alpha, alpha) and folded to ``>= 0.5`` (each image stays the
    larger part of itself). The pairing avoids fixed points (a batch of one is left unmixed).

    Example:
        >>> cfg = AugmentConfig(mixup=1.0)
        >>> out = mix_batch(np.zeros((4, 8, 4, 3), np.uint8), cfg, np.random.default_rng(0))
        >>> out.kind, out.images.shape, bool((out.partner != np.arange(4)).all()), 0.5 <= out.lam <= 1
        ('mixup', (4, 8, 4, 3), True, True)
    """
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"mix_batch needs uint8 [B, H, W, 3] images, got {images.dtype} {images.shape}")
    n = len(images)
    identity = np.arange(n, dtype=np.int64)
    draw = rng.random()
    kind = "mixup" if draw < cfg.mixup else "cutmix" if draw < cfg.mixup + cfg.cutmix else "none"
    if kind == "none" or n < 2:
        return MixedBatch(images, identity, 1.0, "none")
    partner = rng.permutation(n).astype(np.int64)
    for i in range(n):  # no image mixed with itself: swap a fixed point with its neighbour
        if partner[i] == i:
            j = (i + 1) % n
            partner[i], partner[j] = partner[j], partner[i]
    lam = float(rng.beta(cfg.mix_alpha, cfg.mix_alpha))
    lam = max(lam, 1.0 - lam)
    other = images[partner]
    if kind == "mixup":
        out = np.rint(lam * images.astype(np.float32) + (1.0 - lam) * other.astype(np.float32)).astype(np.uint8)
        return MixedBatch(out, partner, lam, kind)
    h, w = images.shape[1:3]
    cut = math.sqrt(1.0 - lam)
    bh, bw = int(round(h * cut)), int(round(w * cut))
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    y0, y1 = max(0, cy - bh // 2), min(h, cy + (bh - bh // 2))
    x0, x1 = max(0, cx - bw // 2), min(w, cx + (bw - bw // 2))
    out = images.copy()
    out[:, y0:y1, x0:x1] = other[:, y0:y1, x0:x1]
    kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return MixedBatch(out, partner, float(kept), kind)
