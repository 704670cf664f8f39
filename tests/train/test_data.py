"""Dataset readers on generated folder layouts, the decoded cache and the training Dataset."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dslnet_edge.preprocessing import resize_crop
from dslnet_edge.spec import InputSpec
from train.data import (
    DatasetError,
    ImageCache,
    ReidTrainDataset,
    collate_uint8,
    parse_market_name,
    read_cuhk03,
    read_dataset,
    read_market1501,
    read_msmt17,
)


@pytest.fixture(autouse=True)
def _helpers(synth):
    global person_image, write_market_folder
    person_image, write_market_folder = synth.person_image, synth.write_market_folder


def write(path: Path, rng, pid=0, cam=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), person_image(pid, cam, rng, (40, 20)))


def test_market_layout_relabels_drops_junk_keeps_zero(tmp_path, rng):
    write_market_folder(tmp_path / "bounding_box_train", [0, 7, 42], 3, rng)
    write(tmp_path / "bounding_box_train" / "-1_c1s1_000000_00.jpg", rng)
    write_market_folder(tmp_path / "query", [100], 1, rng, cams=(1,))
    write_market_folder(tmp_path / "bounding_box_test", [100, 0], 2, rng, cams=(3,))
    write(tmp_path / "bounding_box_test" / "-1_c2s1_000000_00.jpg", rng)
    (tmp_path / "bounding_box_test" / "notes.txt").write_text("ignored")
    split = read_market1501(tmp_path)
    assert sorted({im.pid for im in split.train}) == [0, 1, 2]
    assert split.train_pid_names == (0, 7, 42)
    assert len(split.train) == 9  # junk dropped
    assert {im.camid for im in split.train} == {0, 1}  # c1, c2 -> 0, 1
    assert [im.pid for im in split.query] == [100]
    assert sorted({im.pid for im in split.gallery}) == [0, 100]  # distractor 0 kept, junk dropped
    assert {im.camid for im in split.gallery} == {2}
    assert split.has_eval and "3 ids" in split.summary()
    assert split.limit_train_identities(2).num_train_pids == 2


def test_duke_names_and_registry(tmp_path, rng):
    for sub, pid, cam in (("bounding_box_train", 1, 2), ("bounding_box_train", 5, 1), ("query", 9, 1),
                          ("bounding_box_test", 9, 3)):
        write(tmp_path / sub / f"{pid:04d}_c{cam}_f0046182.jpg", rng, pid, cam)
    split = read_dataset("dukemtmc", tmp_path)
    assert split.name == "dukemtmc" and split.num_train_pids == 2
    assert [(im.pid, im.camid) for im in split.query] == [(9, 0)]


@pytest.mark.parametrize("nested", ["", "cuhk03-np"])
@pytest.mark.parametrize("subset", ["detected", "labeled"])
def test_cuhk03_np_folder_layout(tmp_path, rng, nested, subset):
    base = tmp_path / nested / subset if nested else tmp_path / subset
    write_market_folder(base / "bounding_box_train", [3, 4], 2, rng)
    write_market_folder(base / "query", [800], 1, rng, cams=(1,), ext=".png")
    write_market_folder(base / "bounding_box_test", [800], 1, rng, cams=(2,), ext=".png")
    split = read_cuhk03(tmp_path, subset=subset)
    assert split.name == f"cuhk03_{subset}" and split.num_train_pids == 2 and len(split.gallery) == 1
    other = "labeled" if subset == "detected" else "detected"
    with pytest.raises(DatasetError, match=f"{other}/bounding_box_train"):
        read_cuhk03(tmp_path, subset=other)


def test_cuhk03_mat_layout(tmp_path, rng):
    scipy_io = pytest.importorskip("scipy.io", reason="the .mat layout needs scipy")
    names = [f"1_{i:03d}_1_01.png" for i in range(1, 7)]
    for i, name in enumerate(names):
        write(tmp_path / "images_detected" / name, rng, i)
    labels = np.array([10, 10, 11, 11, 20, 20])
    cams = np.array([1, 2, 1, 2, 1, 2])
    scipy_io.savemat(str(tmp_path / "cuhk03_new_protocol_config_detected.mat"), {
        "filelist": np.array(names, dtype=object).reshape(-1, 1),
        "labels": labels.reshape(-1, 1),
        "camId": cams.reshape(-1, 1),
        "train_idx": np.array([[1], [2], [3], [4]]),
        "query_idx": np.array([[5]]),
        "gallery_idx": np.array([[6]]),
    })
    split = read_dataset("cuhk03", tmp_path)
    assert [im.pid for im in split.train] == [0, 0, 1, 1] and split.train_pid_names == (10, 11)
    assert [(im.pid, im.camid) for im in split.query] == [(20, 0)]
    assert Path(split.gallery[0].path).name == names[5]


def test_msmt17_list_files(tmp_path, rng):
    rows = {"train": [("0000/0000_000_01_0303morning_0015_0.jpg", 0), ("0000/0000_001_05_0303morning_0016_0.jpg", 0),
                      ("0003/0003_000_02_0303noon_0001_0.jpg", 3)],
            "val": [("0007/0007_000_03_0303noon_0002_0.jpg", 7), ("0007/0007_001_04_0303noon_0003_0.jpg", 7)],
            "query": [("0100/0100_000_01_0303noon_0002_0.jpg", 100)],
            "gallery": [("0100/0100_001_06_0303noon_0002_0.jpg", 100)]}
    for kind, items in rows.items():
        folder = "test" if kind in ("query", "gallery") else "train"
        for rel, pid in items:
            write(tmp_path / folder / rel, rng, pid)
        (tmp_path / f"list_{kind}.txt").write_text("".join(f"{rel} {pid}\n" for rel, pid in items))
    split = read_msmt17(tmp_path)
    assert split.num_train_pids == 3 and len(split.train) == 5  # train + val
    assert split.train[1].camid == 4 and Path(split.train[1].path).exists()
    assert split.query[0].camid == 0 and split.gallery[0].camid == 5
    (tmp_path / "list_query.txt").write_text("0100/0100_000_01.jpg\n")
    with pytest.raises(DatasetError, match=r"list_query.txt:1: expected 'relative/path.jpg PID'"):
        read_msmt17(tmp_path)


def _market(root: Path, rng) -> Path:
    write_market_folder(root / "bounding_box_train", [1], 1, rng)
    return root


@pytest.mark.parametrize(
    "make, reader, message",
    [
        (lambda root, rng: root / "missing", "market1501", "does not exist"),
        (lambda root, rng: root, "market1501", "expected bounding_box_train/, query/ and bounding_box_test/"),
        (lambda root, rng: (root / "bounding_box_train").mkdir() or root, "market1501", "no usable images"),
        (_market, "market1501", "lacks query/"),
        (lambda root, rng: write(root / "bounding_box_train" / "person1.jpg", rng) or root, "market1501",
         "does not follow the Market-1501 pattern"),
        (lambda root, rng: write(root / "bounding_box_train" / "0001_c0s1_0_0.jpg", rng) or root, "market1501",
         "camera numbers start at 1"),
        (lambda root, rng: root, "cuhk03", "not a CUHK03 new-protocol dataset"),
        (lambda root, rng: root, "msmt17", "missing"),
        (lambda root, rng: root, "viper", "unknown dataset 'viper'"),
    ],
)
def test_wrong_layouts_name_what_was_expected(tmp_path, rng, make, reader, message):
    root = make(tmp_path, rng)
    with pytest.raises(DatasetError, match=message):
        read_dataset(reader, root)


def test_training_only_folder_without_eval_sets(tmp_path, rng):
    split = read_market1501(_market(tmp_path, rng), eval_sets=False)
    assert not split.has_eval and split.num_train_pids == 1


def test_parse_market_name_examples():
    assert parse_market_name("0002_c1s1_000451_03.jpg") == (2, 0)
    assert parse_market_name("0001_c6_f0046182.jpg") == (1, 5)


@pytest.mark.parametrize("mode", ["decoded", "jpeg"])
def test_image_cache_holds_the_runtime_resize(tmp_path, rng, mode):
    paths = [str(p) for p in write_market_folder(tmp_path, [1, 2], 2, rng, ext=".png")]
    spec = InputSpec(height=32, width=16)
    cache = ImageCache.build(paths, spec, mode=mode, threads=2)
    assert len(cache) == 4 and cache.nbytes > 0
    for i, path in enumerate(paths):
        expected = resize_crop(cv2.imread(path), spec)  # RGB, 32x16
        got = cache[i]
        assert got.shape == (32, 16, 3) and got.dtype == np.uint8
        if mode == "decoded":
            np.testing.assert_array_equal(got, expected)
        else:  # JPEG quality 95 with chroma subsampling: close after smoothing the pixel noise away
            blur = [cv2.GaussianBlur(a, (5, 5), 0).astype(int) for a in (got, expected)]
            assert np.abs(blur[0] - blur[1]).mean() < 8


@pytest.mark.parametrize("mode", ["decoded", "jpeg"])
def test_image_cache_keeps_the_model_channel_order(tmp_path, mode):
    red = np.zeros((40, 20, 3), np.uint8)
    red[..., 2] = 255  # pure red in BGR, as written to disk
    cv2.imwrite(str(tmp_path / "red.png"), red)
    got = ImageCache.build([str(tmp_path / "red.png")], InputSpec(height=16, width=8), mode=mode)[0]
    assert got[..., 0].min() > 240 and got[..., 2].max() < 15  # RGB: red first


def test_image_cache_unreadable_file(tmp_path):
    bad = tmp_path / "0001_c1s1_000000_00.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="could not be decoded as an image"):
        ImageCache.build([str(bad)], InputSpec(height=8, width=4))
    with pytest.raises(ValueError, match="cache mode"):
        ImageCache.build([str(bad)], InputSpec(height=8, width=4), mode="lmdb")


def test_training_dataset_seeds_and_collate(rng):
    images = rng.integers(0, 256, size=(4, 8, 4, 3), dtype=np.uint8)

    def jitter(image, r):
        return (image.astype(int) + r.integers(0, 50)).clip(0, 255).astype(np.uint8)

    ds = ReidTrainDataset(images, [0, 0, 1, 1], jitter)
    a, label, key = ds[(2, 7)]
    np.testing.assert_array_equal(a, ds[(2, 7)][0])
    assert label == 1 and key == 4  # 2 * index + flipped (no flip asked)
    x, y, keys = collate_uint8([ds[(0, 1)], ds[(3, 2)]])
    assert tuple(x.shape) == (2, 8, 4, 3) and y.tolist() == [0, 1] and keys.tolist() == [0, 6]


def test_dataset_flip_equals_a_leading_flip_transform_and_names_the_view(rng):
    from train.transforms import Compose, HorizontalFlip

    images = rng.integers(0, 256, size=(3, 8, 4, 3), dtype=np.uint8)

    def jitter(image, r):
        return (image.astype(int) + r.integers(0, 50)).clip(0, 255).astype(np.uint8)

    in_dataset = ReidTrainDataset(images, [0, 1, 2], jitter, flip=0.5)
    as_transform = ReidTrainDataset(images, [0, 1, 2], Compose([HorizontalFlip(0.5), jitter]))
    views = set()
    for seed in range(12):
        for index in range(3):
            image, _, key = in_dataset[(index, seed)]
            np.testing.assert_array_equal(image, as_transform[(index, seed)][0])
            assert key // 2 == index
            flipped = bool(key % 2)
            views.add(flipped)
            # the same generator state after the flip draw: recompute by hand
            r = np.random.default_rng(seed)
            assert (r.random() < 0.5) == flipped
            np.testing.assert_array_equal(image, jitter(images[index][:, ::-1] if flipped else images[index], r))
    assert views == {True, False}
    with pytest.raises(ValueError, match="flip probability"):
        ReidTrainDataset(images, [0, 1, 2], flip=1.5)
    with pytest.raises(ValueError, match="labels"):
        ReidTrainDataset(images, [0, 1])
