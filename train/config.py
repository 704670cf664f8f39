"""The training configuration: small typed dataclasses, one per concern, parsed at the edge.

Precedence (later wins): dataclass defaults < recipe (:data:`RECIPES`) < YAML file (``--config``)
< command-line (``--set section.key=value`` and the explicit flags of ``python -m train.run``).
When resuming, the configuration saved in the checkpoint replaces the defaults and the recipe.
The resolved configuration is written next to the checkpoints as ``config.yaml``.

Recipes (paper section 4.2)
---------------------------
``from_scratch``: SGD (momentum 0.9), cosine annealing, 350 epochs, batch 64 (16 identities x 4),
weight decay 5e-4, cross-entropy (label smoothing 0.1) + the auxiliary branch's cross-entropy.

``fine_tune``: AMSGrad, cosine annealing, 250 epochs, backbone frozen for the first 10 epochs
(only the new classifiers train), cross-entropy during those epochs, then Eq. 8
``L = L_softmax + 0.5 * L_E-TriHard`` (beta 0.8, margin 0.3). Start it with ``--init-from``.

About the learning rates: the paper's text pairs SGD (from scratch) with an initial learning rate
of 0.0015 and AMSGrad (fine-tuning) with 0.065. OSNet's published recipe, which DSLNet's training
follows, pairs them the other way round: SGD at 0.065 from scratch, AMSGrad at 0.0015 for
fine-tuning. 0.065 is a usual SGD rate and an unusually large one for an Adam-type optimizer (it
makes AMSGrad diverge on a freshly initialized classifier), while SGD at 0.0015 barely moves a
randomly initialized network in 350 epochs. The defaults here are OSNet's reading (SGD 0.065,
AMSGrad 0.0015); the paper's literal reading is one override away:
``--set optim.lr=0.0015`` (from_scratch) or ``--set optim.lr=0.065`` (fine_tune).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dslnet_edge.errors import DslnetError
from train.distill import DistillConfig
from train.losses import LossConfig
from train.transforms import AugmentConfig

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "ScheduleConfig",
    "RunConfig",
    "TrainConfig",
    "LossConfig",
    "AugmentConfig",
    "DistillConfig",
    "RECIPES",
    "resolve_config",
    "parse_override",
    "load_yaml",
    "save_config",
]


class ConfigError(DslnetError, ValueError):
    """A bad configuration key or value (the message names the key)."""


@dataclasses.dataclass
class DataConfig:
    """Where the images are and how batches are made.

    ``height``/``width`` are the training input size and become the checkpoint's InputSpec
    (a 128x64 warm-up then ``--init-from`` at 256x128 is a legitimate way to spend CPU).
    """

    root: str = ""
    dataset: str = "market1501"  # market1501 | dukemtmc | cuhk03 | msmt17 (see train.data.READERS)
    height: int = 256
    width: int = 128
    p: int = 16  # identities per batch
    k: int = 4  # images per identity
    cache: str = "decoded"  # decoded | jpeg (see train.data.ImageCache)
    workers: int = -1  # data-loader processes; -1 = 0 on CPU (cores are for the model), 8 on CUDA
    max_identities: int = 0  # >0: train on the first N identities only (smoke runs)
    # Market-layout folders read together as one training set (e.g. CUHK03's detected and
    # hand-labelled boxes of the same images: ["bounding_box_train", "bounding_box_train_labeled"]).
    train_dirs: tuple[str, ...] = ("bounding_box_train",)
    # >0: hold out N training identities (spread over the identity list, seeded by run.seed) as the
    # validation set - first camera as query, the others as gallery - and choose best.pt on it; the
    # dataset's query/ and bounding_box_test/ are then never read.
    val_identities: int = 0
    eval_max_images: int = 0  # >0: evaluate on the first N query and gallery images only (smoke runs)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        for name in ("height", "width", "p", "k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        from dslnet_edge.model.dslnet import min_input_size

        if min(self.height, self.width) < min_input_size():
            raise ConfigError(
                f"data.height and data.width must be >= {min_input_size()} (DSLNet downsamples by 16: "
                f"stride-2 conv, max-pool, two average pools), got {self.height}x{self.width}"
            )
        if self.k < 2:
            raise ConfigError(f"data.k must be >= 2 (triplet mining needs two images per identity), got {self.k}")
        if not self.train_dirs or not all(isinstance(d, str) and d for d in self.train_dirs):
            raise ConfigError(f"data.train_dirs must list at least one folder name, got {self.train_dirs!r}")
        if self.val_identities < 0:
            raise ConfigError(f"data.val_identities must be >= 0, got {self.val_identities}")
        if self.cache not in ("decoded", "jpeg"):
            raise ConfigError(f"data.cache must be 'decoded' or 'jpeg', got {self.cache!r}")

    @property
    def batch_size(self) -> int:
        return self.p * self.k


@dataclasses.dataclass
class ModelConfig:
    variant: str = "dslnet"  # see dslnet_edge.model.VARIANTS (Tables 4-5 ablations)
    aux_branch: bool = True
    embedding_relu: bool = True  # False: no ReLU after the embedding's BN (signed embeddings, distillation)
    bnneck: bool = False  # a training-only BN between the embedding and the classifiers
    init_from: str = ""  # checkpoint to take weights from (new input size allowed)
    mixstyle: float = 0.0  # training only: probability a batch mixes feature statistics (train/mixstyle.py)
    mixstyle_alpha: float = 0.1  # Beta(alpha, alpha) mixing weights
    mixstyle_layers: tuple[str, ...] = ("stage1", "stage2")

    def __post_init__(self) -> None:
        if not 0.0 <= self.mixstyle <= 1.0:
            raise ConfigError(f"model.mixstyle must be a probability in [0, 1], got {self.mixstyle}")
        if not self.mixstyle_alpha > 0:
            raise ConfigError(f"model.mixstyle_alpha must be > 0, got {self.mixstyle_alpha}")


@dataclasses.dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | amsgrad | adam
    lr: float = 0.065
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    freeze_backbone_epochs: int = 0  # train only the classifiers for this many first epochs

    def __post_init__(self) -> None:
        if self.name not in ("sgd", "amsgrad", "adam"):
            raise ConfigError(f"optim.name must be sgd, amsgrad or adam, got {self.name!r}")
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.freeze_backbone_epochs < 0:
            raise ConfigError("optim.weight_decay and optim.freeze_backbone_epochs must be >= 0")


@dataclasses.dataclass
class ScheduleConfig:
    epochs: int = 350
    name: str = "cosine"  # cosine | constant
    step: str = "epoch"  # epoch | iter: when the learning rate is updated
    warmup_epochs: float = 0.0  # linear warm-up from warmup_factor * lr
    warmup_factor: float = 0.1
    min_lr: float = 0.0  # cosine floor

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"schedule.epochs must be >= 1, got {self.epochs}")
        if self.name not in ("cosine", "constant"):
            raise ConfigError(f"schedule.name must be cosine or constant, got {self.name!r}")
        if self.step not in ("epoch", "iter"):
            raise ConfigError(f"schedule.step must be epoch or iter, got {self.step!r}")
        if self.warmup_epochs < 0 or not 0 < self.warmup_factor <= 1:
            raise ConfigError("schedule.warmup_epochs must be >= 0 and schedule.warmup_factor in (0, 1]")


@dataclasses.dataclass
class RunConfig:
    output: str = "runs/dslnet"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch.set_num_threads; 0 = leave torch's default
    amp: str = "auto"  # auto (bf16/fp16 on CUDA, off on CPU) | off | fp16 | bf16
    channels_last: bool = True
    eval_every: int = 10  # epochs; 0 = never (the last epoch is always evaluated when eval data exists)
    eval_batch: int = 64
    best_metric: str = "mAP"  # mAP | rank1
    progress: bool = True
    tensorboard: bool = True
    max_iters: int = 0  # >0: stop each epoch after this many batches (smoke runs)
    stop_after: int = 0  # >0: leave after this many epochs in this invocation (continue later with --resume)
    # >0: every N steps, a point of the training curve (curve.csv, TensorBoard curve/*): validation
    # Rank-1/mAP and, with teachers, the cosine to them on fixed held-aside crops (train/distill.TeacherProbe)
    curve_every: int = 0
    probe_images: int = 256  # clean training crops in that probe (spread over the training list)

    def __post_init__(self) -> None:
        if self.amp not in ("auto", "off", "fp16", "bf16"):
            raise ConfigError(f"run.amp must be auto, off, fp16 or bf16, got {self.amp!r}")
        if self.best_metric not in ("mAP", "rank1"):
            raise ConfigError(f"run.best_metric must be mAP or rank1, got {self.best_metric!r}")
        if min(self.eval_every, self.threads, self.max_iters, self.stop_after, self.curve_every,
               self.probe_images) < 0 or self.eval_batch < 1:
            raise ConfigError("run.eval_every, run.threads, run.max_iters, run.stop_after, run.curve_every and "
                              "run.probe_images must be >= 0, run.eval_batch >= 1")


@dataclasses.dataclass
class TrainConfig:
    recipe: str = "from_scratch"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        return _build(cls, data, "")


#: Paper section 4.2, OSNet's learning rates (see the module docstring for both readings).
RECIPES: dict[str, dict[str, Any]] = {
    "from_scratch": {
        "optim": {"name": "sgd", "lr": 0.065, "freeze_backbone_epochs": 0},
        "schedule": {"epochs": 350, "name": "cosine"},
        "loss": {"triplet": "none"},
    },
    "fine_tune": {
        "optim": {"name": "amsgrad", "lr": 0.0015, "freeze_backbone_epochs": 10},
        "schedule": {"epochs": 250, "name": "cosine"},
        "loss": {"triplet": "e_trihard", "triplet_start_epoch": 10, "alpha": 0.5, "beta": 0.8},
    },
    # Distillation from teacher models (give them with --teacher): signed embedding (no ReLU),
    # BNNeck before the classifiers, label losses (CE + aux + E-TriHard) beside the teacher terms.
    "distill": {
        "model": {"embedding_relu": False, "bnneck": True},
        "optim": {"name": "amsgrad", "lr": 0.0015, "freeze_backbone_epochs": 0},
        "schedule": {"epochs": 40, "name": "cosine", "step": "iter", "warmup_epochs": 1},
        "loss": {"triplet": "e_trihard", "triplet_start_epoch": 0, "alpha": 0.5, "beta": 0.8},
        "distill": {"feature_weight": 5.0, "relational_weight": 1.0, "temperature": 0.1},
        "run": {"amp": "bf16", "channels_last": True},
    },
}


# ---------------------------------------------------------------------------------------------
# dict <-> dataclasses, with errors that name the key
# ---------------------------------------------------------------------------------------------
def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # NaN passes every comparison check; inf is never a sensible setting
                raise ConfigError(f"{key} must be a finite number, got {value!r}")
            return float(value)
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (os.PathLike,)):
            return os.fspath(value)
        raise ConfigError(f"{key} must be a string, got {value!r}")
    if origin is tuple and typing.get_args(annotation)[1:] == (Ellipsis,):
        item = typing.get_args(annotation)[0]
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key} must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key)
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    where = prefix or "the configuration"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        name = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"unknown configuration key {name!r}; {where} has {sorted(fields)}")
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"optim.lr=0.01"`` -> ``{"optim": {"lr": 0.01}}`` (the value is parsed as YAML).

    Example:
        >>> parse_override("schedule.epochs=20"), parse_override("data.augment.flip=0")
        ({'schedule': {'epochs': 20}}, {'data': {'augment': {'flip': 0}}})
    """
    import yaml

    if "=" not in text:
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set has an empty key in {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    for part in reversed(parts):
        value = {part: value}
    return value


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping (sections data/model/optim/...), got {type(data).__name__}")
    return data


def resolve_config(
    *,
    base: Mapping[str, Any] | None = None,
    recipe: str | None = None,
    yaml_files: Sequence[str | os.PathLike] = (),
    overrides: Sequence[Mapping[str, Any]] = (),
) -> TrainConfig:
    """Defaults (or ``base``, e.g. a resumed run's saved config) < recipe < YAML files < overrides."""
    layers = [load_yaml(p) for p in yaml_files]
    if recipe is None:
        for layer in [*layers, *overrides]:
            recipe = layer.get("recipe", recipe)
    merged = dict(base) if base is not None else TrainConfig().to_dict()
    if recipe is not None:
        if recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {recipe!r}; choose from {sorted(RECIPES)}")
        if base is None or recipe != base.get("recipe"):
            merged = _merge(merged, RECIPES[recipe])
        merged["recipe"] = recipe
    for layer in [*layers, *overrides]:
        merged = _merge(merged, layer)
    return TrainConfig.from_dict(merged)


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write the resolved configuration as YAML, atomically."""
    import yaml

    from dslnet_edge._io import atomic_write_text

    header = "# Resolved training configuration (python -m train.run --config this-file reproduces the run)\n"
    atomic_write_text(path, header + yaml.safe_dump(cfg.to_dict(), sort_keys=False))
