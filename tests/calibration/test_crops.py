"""Crop collection: listing, Market-name parsing, deterministic spread sampling, clear errors, preprocessing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.crops import (
    collect_crops,
    crop_batches,
    list_images,
    parse_market_name,
    read_crop,
    sample_crops,
)
from calibration.errors import CalibrationError
from dslnet_edge.preprocessing import preprocess


@pytest.mark.parametrize(
    "name, expected",
    [
        ("1000_c1s1_000000_00.jpg", (1000, 1)),
        ("0002_c6s1_000451_03.png", (2, 6)),
        ("-1_c3s2_000100_01.jpg", (-1, 3)),
        ("0001_c2_f0046182.jpg", (1, 2)),  # MSMT17-style
        ("frame_0001.jpg", None),
        ("1000c1.jpg", None),
    ],
)
def test_parse_market_name(name, expected):
    assert parse_market_name(Path("some/folder") / name) == expected


def test_list_images_is_recursive_sorted_and_filtered(tmp_path, people):
    people(tmp_path, range(2), per_camera=2, nested=True)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "cam2" / "deep").mkdir()
    cv2.imwrite(str(tmp_path / "cam2" / "deep" / "0009_c3s1_000000_00.PNG"), np.zeros((8, 4, 3), np.uint8))
    files = list_images(tmp_path)
    assert len(files) == 2 * 2 * 2 + 1
    assert any(f.parent.name == "deep" for f in files) and all(f.suffix.lower() in (".jpg", ".png") for f in files)
    rel = [f.relative_to(tmp_path).as_posix() for f in files]
    assert rel == sorted(rel)


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: d / "missing", "does not exist"),
        (lambda d: _touch(d / "file.jpg"), "is not a folder"),
        (lambda d: d, "holds no images"),
        (lambda d: _touch(d / "a.txt").parent, r"holds no images .*\(1 other files\)"),
    ],
    ids=["missing", "a-file", "empty", "only-other-files"],
)
def test_list_images_errors_name_the_folder(tmp_path, setup, message):
    folder = setup(tmp_path)
    with pytest.raises(CalibrationError, match=message) as info:
        list_images(folder)
    assert str(folder) in str(info.value)


def _touch(path: Path) -> Path:
    path.write_bytes(b"x")
    return path


def test_sampling_is_deterministic_and_spreads_over_identities_and_cameras(tmp_path, people):
    people(tmp_path, range(10), cams=(1, 2, 3), per_camera=5)  # 30 (pid, cam) groups of 5
    paths = list_images(tmp_path)
    first = sample_crops(paths, 30, seed=0)
    assert first == sample_crops(paths, 30, seed=0)
    assert first != sample_crops(paths, 30, seed=1)
    groups = Counter(parse_market_name(p) for p in first)
    assert len(groups) == 30 and set(groups.values()) == {1}  # one per (identity, camera) before any second
    groups = Counter(parse_market_name(p) for p in sample_crops(paths, 45, seed=0))
    assert set(groups.values()) == {1, 2} and len(groups) == 30
    assert len(set(sample_crops(paths, 45, seed=0))) == 45  # never the same file twice


def test_sampling_without_market_names_is_uniform_and_all_when_few(tmp_path):
    paths = [tmp_path / f"frame_{i:03d}.jpg" for i in range(50)]
    chosen = sample_crops(paths, 10, seed=3)
    assert len(set(chosen)) == 10 and chosen == sample_crops(paths, 10, seed=3)
    assert sample_crops(paths[:4], 10) == paths[:4]
    with pytest.raises(ValueError, match="positive integer"):
        sample_crops(paths, 0)


def test_collect_crops_leaves_out_excluded_files(calib_dir):
    used = collect_crops(calib_dir, 20)
    rest = collect_crops(calib_dir, 1000, exclude=used)
    assert not set(used) & set(rest) and len(used) + len(rest) == len(list_images(calib_dir))
    with pytest.raises(CalibrationError, match="no images besides the"):
        collect_crops(calib_dir, 5, exclude=list_images(calib_dir))


def test_unreadable_image_is_named(tmp_path, people, spec):
    people(tmp_path, range(1), per_camera=1)
    bad = tmp_path / "0005_c1s1_000000_00.jpg"
    bad.write_bytes(b"\xff\xd8\xff truncated jpeg")
    empty = tmp_path / "0006_c1s1_000000_00.png"
    empty.write_bytes(b"")
    for path in (bad, empty):
        with pytest.raises(CalibrationError, match="could not be decoded") as info:
            read_crop(path)
        assert str(path) in str(info.value)
    with pytest.raises(CalibrationError, match=str(bad.name)):
        list(crop_batches(list_images(tmp_path), spec))


def test_crop_batches_are_the_one_preprocessing(calib_dir, spec):
    paths = list_images(calib_dir)[:7]
    batches = list(crop_batches(paths, spec, batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    expected = preprocess([cv2.imread(str(p)) for p in paths], spec)
    np.testing.assert_array_equal(np.concatenate(batches), expected)
    bgr = np.concatenate(list(crop_batches(paths, spec.replace(channel_order="BGR"))))
    np.testing.assert_array_equal(bgr[:, ::-1], expected)  # the spec decides the channel order
