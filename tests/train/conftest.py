"""Fixtures for the training tests: small synthetic Re-ID datasets written as real image files.

A synthetic "person" is a head, a shirt and trousers on a noisy background; the shirt and
trouser colours identify the person, while position, size, background and camera brightness
vary from image to image. Learnable in a few epochs at 32x16, yet not trivially separable pixel
by pixel.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

# distinct (shirt, trousers) BGR colours, one pair per identity
_PALETTE = [
    (0, 0, 220), (0, 200, 0), (220, 0, 0), (0, 220, 220), (220, 0, 220), (220, 220, 0),
    (40, 40, 40), (230, 230, 230), (0, 120, 255), (255, 120, 0), (120, 0, 255), (0, 255, 120),
]


def person_image(pid: int, cam: int, rng: np.random.Generator, size: tuple[int, int] = (64, 32)) -> np.ndarray:
    """One synthetic person crop (BGR uint8, height x width = ``size``)."""
    h, w = size
    image = rng.integers(60, 160, size=(h, w, 3), dtype=np.uint8)
    shirt = np.array(_PALETTE[pid % len(_PALETTE)], np.int32)
    trousers = np.array(_PALETTE[(pid * 5 + 3) % len(_PALETTE)], np.int32)
    dy, dx = rng.integers(-3, 4, size=2)
    x0, x1 = w // 4 + dx, 3 * w // 4 + dx
    head = (int(w // 2 + dx), int(h // 8 + dy))
    cv2.circle(image, head, max(2, w // 8), (150, 170, 200), -1)
    cv2.rectangle(image, (int(x0), int(h // 4 + dy)), (int(x1), int(h // 2 + dy)), shirt.tolist(), -1)
    cv2.rectangle(image, (int(x0), int(h // 2 + dy)), (int(x1), int(7 * h // 8 + dy)), trousers.tolist(), -1)
    gain = 0.8 if cam == 1 else 1.0
    noise = rng.normal(0, 8, size=image.shape)
    return np.clip(image * gain + noise, 0, 255).astype(np.uint8)


def write_market_folder(folder: Path, ids: list[int], per_id: int, rng: np.random.Generator, *,
                        cams: tuple[int, ...] = (1, 2), ext: str = ".jpg") -> list[Path]:
    """Write ``per_id`` images per identity, named ``PPPP_cCs1_IIIIII_00.jpg``, cycling cameras."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for pid in ids:
        for i in range(per_id):
            cam = cams[i % len(cams)]
            path = folder / f"{pid:04d}_c{cam}s1_{i:06d}_00{ext}"
            size = (int(rng.integers(56, 80)), int(rng.integers(26, 40)))
            cv2.imwrite(str(path), person_image(pid, cam - 1, rng, size))
            paths.append(path)
    return paths


def make_market_dataset(root: Path, *, train_ids: int = 8, per_id: int = 8, test_ids: int = 4, seed: int = 0) -> Path:
    """A Market-1501-layout dataset: train ids 0..train_ids-1; query (camera 1) and gallery
    (camera 2) hold ``test_ids`` further identities, so query and gallery are disjoint from training."""
    rng = np.random.default_rng(seed)
    write_market_folder(root / "bounding_box_train", list(range(train_ids)), per_id, rng)
    test = list(range(train_ids, train_ids + test_ids))
    write_market_folder(root / "query", test, 2, rng, cams=(1,))
    write_market_folder(root / "bounding_box_test", test, 3, rng, cams=(2,))
    return root


@pytest.fixture(scope="session")
def synthetic_market(tmp_path_factory) -> Path:
    """8 training identities x 8 images, 4 test identities (2 queries, 3 gallery images each)."""
    return make_market_dataset(tmp_path_factory.mktemp("synthetic_market"))


@pytest.fixture(scope="session")
def synth() -> SimpleNamespace:
    """The helpers above for test modules (conftest modules are not importable under importlib mode)."""
    return SimpleNamespace(person_image=person_image, write_market_folder=write_market_folder,
                           make_market_dataset=make_market_dataset)
