"""Enrol known people into a gallery file from folders of person crops.

::

    python -m samples.enroll --crops known_people/ --gallery gallery.db
    python -m samples.video_reid --video gate.mp4 --gallery gallery.db --no-auto-enroll   # reports them by name

Two folder layouts are understood:

* one subfolder per identity, named after it: ``known_people/alice/*.jpg``, ``known_people/bob/*.png``;
* Market-1501 file names in one folder: ``0001_c1s1_000151_01.jpg`` (identity ``0001``, camera ``c1``);
  Market's junk (``-1``) and distractor (``0000``) images are skipped.

An existing gallery file is extended (an identity that is already there gets the new crops as
exemplars) unless ``--replace`` starts a fresh one. A gallery keeps at most ``--max-exemplars``
embeddings per identity; when a person has more crops, evenly spaced ones are used (so several
cameras and moments are covered). The file is written atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from dslnet_edge.errors import DslnetError
from dslnet_edge.images import IMAGE_SUFFIXES, MARKET_NAME, ImageReadError, read_image
from samples._cli import EXPECTED_ERRORS, parse_args_or_status, quiet_native_logs, report_error
from samples._common import _same_file, check_gallery_destination, check_outputs_are_not_inputs, positive_int

__all__ = ["EnrollConfig", "EnrollResult", "CropSet", "discover_crops", "run_enroll", "main", "IMAGE_SUFFIXES"]

_MARKET_SKIPPED = ("-1", "0000")


class CropFolderError(DslnetError, ValueError):
    """A crops folder that cannot be enrolled (missing, empty, unknown layout, unreadable image)."""


@dataclasses.dataclass(frozen=True)
class CropSet:
    """The crops of one identity: image paths and, when the layout says, the camera of each."""

    identity: str
    paths: tuple[Path, ...]
    cameras: tuple[str | None, ...]


@dataclasses.dataclass(frozen=True)
class EnrollConfig:
    crops: str
    gallery: str
    model: str | None = None
    device: str | None = None
    max_exemplars: int | None = None
    replace: bool = False


@dataclasses.dataclass(frozen=True)
class EnrollResult:
    gallery: str
    enrolled: dict[str, int]  # identity -> crops enrolled
    new: tuple[str, ...]
    updated: tuple[str, ...]
    skipped_images: int
    layout: str
    gallery_identities: int


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def discover_crops(folder: str | Path) -> tuple[str, list[CropSet], int]:
    """``(layout, crop sets, images skipped)`` for a crops folder; ``CropFolderError`` explaining what is wrong."""
    folder = Path(folder)
    if not folder.exists():
        raise CropFolderError(f"crops folder {folder} does not exist")
    if not folder.is_dir():
        raise CropFolderError(f"crops folder {folder} is not a folder")
    top = _images(folder)
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_identity = {d.name: _images(d) for d in subfolders}
    per_identity = {k: v for k, v in per_identity.items() if v}
    if top and per_identity:
        raise CropFolderError(
            f"crops folder {folder} mixes images ({top[0].name}, ...) with identity subfolders ({next(iter(per_identity))}/, ...); "
            "use one layout: a subfolder per identity, or Market-style names PPPP_cC..."
        )
    if top:
        return ("market",) + _market_sets(folder, top)
    if per_identity:
        sets = [CropSet(name, tuple(paths), (None,) * len(paths)) for name, paths in sorted(per_identity.items())]
        return "subfolders", sets, 0
    raise CropFolderError(
        f"crops folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}): expected a subfolder per identity "
        "(alice/*.jpg) or Market-style names (0001_c1s1_000151_01.jpg)"
    )


def _market_sets(folder: Path, images: list[Path]) -> tuple[list[CropSet], int]:
    groups: dict[str, list[tuple[Path, str]]] = defaultdict(list)
    skipped = 0
    for path in images:
        m = MARKET_NAME.match(path.name)
        if m is None:
            raise CropFolderError(
                f"{path} does not follow the Market-1501 naming PPPP_cC... (identity_camera...); put each identity's "
                f"crops in a subfolder named after it instead"
            )
        identity, camera = m.group(1), f"c{m.group(2)}"
        if identity in _MARKET_SKIPPED:
            skipped += 1
            continue
        groups[identity].append((path, camera))
    if not groups:
        raise CropFolderError(f"crops folder {folder}: all {len(images)} images are Market junk/distractors (-1, 0000); nothing to enrol")
    sets = [CropSet(i, tuple(p for p, _ in items), tuple(c for _, c in items)) for i, items in sorted(groups.items())]
    return sets, skipped


def read_crop(path: Path) -> np.ndarray:
    try:
        return read_image(path)  # bytes through imdecode: any file name, no OpenCV crash
    except ImageReadError as exc:
        raise CropFolderError(str(exc)) from None


def spread(n: int, k: int | None) -> list[int]:
    """``k`` evenly spaced indices of ``range(n)`` (all of them when ``k`` is None or >= n).

    >>> spread(10, 3)
    [0, 4, 9]
    """
    if k is None or k >= n:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)})


def run_enroll(config: EnrollConfig) -> EnrollResult:
    """Embed each identity's crops and add them to the gallery file (created, extended or replaced)."""
    from dslnet_edge import Engine, Gallery, Matcher

    layout, sets, skipped = discover_crops(config.crops)
    gallery_path = Path(config.gallery)
    inputs = {"re-ID model": config.model}
    if gallery_path.exists():  # a gallery inside the crops folder is fine, a crop image is not
        inputs.update({f"crop image of {cs.identity}": p for cs in sets for p in cs.paths if _same_file(p, gallery_path)})
    check_outputs_are_not_inputs({"gallery": gallery_path}, inputs)
    loaded_from = None
    if gallery_path.exists() and not config.replace:
        gallery = Gallery.load(gallery_path)
        loaded_from = str(gallery_path)
        if config.max_exemplars is not None and config.max_exemplars != gallery.max_exemplars:
            raise ValueError(
                f"{gallery_path} keeps {gallery.max_exemplars} exemplars per identity; --max-exemplars {config.max_exemplars} "
                "applies to new galleries only (use --replace to start a new one)"
            )
    else:
        gallery = Gallery(max_exemplars=config.max_exemplars) if config.max_exemplars else Gallery()
    check_gallery_destination(gallery_path, loaded_from)
    engine = Engine(config.model, device=config.device)
    matcher = Matcher(engine, gallery)
    enrolled: dict[str, int] = {}
    new, updated = [], []
    for crop_set in sets:
        chosen = spread(len(crop_set.paths), gallery.max_exemplars)
        (updated if crop_set.identity in gallery else new).append(crop_set.identity)
        by_camera: dict[str | None, list[np.ndarray]] = defaultdict(list)
        for i in chosen:
            by_camera[crop_set.cameras[i]].append(read_crop(crop_set.paths[i]))
        for camera, crops in by_camera.items():
            matcher.enroll(crops, crop_set.identity, camera=camera)
        enrolled[crop_set.identity] = len(chosen)
    gallery.save(gallery_path)  # a foreign file was refused above, before any work
    return EnrollResult(str(gallery_path), enrolled, tuple(new), tuple(updated), skipped, layout, len(gallery))


# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m samples.enroll", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", required=True, help="folder of person crops: a subfolder per identity, or Market-style names")
    parser.add_argument("--gallery", required=True, help="gallery file to create or extend (SQLite, e.g. gallery.db)")
    parser.add_argument("--model", help="re-ID model (.onnx, .engine, .pt); default: the bundled demo ONNX. Use the same model as video_reid")
    parser.add_argument("--device", help="cpu, cuda, cuda:N, tensorrt (default: the backend's own)")
    parser.add_argument("--max-exemplars", type=positive_int, help="embeddings kept per identity in a new gallery (default: the Gallery's, 8)")
    parser.add_argument("--replace", action="store_true", help="start a new gallery instead of extending an existing file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args_or_status(build_parser(), argv)
    if isinstance(args, int):
        return args
    quiet_native_logs()
    config = EnrollConfig(args.crops, args.gallery, args.model, args.device, args.max_exemplars, args.replace)
    try:
        result = run_enroll(config)
    except EXPECTED_ERRORS as exc:
        return report_error(exc)
    crops = sum(result.enrolled.values())
    print(
        f"enrolled {len(result.enrolled)} identities from {crops} crops ({result.layout} layout) into {result.gallery}: "
        f"{len(result.new)} new, {len(result.updated)} updated; the gallery holds {result.gallery_identities} identities"
    )
    if result.skipped_images:
        print(f"skipped {result.skipped_images} Market junk/distractor images (identities -1 and 0000)")
    names = ", ".join(f"{i} ({n})" for i, n in list(result.enrolled.items())[:20])
    print(f"identities: {names}{', ...' if len(result.enrolled) > 20 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
