"""Fixtures for the samples tests: a tiny real ONNX re-ID model and generated videos with known boxes.

The scenes are real MPEG-4 files written with ``cv2.VideoWriter`` (mp4v), in which "people" are
block-textured figures moving over a plain background. Each figure's texture comes from its seed,
so the same seed in two videos is the same person, and the tiny random-projection model
(``testutils.tiny_embedding_onnx``) maps crops of one figure to nearly identical embeddings and
crops of different figures to nearly orthogonal ones. Ground-truth boxes are written beside each
video as ``--detector boxes:FILE`` input, which is also how users evaluate with known boxes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
from testutils import tiny_embedding_onnx

from dslnet_edge.spec import InputSpec

TINY_SPEC = InputSpec(height=32, width=16, feature_dim=64)
FIGURE_HW = (96, 40)


def person_figure(seed: int, hw: tuple[int, int] = FIGURE_HW) -> np.ndarray:
    """A block-textured 'person' (BGR uint8): an 8x4 grid of colours from ``seed``, scaled up."""
    rng = np.random.default_rng(1000 + seed)
    blocks = rng.integers(0, 256, size=(8, 4, 3), dtype=np.uint8)
    return cv2.resize(blocks, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)


@dataclasses.dataclass(frozen=True)
class Walker:
    """A figure moving in a straight line from ``start`` to ``end`` (top-left corners) over frames [first, last]."""

    seed: int
    start: tuple[int, int]
    end: tuple[int, int]
    first: int = 0
    last: int | None = None


@dataclasses.dataclass(frozen=True)
class Scene:
    video: Path
    boxes: Path  # JSON for --detector boxes:FILE
    frames: int
    truth: dict[int, list[tuple[int, tuple[int, int, int, int]]]]  # frame -> [(seed, box)]


def write_scene(path: Path, walkers: Sequence[Walker], frames: int = 12, size: tuple[int, int] = (320, 240), fps: float = 10.0) -> Scene:
    """Write an mp4v video of ``walkers`` and the JSON of their boxes; returns both with the truth."""
    width, height = size
    background = np.full((height, width, 3), 80, np.uint8)
    background[:, :, 1] = np.linspace(60, 120, width, dtype=np.uint8)[None, :]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened(), "this OpenCV cannot write mp4v videos"
    truth: dict[int, list] = {}
    for f in range(frames):
        frame = background.copy()
        truth[f] = []
        for w in walkers:
            last = frames - 1 if w.last is None else w.last
            if not (w.first <= f <= last):
                continue
            t = 0.0 if last == w.first else (f - w.first) / (last - w.first)
            x = int(round(w.start[0] + t * (w.end[0] - w.start[0])))
            y = int(round(w.start[1] + t * (w.end[1] - w.start[1])))
            fig = person_figure(w.seed)
            frame[y : y + fig.shape[0], x : x + fig.shape[1]] = fig
            truth[f].append((w.seed, (x, y, x + fig.shape[1], y + fig.shape[0])))
        writer.write(frame)
    writer.release()
    boxes = path.with_suffix(".boxes.json")
    boxes.write_text(json.dumps({"frames": {str(f): [list(b) for _, b in items] for f, items in truth.items()}}))
    return Scene(path, boxes, frames, truth)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return tiny_embedding_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", TINY_SPEC)


@pytest.fixture
def scene(tmp_path) -> Callable[..., Scene]:
    """``scene(name, walkers, frames=12, size=(320, 240), fps=10)`` -> :class:`Scene` in a fresh folder."""

    def make(name: str, walkers: Sequence[Walker], **kwargs) -> Scene:
        return write_scene(tmp_path / f"{name}.mp4", walkers, **kwargs)

    return make


@pytest.fixture
def videos(real_data) -> Path:
    folder = real_data / "videos"
    if not (folder / "one-by-one-person-detection.mp4").is_file():
        pytest.skip(f"the sample videos are not in {folder}")
    return folder


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


@pytest.fixture
def read_frames() -> Callable[[Path], list[np.ndarray]]:
    """All frames of a video file, decoded by OpenCV."""
    return read_video


@pytest.fixture
def walker() -> type[Walker]:
    return Walker


@pytest.fixture
def figure() -> Callable[..., np.ndarray]:
    return person_figure
