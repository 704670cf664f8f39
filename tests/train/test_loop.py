"""The training loop on a small generated dataset: learning, checkpoints, resume, init-from, freezing.

Runs single-threaded at 32x16 (the machine is shared); each fit takes a few seconds.
"""

from __future__ import annotations

import csv

import pytest
import torch

from dslnet_edge.model import build_variant
from dslnet_edge.model.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from dslnet_edge.spec import InputSpec
from train.config import resolve_config
from train.loop import build_scheduler, fit, init_from_checkpoint, lr_factor


def config(root, output, **sections):
    base = {
        "data": {"root": str(root), "height": 32, "width": 16, "p": 4, "k": 4},
        "schedule": {"epochs": 2},
        "run": {"output": str(output), "progress": False, "tensorboard": False, "eval_every": 0, "threads": 1},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return resolve_config(overrides=[base])




@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_few_epochs_lower_the_loss_and_raise_accuracy(synthetic_market, tmp_path):
    cfg = config(synthetic_market, tmp_path / "run", schedule={"epochs": 10, "warmup_epochs": 1},
                 optim={"lr": 0.05}, run={"eval_every": 5})
    result = fit(cfg)
    h = result.history
    assert len(h) == 10
    first_loss, last_loss = (h[0]["loss"] + h[1]["loss"]) / 2, (h[-1]["loss"] + h[-2]["loss"]) / 2
    first_acc, last_acc = (h[0]["acc"] + h[1]["acc"]) / 2, (h[-1]["acc"] + h[-2]["acc"]) / 2
    assert last_loss < 0.75 * first_loss
    assert last_acc > first_acc + 0.3
    # evaluated at epochs 5 and 10, best.pt holds the best mAP
    evaluated = [row for row in h if "mAP" in row]
    assert [row["epoch"] for row in evaluated] == [5, 10]
    assert all(0.0 <= row["rank1"] <= 1.0 and 0.0 < row["mAP"] <= 1.0 for row in evaluated)
    best = load_checkpoint(result.best_checkpoint)
    assert best["best_metric"] == max(row["mAP"] for row in evaluated)
    # the CSV holds one row per epoch with the logged numbers
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 11))
    assert float(rows[-1]["loss"]) == pytest.approx(h[-1]["loss"])
    assert (tmp_path / "run" / "config.yaml").read_text().count("height: 32") == 1


def test_checkpoint_round_trip_holds_everything_needed(synthetic_market, tmp_path):
    result = fit(config(synthetic_market, tmp_path / "run", schedule={"epochs": 1}))
    payload = load_checkpoint(result.last_checkpoint)
    assert payload["epoch"] == 1
    assert {"optimizer", "scheduler", "metrics", "history", "train_config", "train_pid_names"} <= set(payload)
    assert payload["input_spec"]["height"] == 32 and payload["model_config"]["num_classes"] == 8
    assert payload["train_config"]["data"]["root"] == str(synthetic_market)
    model = load_model(result.last_checkpoint)
    with torch.no_grad():
        emb = model(torch.rand(2, 3, 32, 16) * 255)
    assert emb.shape == (2, 512)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)


def test_resume_continues_exactly_like_an_uninterrupted_run(synthetic_market, tmp_path):
    straight = fit(config(synthetic_market, tmp_path / "a", schedule={"epochs": 3}))
    # the same run interrupted after one epoch (run.stop_after), then resumed
    fit(config(synthetic_market, tmp_path / "b", schedule={"epochs": 3}, run={"stop_after": 1}))
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    resumed = fit(config(synthetic_market, tmp_path / "b", schedule={"epochs": 3}), resume="auto")
    a = load_checkpoint(straight.last_checkpoint)
    b = load_checkpoint(resumed.last_checkpoint)
    assert b["epoch"] == 3 and len(b["history"]) == 3
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in straight.history], abs=1e-6)


def test_resume_refuses_inference_checkpoints_and_missing_files(synthetic_market, tmp_path):
    cfg = config(synthetic_market, tmp_path / "run")
    with pytest.raises(CheckpointError, match="nothing to resume"):
        fit(cfg, resume="auto")
    model = build_variant("dslnet", num_classes=8, spec=InputSpec(height=32, width=16))
    save_checkpoint(tmp_path / "infer.pt", model, inference_only=True)
    with pytest.raises(CheckpointError, match="inference checkpoint"):
        fit(cfg, resume=str(tmp_path / "infer.pt"))


def test_init_from_another_input_size(tmp_path):
    source = build_variant("dslnet", num_classes=8, spec=InputSpec(height=32, width=16))
    save_checkpoint(tmp_path / "small.pt", source)
    same_ids = build_variant("dslnet", num_classes=8, spec=InputSpec(height=64, width=32))
    message = init_from_checkpoint(same_ids, str(tmp_path / "small.pt"))
    assert "32x16 -> 64x32" in message and "fresh" not in message
    for key, value in source.state_dict().items():
        torch.testing.assert_close(same_ids.state_dict()[key], value, msg=key)
    other_ids = build_variant("dslnet", num_classes=5, spec=InputSpec(height=64, width=32))
    fresh_classifier = other_ids.classifier.weight.clone()
    message = init_from_checkpoint(other_ids, str(tmp_path / "small.pt"))
    assert "fresh: aux_classifier, classifier" in message
    torch.testing.assert_close(other_ids.classifier.weight, fresh_classifier)
    torch.testing.assert_close(other_ids.stem[0][0].weight, source.stem[0][0].weight)
    different = build_variant("dslnet_se", num_classes=8, spec=InputSpec(height=32, width=16))
    with pytest.raises(CheckpointError, match="different architecture"):
        init_from_checkpoint(different, str(tmp_path / "small.pt"))


def test_init_from_through_fit_changes_the_input_spec(synthetic_market, tmp_path, caplog):
    small = fit(config(synthetic_market, tmp_path / "small", schedule={"epochs": 1}))
    caplog.set_level("INFO", logger="train.loop")
    big = fit(config(synthetic_market, tmp_path / "big", data={"height": 48, "width": 24},
                     model={"init_from": str(small.last_checkpoint)}, schedule={"epochs": 1}))
    assert any("initialized from" in m and "32x16 -> 48x24" in m for m in caplog.messages)
    assert load_checkpoint(big.last_checkpoint)["input_spec"]["height"] == 48


def test_frozen_backbone_epochs_train_only_the_classifiers(synthetic_market, tmp_path):
    cfg = config(synthetic_market, tmp_path / "run", schedule={"epochs": 1},
                 optim={"name": "amsgrad", "lr": 0.0015, "freeze_backbone_epochs": 1})
    torch.manual_seed(cfg.run.seed)
    initial = build_variant("dslnet", num_classes=8, spec=InputSpec(height=32, width=16)).state_dict()
    trained = load_checkpoint(fit(cfg).last_checkpoint)["state_dict"]
    for key, value in initial.items():
        if key.startswith(("classifier.", "aux_classifier.")):
            if key.endswith("weight"):
                assert not torch.equal(trained[key], value), key
        else:  # weights and BN running statistics untouched
            torch.testing.assert_close(trained[key], value, rtol=0, atol=0, msg=key)


def test_lr_schedule_warmup_cosine_and_per_iteration():
    f = [lr_factor(s, total=10, warmup=2, warmup_factor=0.1, kind="cosine", min_factor=0.0) for s in range(11)]
    assert f[0] == pytest.approx(0.1) and f[1] == pytest.approx(0.55) and f[2] == pytest.approx(1.0)
    assert f[6] == pytest.approx(0.5) and f[10] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(f[2:], f[3:]))
    assert lr_factor(5, total=10, warmup=0, warmup_factor=0.1, kind="constant", min_factor=0.0) == 1.0
    cfg = resolve_config(overrides=[{"schedule": {"epochs": 2, "step": "iter"}, "optim": {"lr": 0.1}}])
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr)
    sched = build_scheduler(cfg, opt, iters_per_epoch=4)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[4] == pytest.approx(0.05) and lrs[-1] < 0.01


def test_label_weight_zero_without_teachers_is_refused_before_training(synthetic_market, tmp_path):
    from train.config import ConfigError

    with pytest.raises(ConfigError, match="label_weight is 0 and there are no teachers"):
        fit(config(synthetic_market, tmp_path / "run", loss={"label_weight": 0.0}))
    assert not (tmp_path / "run" / "last.pt").exists()
    # checked before any data is read: a missing data folder is not what the user hears about first
    with pytest.raises(ConfigError, match="label_weight is 0"):
        fit(config(tmp_path / "no-such-data", tmp_path / "run", loss={"label_weight": 0.0}))


def test_the_loop_trains_with_mixstyle_and_names_a_wrong_layer(synthetic_market, tmp_path):
    from train.config import ConfigError

    torch.set_num_threads(1)
    plain = fit(config(synthetic_market, tmp_path / "plain", schedule={"epochs": 1}))
    mixed = fit(config(synthetic_market, tmp_path / "mixed", schedule={"epochs": 1}, model={"mixstyle": 1.0}))
    assert mixed.history[0]["loss"] > 0 and torch.isfinite(torch.tensor(mixed.history[0]["loss"]))
    a = load_checkpoint(plain.last_checkpoint)["state_dict"]
    b = load_checkpoint(mixed.last_checkpoint)["state_dict"]
    assert set(a) == set(b)  # nothing of MixStyle is saved
    assert any(not torch.equal(a[k], b[k]) for k in a)  # ... but it changed the training
    with pytest.raises(ConfigError, match="model.mixstyle_layers.*stage7"):
        fit(config(synthetic_market, tmp_path / "bad", schedule={"epochs": 1},
                   model={"mixstyle": 0.5, "mixstyle_layers": ["stage7"]}))
