"""Augmentation: size and dtype kept, each transform does what it says, seeds reproduce."""

from __future__ import annotations

import numpy as np
import pytest

from train.transforms import AugmentConfig, ColorJitter, HorizontalFlip, PadCrop, RandomErasing, build_transform


@pytest.fixture
def image(rng) -> np.ndarray:
    return rng.integers(0, 256, size=(32, 16, 3), dtype=np.uint8)


def test_flip_always_and_never(image, rng):
    np.testing.assert_array_equal(HorizontalFlip(1.0)(image, rng), image[:, ::-1])
    assert HorizontalFlip(0.0)(image, rng) is image


def test_pad_crop_is_a_translation_with_zero_fill(image, rng):
    out = PadCrop(padding=3)(image, rng)
    assert out.shape == image.shape and out.dtype == np.uint8
    # the output equals the image shifted by some (dy, dx) in [-3, 3]^2 with zeros outside
    matches = []
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            shifted = np.zeros_like(image)
            ys, yd = (slice(dy, None), slice(None, 32 - dy)) if dy >= 0 else (slice(None, 32 + dy), slice(-dy, None))
            xs, xd = (slice(dx, None), slice(None, 16 - dx)) if dx >= 0 else (slice(None, 16 + dx), slice(-dx, None))
            shifted[yd, xd] = image[ys, xs]
            matches.append(np.array_equal(shifted, out))
    assert any(matches)


def test_random_erasing_fills_one_rectangle_with_the_mean(image):
    eraser = RandomErasing(p=1.0, area=(0.1, 0.2), fill=(1.0, 2.0, 3.0))
    out = eraser(image, np.random.default_rng(3))
    changed = np.any(out != image, axis=2)
    assert changed.any()
    ys, xs = np.nonzero(np.all(out == [1, 2, 3], axis=2))
    box = out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    assert np.all(box == [1, 2, 3])  # a solid rectangle
    assert 0.05 * 32 * 16 <= box.shape[0] * box.shape[1] <= 0.25 * 32 * 16


def test_colour_jitter_brightness_scales_pixels_by_the_drawn_factor():
    flat = np.full((8, 4, 3), 100, np.uint8)
    out = ColorJitter(brightness=0.5, contrast=0.0, saturation=0.0, p=1.0)(flat, np.random.default_rng(5))
    replay = np.random.default_rng(5)
    replay.random()  # the probability draw
    factor = replay.uniform(0.5, 1.5)
    assert factor != pytest.approx(1.0, abs=0.02)
    np.testing.assert_array_equal(out, np.full_like(flat, int(100 * factor)))


def test_colour_jitter_hue_keeps_grey_pixels_grey(rng):
    grey = np.full((8, 4, 3), 77, np.uint8)
    out = ColorJitter(brightness=0.0, contrast=0.0, saturation=0.3, hue=0.2, p=1.0)(grey, rng)
    np.testing.assert_array_equal(out, grey)


def test_pipeline_is_reproducible_from_the_seed_and_keeps_shape(image):
    t = build_transform(AugmentConfig(color_jitter=1.0, hue=0.1), height=32)
    a = t(image, np.random.default_rng(42))
    b = t(image, np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    assert a.shape == image.shape and a.dtype == np.uint8
    outs = {t(image, np.random.default_rng(s)).tobytes() for s in range(10)}
    assert len(outs) > 5


def test_padding_scales_with_height():
    t = build_transform(AugmentConfig(pad=10, flip=0, erase=0), height=128)
    assert [type(s).__name__ for s in t.transforms] == ["PadCrop"] and t.transforms[0].padding == 5
    assert build_transform(AugmentConfig(flip=0, erase=0), height=8).transforms == []


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: HorizontalFlip(1.5), "probability"),
        (lambda: PadCrop(-1), "padding"),
        (lambda: ColorJitter(brightness=1.0), "brightness"),
        (lambda: ColorJitter(hue=0.6), "hue"),
        (lambda: RandomErasing(area=(0.5, 0.1)), "area"),
    ],
)
def test_bad_parameters(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()
