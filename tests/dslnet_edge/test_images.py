"""The one image reader: file names that are not UTF-8, unreadable and undecodable files."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from testutils import tiny_embedding_onnx

from dslnet_edge.images import ImageReadError, is_image_file, parse_market_name, read_image
from dslnet_edge.spec import InputSpec

NOT_UTF8 = b"\xff\xfe"  # bytes a Latin-1 or Windows system may leave in a file name


def _write_image(path_bytes: bytes, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    with open(path_bytes, "wb") as f:
        f.write(buf.tobytes())


@pytest.fixture
def odd_name(tmp_path):
    """A real PNG whose file name is not valid UTF-8, as bytes."""
    image = np.random.default_rng(0).integers(0, 256, (12, 6, 3), dtype=np.uint8)
    path = os.fsencode(tmp_path) + b"/0001_c1s1_" + NOT_UTF8 + b".png"
    _write_image(path, image)
    return path, image


def test_reads_a_file_whose_name_is_not_utf8(odd_name):
    path, image = odd_name
    for given in (path, os.fsdecode(path)):  # bytes, and str with surrogate escapes (what os.listdir gives)
        np.testing.assert_array_equal(read_image(given), image)
    from pathlib import Path

    np.testing.assert_array_equal(read_image(Path(os.fsdecode(path))), image)


@pytest.mark.parametrize(
    ("content", "name", "error"),
    [
        (None, "missing.jpg", "cannot be read: No such file or directory"),
        (b"", "empty.png", r"could not be decoded as an image \(the file is empty\)"),
        (b"\xff\xd8\xff truncated jpeg", "bad.jpg", r"could not be decoded as an image \(truncated"),
        ("dir", "folder.jpg", "cannot be read"),
    ],
)
def test_bad_files_are_named(tmp_path, content, name, error):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageReadError, match=error) as info:
        read_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)  # CLIs report ValueErrors in one line


def test_error_for_an_undecodable_non_utf8_name_is_printable(tmp_path):
    path = os.fsencode(tmp_path) + b"/x" + NOT_UTF8 + b".jpg"
    with open(path, "wb") as f:
        f.write(b"not an image")
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert "x\\xff\\xfe.jpg" in str(info.value)
    str(info.value).encode("utf-8")  # printable on any terminal: no lone surrogates


def test_names_and_suffixes():
    assert is_image_file("A.JPG") and is_image_file("b.webp") and not is_image_file("c.txt")
    assert parse_market_name("q/0002_c3s1_000451_03.jpg") == (2, 3)
    assert parse_market_name("-1_c1.jpg") == (-1, 1) and parse_market_name("x_c1.jpg") is None


# Before the one reader, each of these read the file with cv2.imread and the process died with a
# segmentation fault (OpenCV 4.14, status -11) on the name; they run in a subprocess for that reason.
def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def test_training_and_evaluation_reader_takes_the_name(odd_name):
    path, image = odd_name
    result = _run("import os, sys; from train.data import read_bgr; print(read_bgr(os.fsdecode(os.fsencode(sys.argv[1]))).shape)",
                  os.fsdecode(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(image.shape)


def test_threshold_cli_takes_a_folder_with_such_a_name(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "crops"
    folder.mkdir()
    for pid in range(3):
        base = rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)
        for cam in (1, 2):
            noisy = np.clip(base.astype(int) + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8)
            extra = NOT_UTF8 if pid == 0 and cam == 1 else b""
            _write_image(os.fsencode(folder) + f"/{pid:04d}_c{cam}s1_000000_".encode() + extra + b".png", noisy)
    model = tiny_embedding_onnx(tmp_path / "tiny.onnx", InputSpec(height=32, width=16, feature_dim=64))
    result = subprocess.run([sys.executable, "-m", "dslnet_edge.threshold", "--data-root", str(folder), "--model", str(model)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert "from 6 crops" in result.stdout


def test_calibration_and_parity_readers_take_the_name(odd_name, tmp_path):
    path, image = odd_name
    code = ("import os, sys; from calibration.crops import read_crop; from export.parity import load_crops; "
            "p = os.fsdecode(os.fsencode(sys.argv[1])); print(read_crop(p).shape, load_crops(os.path.dirname(p), 5)[0].shape)")
    result = _run(code, os.fsdecode(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{image.shape} {image.shape}"
