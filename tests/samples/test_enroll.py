"""``python -m samples.enroll``: crop folders -> gallery file, then ``video_reid --no-auto-enroll`` names them."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from dslnet_edge import Gallery
from samples import enroll, video_reid
from samples.enroll import discover_crops, spread


def _noisy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.integers(-6, 7, size=image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def _write(path, image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def run_cli(module, capsys, *argv):
    status = module.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_subfolders_then_video_reid_reports_them_by_name(tmp_path, capsys, tiny_model, figure, scene, walker, rng):
    crops = tmp_path / "known"
    for name, seed in (("alice", 1), ("bob", 2)):
        for k in range(3):
            _write(crops / name / f"{k}.png", _noisy(figure(seed), rng))
    (crops / "empty-folder").mkdir()
    gallery = tmp_path / "gallery.db"
    status, out, err = run_cli(enroll, capsys, "--crops", crops, "--gallery", gallery, "--model", tiny_model)
    assert status == 0, err
    assert "enrolled 2 identities from 6 crops (subfolders layout)" in out and "2 new, 0 updated" in out
    g = Gallery.load(gallery)
    assert sorted(g.identities()) == ["alice", "bob"] and g.info("alice").num_exemplars == 3
    # a video with alice, bob and a stranger (seed 9): names for the known, "unknown" for the stranger
    s = scene("door", [walker(1, (10, 40), (60, 40)), walker(2, (120, 40), (170, 40)), walker(9, (230, 100), (260, 100))], frames=5)
    log = tmp_path / "log.json"
    status, out, err = run_cli(
        video_reid, capsys, "--video", s.video, "--model", tiny_model, "--detector", f"boxes:{s.boxes}",
        "--gallery", gallery, "--no-auto-enroll", "--min-hits", 1, "--log", log, "--tracker", "iou", "--min-track-crops", 1,
    )
    assert status == 0, err
    frames = json.loads(log.read_text())["frames"]
    x_to_seed = {10: 1, 120: 2, 230: 9}  # seed by the box's first-frame position
    for d in frames[0]["detections"]:
        seed = x_to_seed[int(d["box"][0])]
        expected = {1: "alice", 2: "bob", 9: None}[seed]
        assert d["identity"] == expected and d["status"] == ("unknown" if expected is None else "known")
    assert {d["identity"] for f in frames for d in f["detections"]} == {"alice", "bob", None}


def test_market_layout_keeps_cameras_skips_junk_and_extends_a_gallery(tmp_path, capsys, tiny_model, figure, rng):
    crops = tmp_path / "market"
    for name, seed in [("0001_c1s1_000151_01.jpg", 1), ("0001_c2s1_000301_02.jpg", 1), ("0002_c1s2_000010_01.jpg", 2),
                       ("-1_c1s1_000000_00.jpg", 5), ("0000_c2s1_000000_00.jpg", 6)]:
        _write(crops / name, _noisy(figure(seed), rng))
    gallery = tmp_path / "g.db"
    status, out, err = run_cli(enroll, capsys, "--crops", crops, "--gallery", gallery, "--model", tiny_model)
    assert status == 0, err
    assert "(market layout)" in out and "skipped 2 Market junk/distractor images" in out
    g = Gallery.load(gallery)
    assert sorted(g.identities()) == ["0001", "0002"]
    assert sorted(g.info("0001").cameras) == ["c1", "c2"]
    # a second folder extends the file: one identity updated, one new
    more = tmp_path / "more"
    _write(more / "0002" / "a.png", _noisy(figure(2), rng))
    _write(more / "0003" / "a.png", _noisy(figure(3), rng))
    status, out, err = run_cli(enroll, capsys, "--crops", more, "--gallery", gallery, "--model", tiny_model)
    assert status == 0, err
    assert "1 new, 1 updated; the gallery holds 3 identities" in out
    g = Gallery.load(gallery)
    assert sorted(g.identities()) == ["0001", "0002", "0003"] and g.info("0002").num_exemplars == 2
    # --replace starts over
    status, out, err = run_cli(enroll, capsys, "--crops", more, "--gallery", gallery, "--model", tiny_model, "--replace")
    assert status == 0, err
    assert sorted(Gallery.load(gallery).identities()) == ["0002", "0003"]


def test_many_crops_are_spread_over_max_exemplars(tmp_path, capsys, tiny_model, figure, rng):
    crops = tmp_path / "c"
    for k in range(10):
        _write(crops / "carol" / f"{k:02d}.png", _noisy(figure(4), rng))
    status, out, err = run_cli(enroll, capsys, "--crops", crops, "--gallery", tmp_path / "g.db", "--model", tiny_model, "--max-exemplars", 3)
    assert status == 0, err
    assert "carol (3)" in out
    assert Gallery.load(tmp_path / "g.db").info("carol").num_exemplars == 3


@pytest.mark.parametrize("n, k, expected", [(10, 3, [0, 4, 9]), (3, 8, [0, 1, 2]), (5, None, [0, 1, 2, 3, 4]), (5, 1, [0])])
def test_spread(n, k, expected):
    assert spread(n, k) == expected


@pytest.mark.parametrize(
    "layout, fragments",
    [
        ({}, ["holds no images"]),
        ({"alice/": None}, ["holds no images"]),
        ({"notes.txt": b"hello"}, ["holds no images"]),
        ({"a.jpg": "img", "bob/b.jpg": "img"}, ["mixes images"]),
        ({"portrait.jpg": "img"}, ["portrait.jpg", "Market-1501 naming"]),
        ({"-1_c1s1_0.jpg": "img"}, ["junk/distractors"]),
        ({"alice/broken.jpg": b"\xff\xd8 not really a jpeg"}, ["broken.jpg", "could not be decoded as an image"]),
    ],
)
def test_bad_crop_folders(tmp_path, capsys, tiny_model, figure, layout, fragments):
    crops = tmp_path / "crops"
    crops.mkdir()
    for name, content in layout.items():
        path = crops / name
        if content is None:
            path.mkdir(parents=True)
        elif content == "img":
            _write(path, figure(1))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    status, _, err = run_cli(enroll, capsys, "--crops", crops, "--gallery", tmp_path / "g.db", "--model", tiny_model)
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0]
    assert not (tmp_path / "g.db").exists()


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("missing-folder", ["does not exist"]),
        ("file-as-folder", ["is not a folder"]),
        ("foreign-gallery", ["not a SQLite database"]),
        ("missing-model", ["nope.onnx", "does not exist"]),
        ("other-model-gallery", ["64-d", "256-d"]),
        ("max-exemplars-on-existing", ["--max-exemplars"]),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, tiny_model, figure, case, fragments):
    from testutils import tiny_embedding_onnx

    from dslnet_edge.spec import InputSpec

    crops = tmp_path / "crops"
    _write(crops / "alice" / "a.png", figure(1))
    gallery = tmp_path / "g.db"
    model = tiny_model
    extra = []
    if case == "missing-folder":
        crops = tmp_path / "nowhere"
    elif case == "file-as-folder":
        crops = crops / "alice" / "a.png"
    elif case == "foreign-gallery":
        gallery.write_text("my notes, not a gallery")
    elif case == "missing-model":
        model = tmp_path / "nope.onnx"
    elif case == "other-model-gallery":
        other = tiny_embedding_onnx(tmp_path / "other.onnx", InputSpec(height=32, width=16, feature_dim=256))
        assert enroll.main(["--crops", str(crops), "--gallery", str(gallery), "--model", str(other)]) == 0
        capsys.readouterr()
    elif case == "max-exemplars-on-existing":
        assert enroll.main(["--crops", str(crops), "--gallery", str(gallery), "--model", str(model)]) == 0
        capsys.readouterr()
        extra = ["--max-exemplars", "2"]
    before = gallery.read_bytes() if gallery.exists() else None
    status, _, err = run_cli(enroll, capsys, "--crops", crops, "--gallery", gallery, "--model", model, *extra)
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert (gallery.read_bytes() if gallery.exists() else None) == before  # the gallery file is untouched


def test_discover_crops_returns_layout_and_sets(tmp_path, figure):
    _write(tmp_path / "x" / "b" / "2.png", figure(1))
    _write(tmp_path / "x" / "b" / "1.jpg", figure(1))
    _write(tmp_path / "x" / "a" / "1.png", figure(2))
    layout, sets, skipped = discover_crops(tmp_path / "x")
    assert layout == "subfolders" and skipped == 0
    assert [(s.identity, [p.name for p in s.paths], s.cameras) for s in sets] == [("a", ["1.png"], (None,)), ("b", ["1.jpg", "2.png"], (None, None))]
