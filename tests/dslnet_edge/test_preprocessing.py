"""The one preprocessing function: hand-computed examples and every bad input."""

from __future__ import annotations

import numpy as np
import pytest
from testutils import random_crops

from dslnet_edge.preprocessing import preprocess, resize_crop
from dslnet_edge.spec import InputSpec

SMALL = InputSpec(height=4, width=2)


def test_hand_computed_example_bgr_to_rgb_and_linear_resize():
    # A 2x1 BGR crop: top pixel (B=10, G=20, R=30), bottom pixel (B=50, G=60, R=70).
    crop = np.array([[[10, 20, 30]], [[50, 60, 70]]], dtype=np.uint8)
    spec = InputSpec(height=2, width=2)  # width 1 -> 2 duplicates columns, height unchanged
    batch = preprocess([crop], spec)
    assert batch.shape == (1, 3, 2, 2) and batch.dtype == np.float32
    expected_r = np.array([[30, 30], [70, 70]], np.float32)
    expected_b = np.array([[10, 10], [50, 50]], np.float32)
    np.testing.assert_array_equal(batch[0, 0], expected_r)  # channel 0 is R (RGB order)
    np.testing.assert_array_equal(batch[0, 2], expected_b)


def test_bilinear_downscale_matches_hand_computation():
    # 4x2 -> 2x1 with INTER_LINEAR averages each 2x2 block (half-pixel centres).
    crop = np.zeros((4, 2, 3), np.uint8)
    crop[:, :, 1] = np.array([[0, 100], [100, 200], [40, 40], [80, 80]], np.uint8)
    batch = preprocess([crop], InputSpec(height=2, width=1))
    np.testing.assert_allclose(batch[0, 1, :, 0], [100.0, 60.0])


def test_bgr_channel_order_is_kept_when_the_spec_asks_for_bgr():
    crop = np.zeros((4, 2, 3), np.uint8)
    crop[..., 0] = 200  # blue
    batch = preprocess([crop], SMALL.replace(channel_order="BGR"))
    assert batch[0, 0].min() == 200 and batch[0, 2].max() == 0


def test_pixels_are_not_normalized_outside_the_model():
    crop = np.full((8, 4, 3), 255, np.uint8)
    assert preprocess([crop], SMALL).max() == 255.0


@pytest.mark.parametrize(
    ("crop", "expected_rgb"),
    [
        (np.full((8, 4), 77, np.uint8), (77, 77, 77)),  # grayscale HxW
        (np.full((8, 4, 1), 9, np.uint8), (9, 9, 9)),  # grayscale HxWx1
        (np.dstack([np.full((8, 4), v, np.uint8) for v in (1, 2, 3, 0)]), (3, 2, 1)),  # BGRA, alpha dropped
    ],
)
def test_grayscale_and_bgra_are_converted(crop, expected_rgb):
    batch = preprocess([crop], SMALL)
    assert tuple(batch[0, :, 0, 0]) == expected_rgb


def test_stacked_array_input_and_out_buffer(rng):
    crops = np.stack(random_crops(rng, 3, min_hw=(8, 4), max_hw=(8, 4)))
    reference = preprocess(list(crops), SMALL)
    out = np.zeros((5, 3, 4, 2), np.float32)
    view = preprocess(crops, SMALL, out=out)
    assert view.shape == (3, 3, 4, 2) and np.shares_memory(view, out)
    np.testing.assert_array_equal(view, reference)


def test_empty_list_gives_an_empty_batch():
    assert preprocess([], SMALL).shape == (0, 3, 4, 2)


def test_resize_crop_is_the_shared_resize():
    crop = np.arange(6 * 3 * 3, dtype=np.uint8).reshape(6, 3, 3)
    image = resize_crop(crop, SMALL)
    assert image.shape == (4, 2, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(preprocess([crop], SMALL)[0], image.transpose(2, 0, 1))


GOOD = np.zeros((8, 4, 3), np.uint8)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (None, r"crop 1 is None"),
        (np.zeros((0, 4, 3), np.uint8), r"crop 1 is empty"),
        (np.zeros((8, 0, 3), np.uint8), r"crop 1 is empty"),
        (np.zeros((8, 4, 3), np.float32), r"crop 1 has dtype float32; expected uint8"),
        (np.zeros((8, 4, 3), np.uint16), r"crop 1 has dtype uint16"),
        (np.zeros((8, 4, 2), np.uint8), r"crop 1 has shape \(8, 4, 2\)"),
        (np.zeros((2, 8, 4, 3), np.uint8), r"crop 1 has shape \(2, 8, 4, 3\)"),
        (np.zeros(5, np.uint8), r"crop 1 has shape \(5,\)"),
        ([[1, 2, 3]], r"crop 1 is a list; expected a numpy.ndarray"),
    ],
)
def test_bad_crops_raise_value_error_naming_the_index(bad, message):
    with pytest.raises(ValueError, match=message):
        preprocess([GOOD, bad, GOOD], SMALL)


@pytest.mark.parametrize(
    ("bad_input", "message"),
    [
        ("a string", "crops must be a list"),
        (5, "crops must be a list"),
        ({"a": 1}, "crops must be a list"),
        (np.zeros((4, 4, 3), np.uint8), "got one array of shape .*wrap it in a list"),
    ],
)
def test_non_list_input_is_refused(bad_input, message):
    with pytest.raises(ValueError, match=message):
        preprocess(bad_input, SMALL)


@pytest.mark.parametrize(
    "out",
    [np.zeros((1, 3, 4, 2), np.float32), np.zeros((3, 3, 4, 2), np.float64), np.zeros((3, 3, 2, 4), np.float32)],
)
def test_out_buffer_of_wrong_size_or_dtype_is_refused(out):
    with pytest.raises(ValueError, match="out buffer"):
        preprocess([GOOD, GOOD], SMALL, out=out)
