"""Image files: the one reader, the image suffixes and the Market-1501 file-name pattern.

Every stage that reads an image file (training data, evaluation, threshold calibration, INT8
calibration, parity inputs, the samples) goes through :func:`read_image`. It reads the bytes with
``numpy.fromfile`` and decodes them with ``cv2.imdecode``: OpenCV's own ``cv2.imread`` takes the
path as text and crashes the process (segmentation fault, OpenCV 4.14) on a file name that is
not valid UTF-8, which a folder copied from another system can hold. Bytes in, pixels out, and a
clear :class:`ImageReadError` naming the file when it cannot be read or decoded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from dslnet_edge.errors import DslnetError

__all__ = ["IMAGE_SUFFIXES", "MARKET_NAME", "ImageReadError", "is_image_file", "parse_market_name", "read_image"]

#: File suffixes (lower case) taken as images; OpenCV decodes all of them.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

#: Market-1501 style names: ``<identity>_c<camera>...`` (``0002_c1s1_000451_03.jpg``; identity -1 = junk).
MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)")


class ImageReadError(DslnetError, ValueError):
    """An image file that cannot be read (missing, unreadable) or decoded (empty, truncated, not an image)."""


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an image by its suffix (:data:`IMAGE_SUFFIXES`, any case).

    >>> is_image_file("a/0001_c1s1_000001_00.JPG"), is_image_file("notes.txt")
    (True, False)
    """
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def parse_market_name(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(identity, camera)`` as written in a Market-1501 style file name (camera 1-based), or None.

    >>> parse_market_name("bounding_box_train/1000_c1s1_000000_00.jpg")
    (1000, 1)
    >>> parse_market_name("-1_c3s2_000100_01.jpg"), parse_market_name("frame_0001.png")
    ((-1, 3), None)
    """
    match = MARKET_NAME.match(Path(path).name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def read_image(path: str | os.PathLike | bytes) -> np.ndarray:
    """One image file as OpenCV's ``HxWx3`` uint8 BGR array.

    ``path`` may be ``str`` (a name that is not valid UTF-8 arrives as ``os.fsdecode`` gives it),
    ``bytes`` or a path object. Raises :class:`ImageReadError` naming the file when it is missing,
    unreadable, empty or not a decodable image (never crashes on the name).
    """
    import cv2

    shown = _printable(path)
    try:
        data = np.fromfile(os.fsdecode(path) if isinstance(path, bytes) else path, dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"image file {shown} cannot be read: {exc.strerror or exc}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        reason = "the file is empty" if not data.size else "truncated or another format"
        raise ImageReadError(f"image file {shown} could not be decoded as an image ({reason})")
    return image


def _printable(path: str | os.PathLike | bytes) -> str:
    """The path for a message: bytes that are not UTF-8 shown as escapes, so printing never fails."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", "backslashreplace")
