"""Plain helper functions for tests (importable as ``testutils``: pytest's pythonpath has tests/)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """``$DSLNET_DATA``, else ``../shared/data`` beside the repository, if it holds cuhk03-pair1/."""
    candidates = [os.environ.get("DSLNET_DATA"), REPO_ROOT.parent / "shared" / "data", REPO_ROOT / "shared" / "data"]
    for c in candidates:
        if c and Path(c, "cuhk03-pair1").is_dir():
            return Path(c)
    return None


def random_crops(rng: np.random.Generator, n: int, *, min_hw=(40, 20), max_hw=(200, 100)) -> list[np.ndarray]:
    """``n`` random BGR uint8 crops of random sizes."""
    crops = []
    for _ in range(n):
        h = int(rng.integers(min_hw[0], max_hw[0] + 1))
        w = int(rng.integers(min_hw[1], max_hw[1] + 1))
        crops.append(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
    return crops
