"""Distillation: the losses by hand, the teacher targets (real tiny ONNX teachers, cache), the loop
with teachers (learning, exact resume), held-out validation identities, several training folders,
and the real OMZ IR teacher on real crops."""

from __future__ import annotations

import dataclasses
import math
import shutil

import numpy as np
import pytest
import torch
from testutils import shared_data_root, tiny_embedding_onnx

from dslnet_edge.model import build_variant
from dslnet_edge.model.checkpoint import load_checkpoint
from dslnet_edge.spec import InputSpec
from train.config import ConfigError, resolve_config
from train.data import DatasetError, read_dataset
from train.distill import (
    DistillConfig,
    DistillLoss,
    OnlineTeacher,
    TeacherError,
    TeacherProbe,
    ensemble_embed,
    feature_distill_loss,
    load_teacher,
    relational_distill_loss,
    similarity_distill_loss,
    teacher_targets,
)
from train.loop import fit


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)




# ---------------------------------------------------------------------------------------------
# Losses by hand
# ---------------------------------------------------------------------------------------------
def test_feature_loss_is_one_minus_cosine_by_hand():
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-3.0, -4.0]])
    expected = ((1 - 1) + (1 - 1 / math.sqrt(2)) + (1 - (-1))) / 3
    assert float(feature_distill_loss(student, target)) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="feature_dim"):
        feature_distill_loss(torch.ones(3, 4), torch.ones(3, 5))


def _relational_by_hand(s: np.ndarray, t: np.ndarray, temp: float) -> float:
    def rows(x):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        sim = x @ x.T / temp
        out = []
        for i in range(len(x)):
            others = [sim[i, j] for j in range(len(x)) if j != i]
            e = np.exp(np.array(others) - max(others))
            out.append(e / e.sum())
        return out

    ps, pt = rows(s), rows(t)
    return float(np.mean([np.sum(b * (np.log(b) - np.log(a))) for a, b in zip(ps, pt)]))


def test_relational_loss_matches_a_hand_computation_and_leaves_self_pairs_out():
    rng = np.random.default_rng(0)
    s, t = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    got = float(relational_distill_loss(torch.tensor(s), torch.tensor(t), temperature=0.5))
    assert got == pytest.approx(_relational_by_hand(s, t, 0.5), rel=1e-5)
    # same similarity structure (a rotation of the teacher) -> zero; a shuffled one -> clearly positive
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    assert float(relational_distill_loss(torch.tensor(t @ q), torch.tensor(t), 0.05)) == pytest.approx(0, abs=1e-6)
    assert float(relational_distill_loss(torch.tensor(s), torch.tensor(t), 0.05)) > 0.1
    # with the diagonal in, exp(1/T) of the self term swamps each row at T = 0.05 and the KL vanishes
    def with_diagonal(x):
        x = torch.nn.functional.normalize(torch.tensor(x), dim=1)
        return torch.log_softmax(x @ x.t() / 0.05, dim=1)

    s, t = rng.standard_normal((16, 64)), rng.standard_normal((16, 64))  # embedding-like: cosines near 0
    diag_in = float(torch.sum(with_diagonal(t).exp() * (with_diagonal(t) - with_diagonal(s)), dim=1).mean())
    assert diag_in < 1e-3 and float(relational_distill_loss(torch.tensor(s), torch.tensor(t), 0.05)) > 0.1
    with pytest.raises(ValueError, match=">= 3"):
        relational_distill_loss(torch.ones(2, 4), torch.ones(2, 4))


def test_similarity_loss_matches_a_hand_computation_and_sees_a_common_shift():
    rng = np.random.default_rng(2)
    s, t = rng.standard_normal((5, 6)), rng.standard_normal((5, 6))
    def cos(x):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return x @ x.T
    off = ~np.eye(5, dtype=bool)
    expected = float(np.mean((cos(s) - cos(t))[off] ** 2))
    assert float(similarity_distill_loss(torch.tensor(s), torch.tensor(t))) == pytest.approx(expected, rel=1e-6)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    assert float(similarity_distill_loss(torch.tensor(t @ q), torch.tensor(t))) == pytest.approx(0, abs=1e-10)
    # every student embedding shares one large direction (all cosines high): clearly penalized
    t = rng.standard_normal((16, 64))
    shifted = t / np.linalg.norm(t, axis=1, keepdims=True) + 2.0 * np.eye(64)[0]
    assert float(similarity_distill_loss(torch.tensor(shifted), torch.tensor(t))) > 0.5
    with pytest.raises(ValueError, match=">= 2"):
        similarity_distill_loss(torch.ones(1, 4), torch.ones(1, 4))


def test_distill_loss_weights_its_terms():
    rng = np.random.default_rng(1)
    s, t = torch.tensor(rng.standard_normal((6, 8))), torch.tensor(rng.standard_normal((6, 8)))
    total, parts = DistillLoss(DistillConfig(feature_weight=2.0, relational_weight=0.5, temperature=0.2))(s, t)
    assert float(total) == pytest.approx(2.0 * parts["feat"] + 0.5 * parts["rel"], rel=1e-6)
    total, parts = DistillLoss(DistillConfig(feature_weight=1.0, relational_weight=0.0))(s, t)
    assert set(parts) == {"feat"} and float(total) == pytest.approx(parts["feat"])
    total, parts = DistillLoss(DistillConfig(feature_weight=0.0, relational_weight=0.0, similarity_weight=3.0))(s, t)
    assert set(parts) == {"sim"} and float(total) == pytest.approx(3.0 * parts["sim"], rel=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": 0.0}, "temperature"),
    ({"feature_weight": -1.0}, "feature_weight"),
    ({"relational_weight": float("nan")}, "relational_weight"),
    ({"similarity_weight": -0.5}, "similarity_weight"),
    ({"teacher_channel_order": "BRG"}, "channel_order"),
    ({"batch_size": 0}, "batch_size"),
    ({"teacher_feature_dim": 0}, "teacher_feature_dim"),
])
def test_distill_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DistillConfig(**kwargs)


# ---------------------------------------------------------------------------------------------
# Teacher targets
# ---------------------------------------------------------------------------------------------
def test_ensemble_is_unit_norm_concatenation_of_normalized_teachers():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 6)) * 7
    out = ensemble_embed([lambda x: a, lambda x: b], np.zeros((3, 3, 2, 2), np.float32))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out[:, :4] * math.sqrt(2), a / np.linalg.norm(a, axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(TeacherError, match="non-finite"):
        ensemble_embed([lambda x: a * np.nan], np.zeros((3, 3, 2, 2), np.float32))


def _teachers(tmp_path, dims=(256, 256)):
    spec = InputSpec(height=16, width=8, channel_order="BGR", feature_dim=dims[0], l2_normalized=False)
    return [str(tiny_embedding_onnx(tmp_path / f"teacher{i}.onnx", spec.replace(feature_dim=d), seed=i, normalize=False))
            for i, d in enumerate(dims)]


def test_teacher_targets_flip_views_and_cache(synthetic_market, tmp_path, caplog):
    paths = sorted(str(p) for p in (synthetic_market / "bounding_box_train").glob("*.jpg"))[:6]
    cfg = DistillConfig(teachers=tuple(_teachers(tmp_path)), teacher_height=16, teacher_width=8, batch_size=4)
    caplog.set_level("INFO", logger="train.distill")
    cache = tmp_path / "targets.npy"
    targets = teacher_targets(paths, cfg, cache_file=cache)
    assert targets.shape == (6, 2, 512) and targets.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(targets, axis=2), 1.0, atol=1e-5)
    # view 1 is the teachers on the mirrored image: recompute one by hand through the real models
    from dslnet_edge.preprocessing import preprocess
    from train.data import read_bgr

    teachers = [load_teacher(t, spec=cfg.teacher_spec) for t in cfg.teachers]
    image = read_bgr(paths[3])
    mirrored = preprocess([np.ascontiguousarray(image[:, ::-1])], cfg.teacher_spec)
    np.testing.assert_allclose(targets[3, 1], ensemble_embed(teachers, mirrored)[0], atol=1e-5)
    assert not np.allclose(targets[3, 0], targets[3, 1])
    # the second call reuses the cache; a changed image list does not
    caplog.clear()
    again = teacher_targets(paths, cfg, cache_file=cache)
    np.testing.assert_array_equal(again, targets)
    assert any("reusing" in line for line in caplog.messages)
    caplog.clear()
    fewer = teacher_targets(paths[:5], cfg, cache_file=cache)
    assert fewer.shape[0] == 5 and not any("reusing" in line for line in caplog.messages)

    # the key is the teachers' contents: copied elsewhere with a new file time it is reused, edited it is not
    import dataclasses
    import os

    (tmp_path / "moved").mkdir()
    moved = [shutil.copy(t, tmp_path / "moved") for t in cfg.teachers]
    for t in moved:
        os.utime(t, (1, 1))
    teacher_targets(paths, cfg, cache_file=cache)  # back to the full list
    caplog.clear()
    teacher_targets(paths, dataclasses.replace(cfg, teachers=tuple(moved)), cache_file=cache)
    assert any("reusing" in line for line in caplog.messages)
    tiny_embedding_onnx(moved[0], cfg.teacher_spec, seed=7, normalize=False)  # same name, other weights
    caplog.clear()
    teacher_targets(paths, dataclasses.replace(cfg, teachers=tuple(moved)), cache_file=cache)
    assert not any("reusing" in line for line in caplog.messages)


def test_teacher_loading_errors_name_the_file(tmp_path):
    with pytest.raises(TeacherError, match="does not exist"):
        load_teacher(tmp_path / "missing.xml", spec=DistillConfig().teacher_spec)
    (tmp_path / "t.pb").write_bytes(b"x")
    with pytest.raises(TeacherError, match=r"\.xml\) or ONNX"):
        load_teacher(tmp_path / "t.pb", spec=DistillConfig().teacher_spec)
    with pytest.raises(TeacherError, match="at least one teacher"):
        teacher_targets(["a.jpg"], DistillConfig())


# ---------------------------------------------------------------------------------------------
# The loop with teachers
# ---------------------------------------------------------------------------------------------
def _config(root, output, teachers, **sections):
    base = {
        "recipe": "distill",
        "data": {"root": str(root), "height": 32, "width": 16, "p": 4, "k": 4},
        "schedule": {"epochs": 3, "warmup_epochs": 0},
        "distill": {"teachers": teachers, "teacher_height": 16, "teacher_width": 8, "feature_weight": 5.0},
        "run": {"output": str(output), "progress": False, "tensorboard": False, "eval_every": 0, "threads": 1,
                "amp": "off"},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return resolve_config(overrides=[base])


def test_distillation_pulls_the_embedding_to_the_teachers_and_resumes_exactly(synthetic_market, tmp_path):
    teachers = _teachers(tmp_path)
    straight = fit(_config(synthetic_market, tmp_path / "a", teachers, optim={"lr": 0.003}))
    h = straight.history
    assert {"feat", "rel", "ce", "triplet"} <= set(h[0])
    assert h[-1]["feat"] < h[0]["feat"] - 0.05  # the cosine to the teachers rises
    payload = load_checkpoint(straight.last_checkpoint)
    assert payload["model_config"]["embedding_relu"] is False and payload["model_config"]["bnneck"] is True
    assert (tmp_path / "a" / "teacher_targets.npy").is_file()
    # interrupted after one epoch, then resumed: the same weights as the uninterrupted run
    fit(_config(synthetic_market, tmp_path / "b", teachers, optim={"lr": 0.003}, run={"stop_after": 1}))
    resumed = fit(_config(synthetic_market, tmp_path / "b", teachers, optim={"lr": 0.003}), resume="auto")
    b = load_checkpoint(resumed.last_checkpoint)
    for key, value in payload["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    assert [r["feat"] for r in resumed.history] == pytest.approx([r["feat"] for r in h], abs=1e-6)


def test_teachers_of_another_width_are_refused_naming_the_teacher(synthetic_market, tmp_path):
    teachers = _teachers(tmp_path, dims=(256, 300))
    with pytest.raises(TeacherError, match=r"teacher1\.onnx.*300"):
        fit(_config(synthetic_market, tmp_path / "run", teachers, schedule={"epochs": 1}))


def test_teacher_width_is_a_setting_and_must_add_up_to_the_student_width(synthetic_market, tmp_path):
    (tmp_path / "wide").mkdir()
    one_wide = _teachers(tmp_path / "wide", dims=(512,))
    result = fit(_config(synthetic_market, tmp_path / "one", one_wide, schedule={"epochs": 1},
                         distill={"teacher_feature_dim": 512}))
    assert np.load(tmp_path / "one" / "teacher_targets.npy").shape[-1] == 512 and "feat" in result.history[0]
    (tmp_path / "narrow").mkdir()
    narrow = _teachers(tmp_path / "narrow", dims=(128, 128))
    with pytest.raises(ConfigError, match=r"concatenate to 256-d \(2 teacher\(s\) x distill.teacher_feature_dim 128\).*512-d"):
        fit(_config(synthetic_market, tmp_path / "two", narrow, schedule={"epochs": 1},
                    distill={"teacher_feature_dim": 128}))


def test_a_wrong_mixstyle_layer_is_refused_before_the_teachers_run(synthetic_market, tmp_path):
    teachers = _teachers(tmp_path)
    with pytest.raises(ConfigError, match="model.mixstyle_layers.*stage7"):
        fit(_config(synthetic_market, tmp_path / "run", teachers, model={"mixstyle": 0.5, "mixstyle_layers": ["stage7"]}))
    assert not (tmp_path / "run" / "teacher_targets.npy").exists()


def test_signed_embedding_and_bnneck_stay_out_of_the_inference_graph():
    spec = InputSpec(height=32, width=16)
    model = build_variant("dslnet", num_classes=5, embedding_relu=False, bnneck=True, spec=spec).eval()
    with torch.no_grad():
        emb = model(torch.rand(4, 3, 32, 16) * 255)
    assert (emb < 0).any()  # no ReLU after the embedding's BN
    assert not any(k.startswith("neck.") for k in model.inference_state_dict())
    relu = build_variant("dslnet", num_classes=5, spec=spec).eval()
    with torch.no_grad():
        assert (relu(torch.rand(4, 3, 32, 16) * 255) >= 0).all()
    assert sum(p.numel() for k, p in model.state_dict().items() if k in model.inference_state_dict()) == \
        sum(p.numel() for k, p in relu.state_dict().items() if k in relu.inference_state_dict())


# ---------------------------------------------------------------------------------------------
# Data: held-out validation identities, several training folders
# ---------------------------------------------------------------------------------------------
def test_validation_identities_come_from_training_and_the_test_split_is_never_read(synthetic_market, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synthetic_market / "bounding_box_train", root / "bounding_box_train")  # no query/ or test/
    split = read_dataset("market1501", root, eval_sets=False)
    held = split.hold_out_identities(3, seed=0)
    train_names = {held.train_pid_names[im.pid] for im in held.train}
    val_names = {im.pid for im in held.query} | {im.pid for im in held.gallery}
    assert len(val_names) == 3 and not train_names & val_names
    assert len(train_names) + 3 == split.num_train_pids
    assert {im.pid for im in held.train} == set(range(len(train_names)))  # relabelled 0..K-1
    assert {im.camid for im in held.query} == {0} and {im.camid for im in held.gallery} == {1}
    assert held.hold_out_identities(0) is held
    assert split.hold_out_identities(3, seed=1).query != held.query  # the draw follows the seed
    with pytest.raises(DatasetError, match="cannot hold out"):
        split.hold_out_identities(split.num_train_pids, seed=0)
    # fit with validation identities trains and evaluates without query/ or bounding_box_test/
    result = fit(resolve_config(overrides=[{
        "data": {"root": str(root), "height": 32, "width": 16, "p": 4, "k": 4, "val_identities": 3},
        "schedule": {"epochs": 1},
        "run": {"output": str(tmp_path / "run"), "progress": False, "tensorboard": False, "threads": 1}}]))
    assert "mAP" in result.history[-1]


def test_several_training_folders_are_one_set(synthetic_market, tmp_path):
    root = tmp_path / "data"
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        shutil.copytree(synthetic_market / sub, root / sub)
    shutil.copytree(synthetic_market / "bounding_box_train", root / "bounding_box_train_labeled")
    one = read_dataset("market1501", root)
    both = read_dataset("market1501", root, train_dirs=("bounding_box_train", "bounding_box_train_labeled"))
    assert len(both.train) == 2 * len(one.train) and both.num_train_pids == one.num_train_pids
    with pytest.raises(DatasetError, match="bounding_box_nope"):
        read_dataset("market1501", root, train_dirs=("bounding_box_train", "bounding_box_nope"))


@pytest.mark.parametrize("value, match", [([], "at least one"), ("bounding_box_train", "must be a list"),
                                          ([""], "at least one")])
def test_train_dirs_config_is_validated(value, match):
    with pytest.raises(ConfigError, match=match):
        resolve_config(overrides=[{"data": {"train_dirs": value}}])


# ---------------------------------------------------------------------------------------------
# The real teacher
# ---------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_omz_teacher_ranks_the_same_person_first():
    data = shared_data_root()
    if data is None:
        pytest.skip("../shared/data (cuhk03-pair1) is not present")
    teacher_file = data.parent / "peers" / "openvino-omz" / "person-reidentification-retail-0277.xml"
    if not teacher_file.is_file():
        pytest.skip(f"{teacher_file} is not present")
    pytest.importorskip("openvino", reason="the IR teacher needs the openvino package")
    split = read_dataset("market1501", data / "cuhk03-pair1", eval_sets=False)
    by_pid = {}
    for im in split.train:
        by_pid.setdefault(im.pid, []).append(im.path)
    pairs = [paths[:2] for pid, paths in sorted(by_pid.items())[:8]]
    cfg = DistillConfig(teachers=(str(teacher_file),), batch_size=8)
    targets = teacher_targets([p for pair in pairs for p in pair], cfg)
    assert targets.shape == (16, 2, 256)
    emb = targets[:, 0]
    sim = emb[0::2] @ emb[1::2].T  # person i's first image against every person's second image
    assert (sim.argmax(axis=1) == np.arange(8)).mean() >= 0.75
    assert float(np.mean(np.sum(targets[:, 0] * targets[:, 1], axis=1))) > 0.8  # a mirror view is the same person


# ---------------------------------------------------------------------------------------------
# The consistent (online) teacher and function matching
# ---------------------------------------------------------------------------------------------
def test_online_teacher_is_the_ensemble_on_the_preprocessed_views(tmp_path, rng):
    cfg = DistillConfig(teachers=tuple(_teachers(tmp_path)), teacher_height=16, teacher_width=8)
    teacher = OnlineTeacher(cfg)
    views = rng.integers(0, 256, size=(5, 32, 16, 3), dtype=np.uint8)  # BGR crops of another size
    from dslnet_edge.preprocessing import preprocess

    by_hand = ensemble_embed([load_teacher(t, spec=cfg.teacher_spec) for t in cfg.teachers],
                             preprocess(list(views), cfg.teacher_spec))
    np.testing.assert_allclose(teacher(views), by_hand, rtol=0, atol=1e-6)
    assert teacher.crops == 5 and teacher.seconds > 0
    np.testing.assert_allclose(teacher.embed(list(views), batch_size=2), by_hand, rtol=0, atol=1e-6)
    with pytest.raises(TeacherError, match=r"bf16 teachers need an OpenVINO IR"):
        OnlineTeacher(DistillConfig(teachers=cfg.teachers, teacher_height=16, teacher_width=8,
                                    teacher_precision="bf16"))


def test_teacher_probe_measures_cosine_and_bunching(tmp_path, rng):
    cfg = DistillConfig(teachers=tuple(_teachers(tmp_path)), teacher_height=16, teacher_width=8)
    teacher = OnlineTeacher(cfg)
    crops = [rng.integers(0, 256, size=(20, 10, 3), dtype=np.uint8) for _ in range(6)]
    probe = TeacherProbe({"train": crops, "empty": []}, teacher)
    assert set(probe.sets) == {"train"}
    same = probe.measure(teacher.embed)  # a student identical to its teacher
    assert same["train_cos"] == pytest.approx(1.0, abs=1e-5)
    assert same["train_sim"] == pytest.approx(same["train_sim_teacher"], abs=1e-5)
    bunched = probe.measure(lambda c: teacher.embed(c) + 10.0)  # one large shared direction
    assert bunched["train_sim"] > 0.9 > bunched["train_sim_teacher"] and bunched["train_cos"] < 0.9
    known = probe.measure(lambda c: pytest.fail("known embeddings are not computed again"),
                          known={"train": teacher.embed(crops)})
    assert known["train_cos"] == pytest.approx(1.0, abs=1e-5)


def test_online_function_matching_learns_logs_the_curve_and_resumes_exactly(synthetic_market, tmp_path):
    # the teachers take a larger input than the student (48x24 vs 32x16): the view is made at theirs
    sections = dict(
        data={"augment": {"mixup": 0.4, "cutmix": 0.4, "resized_crop": 0.5, "grayscale": 0.2}},
        distill={"teacher_mode": "online", "prefetch": 1, "teacher_height": 48, "teacher_width": 24},
        optim={"lr": 0.005}, schedule={"epochs": 5, "warmup_epochs": 0}, run={"curve_every": 2, "probe_images": 8},
    )

    def config(output, **run):
        cfg = _config(synthetic_market, output, teachers, **sections)
        return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, **run))

    teachers = [str(tiny_embedding_onnx(tmp_path / f"big{i}.onnx", InputSpec(
        height=48, width=24, channel_order="BGR", feature_dim=256, l2_normalized=False), seed=i, normalize=False))
        for i in range(2)]
    straight = fit(config(tmp_path / "a"))
    h = straight.history
    assert not (tmp_path / "a" / "teacher_targets.npy").exists()  # nothing cached: the teachers ran online
    assert h[-1]["feat"] < h[0]["feat"] - 0.05, [r["feat"] for r in h]
    assert 0 < np.mean([r["mixed"] for r in h]) < 1 and all(r["teacher_s"] > 0 for r in h)
    assert {"train_cos", "val_cos", "val_sim", "val_sim_teacher", "rank1", "mAP"} <= set(h[-1])
    curve = (tmp_path / "a" / "curve.csv").read_text().splitlines()
    header = curve[0].split(",")
    assert {"step", "epoch", "rank1", "mAP", "train_cos", "val_cos", "lr"} <= set(header)
    steps = [int(line.split(",")[header.index("step")]) for line in curve[1:]]
    assert steps == sorted(steps) and steps[0] == 2 and len(steps) >= 3
    # interrupted after one epoch, then resumed: the same weights, losses and curve
    fit(config(tmp_path / "b", stop_after=2))
    resumed = fit(config(tmp_path / "b"), resume="auto")
    a, b = load_checkpoint(straight.last_checkpoint), load_checkpoint(resumed.last_checkpoint)
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    assert [r["feat"] for r in resumed.history] == pytest.approx([r["feat"] for r in h], abs=1e-6)
    assert (tmp_path / "b" / "curve.csv").read_text().splitlines()[0] == curve[0]
    assert len(b["curve"]) == len(a["curve"])


def test_mixing_with_a_fixed_teacher_is_refused_before_the_teachers_run(synthetic_market, tmp_path):
    cfg = _config(synthetic_market, tmp_path / "run", _teachers(tmp_path), data={"augment": {"mixup": 0.5}})
    with pytest.raises(ConfigError, match="teacher_mode: online"):
        fit(cfg)
    assert not (tmp_path / "run" / "teacher_targets.npy").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"teacher_mode": "live"}, "teacher_mode"),
        ({"teacher_precision": "fp16"}, "teacher_precision"),
        ({"teacher_min_cosine": 0.0}, "teacher_min_cosine"),
        ({"prefetch": 9}, "prefetch"),
        ({"teacher_threads": -1}, "teacher_threads"),
    ],
)
def test_online_teacher_settings_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DistillConfig(**kwargs)
