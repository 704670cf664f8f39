"""Re-ID dataset readers and the training Dataset.

A reader turns a dataset folder into a :class:`ReidSplit`: the training images (identities
relabelled to ``0..K-1``), the query and the gallery images (original identities kept, so query
and gallery stay comparable). Layouts:

* ``market1501`` / ``dukemtmc``: ``bounding_box_train/``, ``query/``, ``bounding_box_test/``, file
  names ``PPPP_cC...jpg`` (Market: ``0002_c1s1_000451_03.jpg``, Duke: ``0001_c2_f0046182.jpg``).
  Identity ``-1`` is junk and dropped everywhere; identity ``0`` is kept (in Market-1501 it only
  occurs in the gallery, as distractors that never match a query; in CUHK03-style exports such as
  ``cuhk03-pair1`` it is an ordinary training identity).
* ``cuhk03`` / ``cuhk03_labeled``: the new protocol (767 train / 700 test identities), detected or
  labeled boxes, as the common Re-ID toolkits prepare it, see :func:`read_cuhk03`.
* ``msmt17``: list files ``list_train.txt`` / ``list_val.txt`` / ``list_query.txt`` /
  ``list_gallery.txt`` beside ``train/`` and ``test/`` folders, see :func:`read_msmt17`.

A wrong or empty layout raises :class:`DatasetError` naming what was expected.

Images are decoded once with OpenCV (BGR) and resized with :func:`dslnet_edge.preprocessing.resize_crop`
(the resize the runtime uses) into RAM in the model's channel order: CPU is the training bottleneck
here, so no image is decoded from the original file twice. ``cache="decoded"`` keeps one
``uint8 [N, H, W, 3]`` array (7,239 CUHK03 images: 712 MB at 256x128, 178 MB at 128x64);
``cache="jpeg"`` keeps them re-encoded at the training size (about 50 MB at 256x128, quality 95)
and decodes a small JPEG per sample (well under a millisecond), for datasets too large for RAM.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from dslnet_edge.errors import DslnetError
from dslnet_edge.images import IMAGE_SUFFIXES, ImageReadError, read_image
from dslnet_edge.images import parse_market_name as _market_name
from dslnet_edge.preprocessing import resize_crop
from dslnet_edge.spec import InputSpec

__all__ = [
    "DatasetError",
    "ReidImage",
    "ReidSplit",
    "READERS",
    "read_dataset",
    "read_market1501",
    "read_dukemtmc",
    "read_cuhk03",
    "read_msmt17",
    "read_image_folder",
    "parse_market_name",
    "ImageCache",
    "collate_uint8",
    "ReidTrainDataset",
    "IMAGE_EXTENSIONS",
]

IMAGE_EXTENSIONS = IMAGE_SUFFIXES  # the one list (dslnet_edge.images)


class DatasetError(DslnetError, ValueError):
    """A dataset folder that does not have the expected layout (the message says what was expected)."""


@dataclasses.dataclass(frozen=True)
class ReidImage:
    """One image: its path, identity and camera (cameras are 0-based in every reader)."""

    path: str
    pid: int
    camid: int


@dataclasses.dataclass(frozen=True)
class ReidSplit:
    """A dataset: relabelled training images plus query and gallery (original identities)."""

    name: str
    root: str
    train: tuple[ReidImage, ...]
    query: tuple[ReidImage, ...]
    gallery: tuple[ReidImage, ...]
    train_pid_names: tuple[int, ...] = ()  # original identity of each training label

    def __post_init__(self) -> None:
        if not self.train:
            raise DatasetError(f"{self.name} at {self.root}: the training set is empty")
        labels = {im.pid for im in self.train}
        if labels != set(range(len(labels))):
            raise DatasetError(f"{self.name}: training labels must be 0..K-1 after relabelling")

    @property
    def num_train_pids(self) -> int:
        return len({im.pid for im in self.train})

    @property
    def has_eval(self) -> bool:
        return bool(self.query) and bool(self.gallery)

    def summary(self) -> str:
        def ids(images: Sequence[ReidImage]) -> int:
            return len({im.pid for im in images})

        return (
            f"{self.name} ({self.root}): train {len(self.train)} images / {ids(self.train)} ids, "
            f"query {len(self.query)} / {ids(self.query)}, gallery {len(self.gallery)} / {ids(self.gallery)}"
        )

    def hold_out_identities(self, count: int, *, seed: int = 0) -> ReidSplit:
        """Move ``count`` training identities (spread by a seeded draw) to query/gallery.

        The held-out identities' images in the first camera they appear in become the query, the
        rest the gallery (camera pairs, like CUHK03's test protocol); the dataset's own query and
        gallery are dropped, so a model chosen on this split never saw the test images. An image
        that is in two training folders (detected + labelled boxes) is validated in both.
        """
        if count <= 0:
            return self
        if count >= self.num_train_pids - 1:
            raise DatasetError(f"cannot hold out {count} of {self.num_train_pids} training identities for validation")
        rng = np.random.default_rng(seed)
        held = set(rng.choice(self.num_train_pids, size=count, replace=False).tolist())
        query, gallery = [], []
        for pid in sorted(held):
            images = [im for im in self.train if im.pid == pid]
            first_cam = min(im.camid for im in images)
            for im in images:
                kept = dataclasses.replace(im, pid=self.train_pid_names[pid])
                (query if im.camid == first_cam else gallery).append(kept)
        keep = sorted(set(range(self.num_train_pids)) - held)
        label_of = {old: new for new, old in enumerate(keep)}
        train = tuple(dataclasses.replace(im, pid=label_of[im.pid]) for im in self.train if im.pid not in held)
        names = tuple(self.train_pid_names[old] for old in keep) if self.train_pid_names else ()
        return dataclasses.replace(self, name=f"{self.name} (validation: {count} held-out training identities)",
                                   train=train, query=tuple(query), gallery=tuple(gallery), train_pid_names=names)

    def limit_train_identities(self, max_ids: int) -> ReidSplit:
        """Keep only the first ``max_ids`` training identities (smoke runs, tests)."""
        if max_ids <= 0 or max_ids >= self.num_train_pids:
            return self
        train = tuple(im for im in self.train if im.pid < max_ids)
        return dataclasses.replace(self, train=train, train_pid_names=self.train_pid_names[:max_ids])


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------
def parse_market_name(name: str) -> tuple[int, int]:
    """``'0002_c1s1_000451_03.jpg'`` -> ``(2, 0)``: identity and 0-based camera.

    Example:
        >>> parse_market_name("0002_c1s1_000451_03.jpg"), parse_market_name("-1_c3s2_0001_00.jpg")
        ((2, 0), (-1, 2))
    """
    parsed = _market_name(name)
    if parsed is None:
        raise DatasetError(f"image name {name!r} does not follow the Market-1501 pattern 'PPPP_cC...' (e.g. 0002_c1s1_000451_03.jpg)")
    pid, cam = parsed
    if cam < 1:
        raise DatasetError(f"image name {name!r}: camera numbers start at 1 (c1, c2, ...)")
    return pid, cam - 1


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_image_folder(folder: str | os.PathLike) -> list[ReidImage]:
    """All Market-named images of one folder, junk (identity -1) dropped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"expected the folder {folder} (Market-1501 layout), but it does not exist")
    images = []
    for path in _list_images(folder):
        pid, cam = parse_market_name(path.name)
        if pid == -1:
            continue
        images.append(ReidImage(str(path), pid, cam))
    if not images:
        raise DatasetError(f"{folder} holds no usable images (expected *.jpg named like 0002_c1s1_000451_03.jpg)")
    return images


def relabel(images: Sequence[ReidImage]) -> tuple[tuple[ReidImage, ...], tuple[int, ...]]:
    """Map identities to ``0..K-1`` in sorted order; also return the original identity per label."""
    names = tuple(sorted({im.pid for im in images}))
    label_of = {pid: i for i, pid in enumerate(names)}
    return tuple(dataclasses.replace(im, pid=label_of[im.pid]) for im in images), names


def _require_dir(root: Path, name: str) -> None:
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a folder (expected a {name} folder)")


def read_market1501(
    root: str | os.PathLike,
    *,
    name: str = "market1501",
    eval_sets: bool = True,
    train_dirs: Sequence[str] = ("bounding_box_train",),
) -> ReidSplit:
    """Market-1501 layout (also DukeMTMC-reID and Market-style CUHK03): see the module docstring.

    ``eval_sets=False`` reads only the training folders (a user's own data without a test split).
    ``train_dirs`` names the training folders read together as one set (identities by number: the
    same person in two folders is one identity).
    """
    root = Path(root)
    _require_dir(root, "Market-1501-style")
    expected = f"{', '.join(d + '/' for d in train_dirs)}, query/ and bounding_box_test/"
    for sub in train_dirs:
        if not (root / sub).is_dir():
            found = sorted(p.name for p in root.iterdir() if p.is_dir())[:8]
            raise DatasetError(f"{root} is not a Market-1501-style dataset: expected {expected}; found folders {found}")
    train, names = relabel([im for sub in train_dirs for im in read_image_folder(root / sub)])
    query: tuple[ReidImage, ...] = ()
    gallery: tuple[ReidImage, ...] = ()
    if eval_sets:
        for sub in ("query", "bounding_box_test"):
            if not (root / sub).is_dir():
                raise DatasetError(f"{root} lacks {sub}/ (expected {expected}; pass eval_sets=False to train without)")
        query = tuple(read_image_folder(root / "query"))
        gallery = tuple(read_image_folder(root / "bounding_box_test"))
    return ReidSplit(name, str(root), train, query, gallery, names)


def read_dukemtmc(root: str | os.PathLike, **kwargs) -> ReidSplit:
    """DukeMTMC-reID: the Market-1501 layout (``0001_c2_f0046182.jpg``)."""
    return read_market1501(root, name="dukemtmc", **kwargs)


_CUHK03_SUBSETS = ("detected", "labeled")


def read_cuhk03(root: str | os.PathLike, *, subset: str = "detected", eval_sets: bool = True) -> ReidSplit:
    """CUHK03, new protocol (Zhong et al. 2017: 767 training / 700 test identities).

    Accepted layouts, tried in this order (``subset`` is "detected" - the paper's choice - or "labeled"):

    1. ``root`` itself in the Market-1501 layout (one subset exported, like ``cuhk03-pair1``);
    2. ``root/{detected,labeled}/{bounding_box_train,query,bounding_box_test}`` (the "cuhk03-np"
       release; ``root/cuhk03-np/...`` is also found);
    3. ``root/cuhk03_new_protocol_config_{detected,labeled}.mat`` with images in
       ``root/images_{detected,labeled}/`` (the torchreid preparation; needs scipy). The .mat holds
       ``filelist``, ``labels``, ``camId`` and 1-based ``train_idx`` / ``query_idx`` / ``gallery_idx``.
    """
    if subset not in _CUHK03_SUBSETS:
        raise DatasetError(f"CUHK03 subset must be one of {_CUHK03_SUBSETS}, got {subset!r}")
    root = Path(root)
    _require_dir(root, "CUHK03")
    name = f"cuhk03_{subset}"
    if (root / "bounding_box_train").is_dir():
        return read_market1501(root, name=name, eval_sets=eval_sets)
    for folder in (root / subset, root / "cuhk03-np" / subset):
        if (folder / "bounding_box_train").is_dir():
            return read_market1501(folder, name=name, eval_sets=eval_sets)
    mat = root / f"cuhk03_new_protocol_config_{subset}.mat"
    if mat.is_file():
        return _read_cuhk03_mat(root, mat, subset, name)
    raise DatasetError(
        f"{root} is not a CUHK03 new-protocol dataset: expected bounding_box_train/ there, or "
        f"{subset}/bounding_box_train/ (cuhk03-np layout), or cuhk03_new_protocol_config_{subset}.mat "
        f"with images_{subset}/"
    )


def _read_cuhk03_mat(root: Path, mat: Path, subset: str, name: str) -> ReidSplit:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DatasetError(f"reading {mat} needs scipy (pip install scipy), or use the cuhk03-np folder layout") from None
    try:
        cfg = loadmat(str(mat))
    except Exception as exc:  # scipy raises several unrelated types for a bad file
        raise DatasetError(f"{mat} could not be read as a MATLAB file: {exc}") from None
    missing = [k for k in ("filelist", "labels", "camId", "train_idx", "query_idx", "gallery_idx") if k not in cfg]
    if missing:
        raise DatasetError(f"{mat} lacks the fields {missing} of the CUHK03 new-protocol configuration")
    files = [str(np.ravel(f)[0]) for f in np.ravel(cfg["filelist"])]
    pids = np.ravel(cfg["labels"]).astype(int)
    cams = np.ravel(cfg["camId"]).astype(int) - 1
    image_dir = root / f"images_{subset}"
    if not image_dir.is_dir():
        raise DatasetError(f"{mat} found but its image folder {image_dir} does not exist")

    def take(key: str) -> list[ReidImage]:
        idx = np.ravel(cfg[key]).astype(int) - 1  # MATLAB indices are 1-based
        if idx.size and (idx.min() < 0 or idx.max() >= len(files)):
            raise DatasetError(f"{mat}: {key} refers to images outside filelist (1..{len(files)})")
        return [ReidImage(str(image_dir / files[i]), int(pids[i]), int(cams[i])) for i in idx]

    train, names = relabel(take("train_idx"))
    return ReidSplit(name, str(root), train, tuple(take("query_idx")), tuple(take("gallery_idx")), names)


def read_msmt17(root: str | os.PathLike, *, eval_sets: bool = True) -> ReidSplit:
    """MSMT17 (V1 or V2): list files ``list_{train,val,query,gallery}.txt`` of ``relative/path pid``.

    Training uses ``list_train.txt`` plus ``list_val.txt`` (the usual practice); paths are relative
    to ``root/train`` (train and val lists) or ``root/test`` (query and gallery lists) unless they
    already exist relative to ``root``. The camera is the third ``_`` field of the file name
    (``0000_000_01_0303morning_0015_0.jpg`` -> camera 01).
    """
    root = Path(root)
    _require_dir(root, "MSMT17")
    lists = {k: root / f"list_{k}.txt" for k in ("train", "val", "query", "gallery")}
    needed = ("train", "query", "gallery") if eval_sets else ("train",)
    missing = [p.name for k, p in lists.items() if k in needed and not p.is_file()]
    if missing:
        raise DatasetError(f"{root} is not an MSMT17 dataset: missing {missing} (expected list_train.txt, "
                           "list_val.txt, list_query.txt, list_gallery.txt with train/ and test/ folders)")

    def read_list(path: Path, folder: str) -> list[ReidImage]:
        images = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DatasetError(f"{path}:{number}: expected 'relative/path.jpg PID', got {line!r}")
            rel, pid = parts[0], int(parts[1])
            fields = Path(rel).name.split("_")
            if len(fields) < 3 or not fields[2].isdigit():
                raise DatasetError(f"{path}:{number}: cannot read the camera from {Path(rel).name!r} "
                                   "(expected PPPP_NNN_CC_...jpg)")
            full = root / folder / rel if not (root / rel).exists() else root / rel
            images.append(ReidImage(str(full), pid, int(fields[2]) - 1))
        if not images:
            raise DatasetError(f"{path} lists no images")
        return images

    train_list = read_list(lists["train"], "train")
    if lists["val"].is_file():
        train_list += read_list(lists["val"], "train")
    train, names = relabel(train_list)
    query = tuple(read_list(lists["query"], "test")) if eval_sets else ()
    gallery = tuple(read_list(lists["gallery"], "test")) if eval_sets else ()
    return ReidSplit("msmt17", str(root), train, query, gallery, names)


READERS: dict[str, Callable[..., ReidSplit]] = {
    "market1501": read_market1501,
    "dukemtmc": read_dukemtmc,
    "cuhk03": read_cuhk03,  # detected boxes (the paper's setting)
    "cuhk03_labeled": lambda root, **kw: read_cuhk03(root, subset="labeled", **kw),
    "msmt17": read_msmt17,
}


def read_dataset(name: str, root: str | os.PathLike, **kwargs) -> ReidSplit:
    """Read dataset ``name`` (one of :data:`READERS`) from ``root``."""
    try:
        reader = READERS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; choose from {sorted(READERS)}") from None
    return reader(root, **kwargs)


# ---------------------------------------------------------------------------------------------
# Decoding and the training Dataset
# ---------------------------------------------------------------------------------------------
def read_bgr(path: str) -> np.ndarray:
    """Decode one image (BGR uint8) through :func:`dslnet_edge.images.read_image`; a missing or unreadable file is a DatasetError."""
    try:
        return read_image(path)
    except ImageReadError as exc:
        raise DatasetError(str(exc)) from None


class ImageCache:
    """Training images decoded once and resized to the training size, held in RAM.

    ``mode="decoded"``: one ``uint8 [N, H, W, 3]`` array (fastest). ``mode="jpeg"``: each image
    re-encoded as a quality-95 JPEG at the training size (about 14x smaller; a 256x128 JPEG decodes
    in well under a millisecond). Indexing returns ``uint8 [H, W, 3]`` in ``spec.channel_order``.
    """

    MODES = ("decoded", "jpeg")

    def __init__(self, spec: InputSpec, mode: str, arrays: np.ndarray | None, encoded: list[bytes] | None):
        self.spec, self.mode, self._arrays, self._encoded = spec, mode, arrays, encoded

    @classmethod
    def build(
        cls,
        paths: Sequence[str],
        spec: InputSpec,
        *,
        mode: str = "decoded",
        threads: int = 2,
        progress: Callable[[int], None] | None = None,
    ) -> ImageCache:
        if mode not in cls.MODES:
            raise ValueError(f"cache mode must be one of {cls.MODES}, got {mode!r}")
        arrays = np.empty((len(paths), spec.height, spec.width, 3), dtype=np.uint8) if mode == "decoded" else None
        encoded: list[bytes] | None = [b""] * len(paths) if mode == "jpeg" else None

        def one(i: int) -> None:
            image = resize_crop(read_bgr(paths[i]), spec, index=i)
            if arrays is not None:
                arrays[i] = image
            else:
                ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
                if not ok:
                    raise DatasetError(f"could not re-encode {paths[i]} for the cache")
                encoded[i] = buf.tobytes()

        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:  # cv2 releases the GIL
            for _ in pool.map(one, range(len(paths))):
                if progress is not None:
                    progress(1)
        return cls(spec, mode, arrays, encoded)

    def __len__(self) -> int:
        return len(self._arrays) if self._arrays is not None else len(self._encoded)

    def __getitem__(self, index: int) -> np.ndarray:
        if self._arrays is not None:
            return self._arrays[index]
        # channels were stored in spec order, so decoding "as BGR" gives them back unchanged
        return cv2.imdecode(np.frombuffer(self._encoded[index], np.uint8), cv2.IMREAD_COLOR)

    @property
    def nbytes(self) -> int:
        return self._arrays.nbytes if self._arrays is not None else sum(len(b) for b in self._encoded)


class ReidTrainDataset:
    """Training samples from the decoded cache: ``(uint8 HxWx3 image, label)``.

    Indexing takes a plain index or an ``(index, seed)`` pair; the seed drives the augmentation,
    so a sample's pixels depend only on the sampler's plan (seeded by epoch), never on which
    worker built it, and a resumed run sees the same pixels as an uninterrupted one.

    A torch ``Dataset`` in all but name (``__len__``/``__getitem__``), kept free of torch so the
    readers and augmentation can be tested without it.
    """

    def __init__(
        self,
        images: ImageCache | np.ndarray,
        labels: Sequence[int],
        transform: Callable | None = None,
        *,
        flip: float = 0.0,
    ):
        if isinstance(images, np.ndarray) and (images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8):
            raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if not 0.0 <= flip <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {flip}")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.flip = flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[np.ndarray, int, int]:
        """``(image, label, key)``; ``key = 2 * index + flipped`` names the exact source view
        (distillation looks up the teachers' embedding of that view).

        With ``flip > 0`` the mirror step happens here, drawing the generator's first number, then
        ``transform`` gets the same generator: the pixels equal those of a transform that starts
        with :class:`train.transforms.HorizontalFlip` of the same probability.
        """
        index, seed = item if isinstance(item, tuple) else (item, None)
        image = self.images[index]
        rng = np.random.default_rng(seed)
        flipped = self.flip > 0 and rng.random() < self.flip
        if flipped:
            image = np.ascontiguousarray(image[:, ::-1])
        if self.transform is not None:
            image = self.transform(image, rng)
        return image, int(self.labels[index]), 2 * int(index) + int(flipped)


def collate_uint8(batch: Sequence[tuple[np.ndarray, int, int]]):
    """List of (HxWx3 uint8, label, key) -> (uint8 tensor [B, H, W, 3], int64 [B] labels, int64 [B] keys).

    The loop turns the uint8 NHWC batch into float NCHW with channels-last strides for free
    (``permute`` + ``float``), so the model's channels-last path needs no copy.
    """
    import torch

    images = np.stack([b[0] for b in batch])
    labels = np.fromiter((b[1] for b in batch), dtype=np.int64, count=len(batch))
    keys = np.fromiter((b[2] for b in batch), dtype=np.int64, count=len(batch))
    return torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(keys)
