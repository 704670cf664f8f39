"""Fixtures for the calibration tests: a small DSLNet exported to ONNX, and person-like crops on disk.

The model is the full-width DSLNet (six CSS modules, the 516->512 embedding FC) at a 64x32
input, random-initialised, with its BatchNorm statistics moved by a few train-mode forwards
on the synthetic crops so activations have realistic, non-unit ranges -- what calibration
has to measure. The crops are "people" drawn per identity (clothing colours, a camera-
dependent illumination and noise), written as JPEGs with Market-1501 names
(``<pid>_c<cam>s1_<frame>_00.jpg``), so sampling, the query/gallery split and Rank-1 work as on
real data. torch runs single-threaded: the shared 2-core machine is busy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dslnet_edge.spec import InputSpec

SPEC = InputSpec(height=64, width=32)


def person_crop(rng: np.random.Generator, colours: np.ndarray, cam: int, size=(96, 48)) -> np.ndarray:
    """A BGR uint8 crop: head, torso and legs in the identity's colours, lit and blurred per camera."""
    import cv2

    h, w = size
    image = np.zeros((h, w, 3), np.float32)
    bands = ((0, h // 5, colours[0]), (h // 5, h // 2, colours[1]), (h // 2, h, colours[2]))
    for top, bottom, colour in bands:
        image[top:bottom] = colour
    image[:, : w // 6] = image[:, -w // 6 :] = colours[3]  # background strips
    image *= 0.75 + 0.2 * cam  # camera illumination
    image += rng.normal(0.0, 12.0, size=image.shape)
    shift = int(rng.integers(-3, 4))
    image = np.roll(image, shift, axis=1)
    image = cv2.GaussianBlur(np.clip(image, 0, 255).astype(np.uint8), (3, 3), 0)
    return image


def write_people(folder: Path, pids: range, *, cams=(1, 2), per_camera: int = 3, seed: int = 0, nested: bool = False) -> Path:
    """Market-style JPEG crops of ``pids`` seen by ``cams``; ``nested`` puts camera 2 in a subfolder."""
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for pid in pids:
        colours = rng.uniform(20, 235, size=(4, 3))
        for cam in cams:
            target = folder / f"cam{cam}" if nested and cam == 2 else folder
            target.mkdir(exist_ok=True)
            for frame in range(per_camera):
                name = f"{pid:04d}_c{cam}s1_{frame:06d}_00.jpg"
                assert cv2.imwrite(str(target / name), person_crop(rng, colours, cam))
    return folder


@pytest.fixture(scope="session")
def people():
    """``people(folder, pids, cams=(1, 2), per_camera=3, seed=0, nested=False)`` writes Market-style crops."""
    return write_people


@pytest.fixture(scope="session")
def spec() -> InputSpec:
    return SPEC


@pytest.fixture(scope="session")
def torch():
    torch = pytest.importorskip("torch", reason="the calibration tests export a DSLNet (pip install 'dslnet-edge[export]')")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("people")
    write_people(root / "calib", range(0, 12), seed=1, nested=True)  # 72 crops
    write_people(root / "holdout", range(100, 112), seed=2)  # 72 crops, other people
    return root


@pytest.fixture(scope="session")
def calib_dir(data_dir) -> Path:
    return data_dir / "calib"


@pytest.fixture(scope="session")
def holdout_dir(data_dir) -> Path:
    return data_dir / "holdout"


@pytest.fixture(scope="session")
def fp32_onnx(torch, calib_dir, tmp_path_factory) -> Path:
    """The small DSLNet (BN statistics moved on the crops) as a plain FP32 ONNX."""
    from calibration.crops import crop_batches, list_images
    from dslnet_edge.model import build_dslnet
    from export.onnx import export_onnx

    torch.manual_seed(0)
    model = build_dslnet(num_classes=10, spec=SPEC)
    for module in model.modules():  # a running average that forgets fast: the last batches set the statistics
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.5
    model.train()
    with torch.no_grad():
        for batch in crop_batches(list_images(calib_dir), SPEC, batch_size=24):
            model(torch.from_numpy(batch))
    model.eval()
    return export_onnx(model, tmp_path_factory.mktemp("fp32") / "small.onnx")


@pytest.fixture(scope="session")
def quantized(fp32_onnx, calib_dir, tmp_path_factory):
    """The default Q/DQ quantization of the small DSLNet (16 calibration crops), made once."""
    from calibration.quantization import QuantizeConfig, quantize

    out = tmp_path_factory.mktemp("int8") / "small.int8.onnx"
    return quantize(fp32_onnx, calib_dir, out, QuantizeConfig(num_images=16))
