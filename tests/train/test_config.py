"""Configuration: precedence, recipes, overrides, type checks, saving."""

from __future__ import annotations

import pytest
import yaml

from train.config import RECIPES, ConfigError, TrainConfig, parse_override, resolve_config, save_config


def test_defaults_are_the_from_scratch_recipe():
    cfg = resolve_config()
    assert cfg.recipe == "from_scratch" and cfg.optim.name == "sgd" and cfg.optim.lr == 0.065
    assert cfg.schedule.epochs == 350 and cfg.schedule.name == "cosine" and cfg.loss.triplet == "none"
    assert cfg.data.batch_size == 64 and cfg.optim.weight_decay == 5e-4


def test_fine_tune_recipe_is_paper_section_4_2():
    cfg = resolve_config(recipe="fine_tune")
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.freeze_backbone_epochs) == ("amsgrad", 0.0015, 10)
    assert cfg.schedule.epochs == 250
    assert (cfg.loss.triplet, cfg.loss.triplet_start_epoch, cfg.loss.alpha, cfg.loss.beta) == ("e_trihard", 10, 0.5, 0.8)


def test_precedence_defaults_recipe_yaml_overrides(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("recipe: fine_tune\noptim:\n  lr: 0.01\nschedule:\n  epochs: 40\n")
    cfg = resolve_config(yaml_files=[path], overrides=[parse_override("schedule.epochs=7")])
    assert cfg.recipe == "fine_tune" and cfg.optim.name == "amsgrad"  # recipe from the YAML
    assert cfg.optim.lr == 0.01  # YAML beats recipe
    assert cfg.schedule.epochs == 7  # command line beats YAML
    cli_recipe = resolve_config(recipe="from_scratch", yaml_files=[path])
    assert cli_recipe.optim.name == "sgd" and cli_recipe.optim.lr == 0.01


def test_resume_base_keeps_the_saved_values():
    saved = resolve_config(recipe="fine_tune", overrides=[{"optim": {"lr": 0.002}}]).to_dict()
    cfg = resolve_config(base=saved, overrides=[{"schedule": {"epochs": 300}}])
    assert cfg.optim.lr == 0.002 and cfg.schedule.epochs == 300 and cfg.optim.name == "amsgrad"


def test_round_trip_through_saved_yaml(tmp_path):
    cfg = resolve_config(recipe="fine_tune", overrides=[parse_override("data.augment.color_jitter=0.5"),
                                                        parse_override("optim.betas=[0.8, 0.99]")])
    save_config(cfg, tmp_path / "config.yaml")
    again = resolve_config(yaml_files=[tmp_path / "config.yaml"])
    assert again == cfg and again.optim.betas == (0.8, 0.99)
    assert TrainConfig.from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text())) == cfg


def test_override_parsing_and_int_to_float():
    assert parse_override("optim.lr=1") == {"optim": {"lr": 1}}
    assert resolve_config(overrides=[parse_override("optim.lr=1")]).optim.lr == 1.0
    assert parse_override("run.device=cuda:1") == {"run": {"device": "cuda:1"}}
    assert parse_override("run.tensorboard=false") == {"run": {"tensorboard": False}}


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=0.1", "unknown configuration key 'optim.lrr'"),
        ("optimizer.lr=0.1", "unknown configuration key 'optimizer'"),
        ("optim.lr=fast", "optim.lr must be a number"),
        ("schedule.epochs=1.5", "schedule.epochs must be an integer"),
        ("run.progress=maybe", "run.progress must be true or false"),
        ("optim.betas=[0.9]", "optim.betas must be a list of 2 values"),
        ("optim.name=rmsprop", "optim.name must be sgd, amsgrad or adam"),
        ("data.k=1", "data.k must be >= 2"),
        ("loss.triplet=quad", "loss.triplet must be one of"),
        ("schedule.step=batch", "schedule.step"),
        ("run.amp=fp8", "run.amp"),
        ("optim=3", "optim must be a mapping"),
        ("lr", "--set expects section.key=value"),
        ("recipe=long", "unknown recipe 'long'"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        resolve_config(overrides=[parse_override(override)])


def test_bad_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(yaml_files=[tmp_path / "missing.yaml"])
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        resolve_config(yaml_files=[tmp_path / "list.yaml"])
    (tmp_path / "broken.yaml").write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_config(yaml_files=[tmp_path / "broken.yaml"])


def test_shipped_recipe_files_resolve():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert configs, "configs/*.yaml missing"
    for path in configs:
        cfg = resolve_config(yaml_files=[path])
        assert cfg.recipe in RECIPES, path


def _float_keys(cls, prefix=""):
    """Every float-typed key of the configuration, dotted (section.key), found by walking the dataclasses."""
    import dataclasses
    import typing

    for field in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[field.name]
        key = f"{prefix}{field.name}"
        if dataclasses.is_dataclass(hint):
            yield from _float_keys(hint, key + ".")
        elif hint is float:
            yield key


FLOAT_KEYS = sorted(_float_keys(TrainConfig))


def test_float_keys_are_found():
    assert {"optim.lr", "optim.weight_decay", "schedule.min_lr"} <= set(FLOAT_KEYS)
    assert len(FLOAT_KEYS) >= 10


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_every_float_value_must_be_finite(key, value):
    """NaN passes every ``<= 0`` check, so --lr nan used to train (and write config.yaml) with NaN."""
    section, name = key.rsplit(".", 1)
    override = {name: value}
    for part in reversed(section.split(".")):
        override = {part: override}
    with pytest.raises(ConfigError, match=f"{key} must be a finite number"):
        resolve_config(overrides=[override])  # as the --lr flag passes it
    yaml_text = {"nan": ".nan", "inf": ".inf", "-inf": "-.inf"}[str(value)]
    with pytest.raises(ConfigError, match=f"{key} must be a finite number"):
        resolve_config(overrides=[parse_override(f"{key}={yaml_text}")])  # as --set and YAML files give it


def test_betas_must_be_finite():
    with pytest.raises(ConfigError, match=r"optim.betas\[1\] must be a finite number"):
        resolve_config(overrides=[parse_override("optim.betas=[0.9, .nan]")])


@pytest.mark.parametrize(("height", "width"), [(7, 3), (12, 64), (256, 12)])
def test_input_smaller_than_the_network_accepts_is_refused(height, width):
    with pytest.raises(ConfigError, match=f"data.height and data.width must be >= 13 .*got {height}x{width}"):
        resolve_config(overrides=[{"data": {"height": height, "width": width}}])
    assert resolve_config(overrides=[{"data": {"height": 13, "width": 13}}]).data.height == 13
