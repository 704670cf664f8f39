"""export.parity: the inputs of every parity report (random images, real crops through preprocess)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dslnet_edge.preprocessing import preprocess
from export.parity import backend_runner, check_parity, load_crops, ort_backend, parity_inputs, torch_backend


def _write_crops(folder, rng, n):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 256, size=(40 + i, 20 + i, 3), dtype=np.uint8))
    return folder


def test_crops_go_through_the_one_preprocess(model, tmp_path, rng):
    folder = _write_crops(tmp_path / "crops", rng, 5)
    rand, real, note = parity_inputs(model.spec, num_random=2, crops_dir=folder, num_crops=3)
    assert rand.shape == (2, 3, 32, 16) and rand.dtype == np.float32
    assert 0.0 <= rand.min() and rand.max() <= 255.0
    expected = preprocess([cv2.imread(str(p)) for p in sorted(folder.iterdir())[:3]], model.spec)
    np.testing.assert_array_equal(real, expected)
    assert note == ""


def test_without_crops_the_report_says_so(model, monkeypatch, tmp_path):
    monkeypatch.setattr("export.parity.default_crops_dir", lambda: None)
    _, real, note = parity_inputs(model.spec)
    assert real is None and "random inputs only" in note


@pytest.mark.parametrize(
    "setup, error, message",
    [
        (lambda d, rng: d / "missing", FileNotFoundError, "does not exist"),
        (lambda d, rng: d, FileNotFoundError, "holds no images"),
        (lambda d, rng: (d / "x.jpg").write_bytes(b"not an image") and d, ValueError, "could not be decoded"),
    ],
)
def test_crop_folder_errors(tmp_path, rng, setup, error, message):
    folder = setup(tmp_path, rng)
    with pytest.raises(error, match=message):
        load_crops(folder, 4)


def test_real_crop_parity(model, onnx_path, real_data):
    report = check_parity(
        {"pytorch": backend_runner(torch_backend(model)), "onnxruntime": backend_runner(ort_backend(onnx_path))},
        model.spec,
        num_random=2,
        crops_dir=real_data / "cuhk03-pair1" / "query",
        num_crops=4,
    )
    assert report.real is not None and report.real.num_samples == 4
    assert report.passed, report.format()
