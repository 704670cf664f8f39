"""Person crops for calibration and for the accuracy gate: find, sample, read, preprocess.

INT8 scales are only as good as the pixels they were measured on, so calibration sees exactly
what deployment sees: real person crops, read by OpenCV (BGR uint8) and turned into network
input by :func:`dslnet_edge.preprocessing.preprocess` with the model's own
:class:`~dslnet_edge.spec.InputSpec` (read from the ONNX metadata, never hard-coded).

Sampling is deterministic (a seed, sorted listings) and spreads the chosen images over
identities and cameras when the file names follow Market-1501 (``<pid>_c<cam>...``, e.g.
``1000_c1s1_000000_00.jpg``): one image of every (identity, camera) group before a second of
any, so 256 images are 256 different people-and-viewpoints rather than 30 frames of the same
tracklet. Other names are sampled uniformly. A bad folder or an image that cannot be decoded
is an error naming it: a silently skipped file would change the scales without anyone noticing.

numpy and OpenCV only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from calibration.errors import CalibrationError
from dslnet_edge.images import IMAGE_SUFFIXES, ImageReadError, is_image_file, parse_market_name, read_image
from dslnet_edge.spec import InputSpec

__all__ = [
    "IMAGE_SUFFIXES",
    "parse_market_name",
    "list_images",
    "sample_crops",
    "collect_crops",
    "read_crop",
    "crop_batches",
]



def list_images(folder: str | os.PathLike) -> list[Path]:
    """Every image under ``folder`` (recursively), sorted by relative path; clear errors when there is none."""
    folder = Path(folder)
    if not folder.exists():
        raise CalibrationError(f"crops folder {folder} does not exist")
    if not folder.is_dir():
        raise CalibrationError(f"crops folder {folder} is not a folder")
    files = sorted(
        (p for p in folder.rglob("*") if is_image_file(p) and p.is_file()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not files:
        others = sum(1 for p in folder.rglob("*") if p.is_file())
        found = f" ({others} other files)" if others else ""
        raise CalibrationError(f"crops folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}){found}")
    return files


def sample_crops(paths: Sequence[Path], num_images: int, *, seed: int = 0) -> list[Path]:
    """``num_images`` of ``paths``, deterministic for a seed, spread over (identity, camera) groups.

    Groups (Market-style names; any other file is its own group) are visited in a seeded
    random order, taking one image per group per round, the images inside a group also in a
    seeded order. All paths are returned (in their order) when there are not more than asked.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be a positive integer, got {num_images!r}")
    paths = list(paths)
    if len(paths) <= num_images:
        return paths
    groups: dict[str, list[Path]] = {}
    for path in paths:
        parsed = parse_market_name(path)
        key = f"{parsed[0]}_c{parsed[1]}" if parsed else f"file:{path}"
        groups.setdefault(key, []).append(path)
    rng = np.random.default_rng(seed)
    keys = sorted(groups)
    ordered = [keys[i] for i in rng.permutation(len(keys))]
    members = {k: [groups[k][i] for i in rng.permutation(len(groups[k]))] for k in ordered}
    chosen: list[Path] = []
    depth = 0
    while len(chosen) < num_images:
        for key in ordered:
            if depth < len(members[key]):
                chosen.append(members[key][depth])
                if len(chosen) == num_images:
                    break
        depth += 1
    return chosen


def collect_crops(
    folder: str | os.PathLike,
    num_images: int,
    *,
    seed: int = 0,
    exclude: Iterable[str | os.PathLike] = (),
) -> list[Path]:
    """:func:`sample_crops` over the images of ``folder``, leaving out the files in ``exclude``.

    ``exclude`` keeps the accuracy gate honest: the images calibration measured are never the
    images that judge it (paths are compared after resolving links).
    """
    excluded = {Path(p).resolve() for p in exclude}
    paths = [p for p in list_images(folder) if p.resolve() not in excluded]
    if not paths:
        raise CalibrationError(f"crops folder {folder} holds no images besides the {len(excluded)} used for calibration")
    return sample_crops(paths, num_images, seed=seed)


def read_crop(path: str | os.PathLike) -> np.ndarray:
    """One image file as OpenCV's HxWx3 uint8 BGR; :class:`CalibrationError` naming the file if it cannot be decoded."""
    try:
        return read_image(path)
    except ImageReadError as exc:
        raise CalibrationError(str(exc)) from None


def crop_batches(paths: Sequence[Path], spec: InputSpec, *, batch_size: int = 16) -> Iterator[np.ndarray]:
    """Network input batches (``float32 [n, 3, H, W]``, raw 0-255) of ``paths``, through the one preprocessing function."""
    from dslnet_edge.preprocessing import preprocess

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        yield preprocess([read_crop(p) for p in chunk], spec)
