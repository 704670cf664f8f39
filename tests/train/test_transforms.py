"""Augmentation: size and dtype kept, each transform does what it says, seeds reproduce."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from train.transforms import (
    AugmentConfig,
    ColorJitter,
    HorizontalFlip,
    PadCrop,
    RandomErasing,
    RandomGrayscale,
    RandomResizedCrop,
    build_transform,
    mix_batch,
)


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
        (lambda: RandomResizedCrop(scale=(0.0, 1.0)), "scale"),
        (lambda: RandomResizedCrop(scale=(0.5, 1.2)), "scale"),
        (lambda: RandomResizedCrop(ratio=(2.0, 1.0)), "ratio"),
        (lambda: RandomGrayscale(p=-0.1), "probability"),
        (lambda: AugmentConfig(mixup=0.6, cutmix=0.5), r"mixup \+ cutmix must be <= 1"),
        (lambda: AugmentConfig(cutmix=1.5), "cutmix probability"),
        (lambda: AugmentConfig(mix_alpha=0.0), "mix_alpha"),
        (lambda: AugmentConfig(crop_scale=(0.9, 0.1)), "scale"),
    ],
)
def test_bad_parameters(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_resized_crop_is_a_box_of_the_image_resized_back(image):
    out = RandomResizedCrop(p=1.0, scale=(0.3, 0.5), ratio=(0.8, 1.25))(image, np.random.default_rng(7))
    assert out.shape == image.shape and out.dtype == np.uint8
    replay = np.random.default_rng(7)
    replay.random()  # the probability draw
    area, log_ratio = replay.uniform(0.3, 0.5), replay.uniform(np.log(0.8), np.log(1.25))
    bw = int(round(16 * np.sqrt(area * np.exp(log_ratio))))
    bh = int(round(32 * np.sqrt(area / np.exp(log_ratio))))
    y, x = int(replay.integers(0, 32 - bh + 1)), int(replay.integers(0, 16 - bw + 1))
    assert bh * bw < 0.6 * 32 * 16  # a real crop, not the whole image
    np.testing.assert_array_equal(out, cv2.resize(image[y : y + bh, x : x + bw], (16, 32)))
    whole = RandomResizedCrop(p=1.0, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_array_equal(whole(image, np.random.default_rng(0)), image)
    assert RandomResizedCrop(p=0.0)(image, np.random.default_rng(0)) is image


@pytest.mark.parametrize("order, weights", [("RGB", (0.299, 0.587, 0.114)), ("BGR", (0.114, 0.587, 0.299))])
def test_grayscale_puts_the_luma_in_every_channel(image, order, weights):
    out = RandomGrayscale(p=1.0, channel_order=order)(image, np.random.default_rng(0))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    luma = image.astype(np.float64) @ np.array(weights)
    assert np.abs(out[..., 0] - luma).max() <= 1.0
    assert RandomGrayscale(p=0.0)(image, np.random.default_rng(0)) is image


def test_augment_config_adds_the_new_steps_in_order():
    cfg = AugmentConfig(flip=0, erase=0, resized_crop=0.5, grayscale=0.2, color_jitter=0.5)
    names = [type(t).__name__ for t in build_transform(cfg, height=256).transforms]
    assert names == ["RandomResizedCrop", "PadCrop", "ColorJitter", "RandomGrayscale"]


@pytest.fixture
def batch(rng) -> np.ndarray:
    return rng.integers(0, 256, size=(6, 16, 8, 3), dtype=np.uint8)


def test_mixup_blends_each_image_with_another_one(batch):
    out = mix_batch(batch, AugmentConfig(mixup=1.0), np.random.default_rng(3))
    assert out.kind == "mixup" and out.mixed and 0.5 <= out.lam <= 1.0
    assert (out.partner != np.arange(6)).all() and sorted(out.partner) == list(range(6))
    expected = np.rint(out.lam * batch.astype(np.float32) + (1 - out.lam) * batch[out.partner].astype(np.float32))
    np.testing.assert_array_equal(out.images, expected.astype(np.uint8))


def test_cutmix_pastes_one_box_of_the_partner_and_lam_is_the_area_kept(batch):
    for seed in range(20):
        out = mix_batch(batch, AugmentConfig(cutmix=1.0, mix_alpha=0.5), np.random.default_rng(seed))
        assert out.kind == "cutmix"
        pasted = np.all(out.images == batch[out.partner], axis=3) & np.any(batch != batch[out.partner], axis=3)
        own = np.all(out.images == batch, axis=3)
        assert (pasted | own).all()  # every pixel is the image's own or its partner's
        ys, xs = np.nonzero(pasted.any(axis=0))
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1) if len(ys) else 0
        assert out.lam == pytest.approx(1 - box / (16 * 8), abs=1e-9)


def test_mixing_is_seeded_and_off_when_its_probabilities_are_zero(batch):
    cfg = AugmentConfig(mixup=0.5, cutmix=0.5)
    a, b = (mix_batch(batch, cfg, np.random.default_rng(11)) for _ in range(2))
    np.testing.assert_array_equal(a.images, b.images)
    assert a.lam == b.lam and a.kind == b.kind
    kinds = {mix_batch(batch, cfg, np.random.default_rng(s)).kind for s in range(30)}
    assert kinds == {"mixup", "cutmix"}
    off = mix_batch(batch, AugmentConfig(), np.random.default_rng(0))
    assert off.kind == "none" and not off.mixed and off.lam == 1.0 and off.images is batch
    single = mix_batch(batch[:1], AugmentConfig(mixup=1.0), np.random.default_rng(0))
    assert single.kind == "none"  # nothing to mix a batch of one with
    with pytest.raises(ValueError, match="uint8"):
        mix_batch(batch.astype(np.float32), cfg, np.random.default_rng(0))
