"""The training loop: one function, :func:`fit`, from a :class:`TrainConfig` to checkpoints.

What it does, in order: set up the device (CPU, CUDA, or one rank of a ``torchrun`` DDP job),
read the dataset and decode it once into RAM at the training size, build DSLNet (or take weights
from ``model.init_from``, possibly trained at another input size), resume from a checkpoint when
asked, then train epoch by epoch with P x K batches, the paper's losses, SGD/AMSGrad and a
cosine schedule; every ``run.eval_every`` epochs (and at the end) it ranks query against
gallery, and it writes ``last.pt`` after every epoch and ``best.pt`` when the chosen metric
improves, plus ``metrics.csv`` (and TensorBoard events when tensorboard is installed).

Everything random is a function of ``(run.seed, epoch)`` - the sampler's plan, each sample's
augmentation, torch's generator - so ``--resume`` continues exactly like an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from dslnet_edge._io import atomic_write_text
from dslnet_edge.errors import DslnetError
from dslnet_edge.model import DSLNet, build_variant
from dslnet_edge.model.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from dslnet_edge.spec import InputSpec
from train.batches import TrainBatch, batch_stream, prefetched
from train.config import ConfigError, TrainConfig, save_config
from train.data import ImageCache, ReidSplit, ReidTrainDataset, collate_uint8, read_bgr, read_dataset
from train.evaluate import EvalSet, embed_images, evaluate_embeddings, torch_embedder
from train.losses import ReidLoss
from train.sampler import PKSampler
from train.transforms import build_transform

__all__ = ["fit", "FitResult", "TrainingDivergedError", "build_optimizer", "build_scheduler", "lr_factor", "init_from_checkpoint",
           "set_backbone_frozen", "find_resume_checkpoint"]

_log = logging.getLogger(__name__)
_HEAD_MODULES = ("neck", "classifier", "aux_classifier")


class TrainingDivergedError(DslnetError, FloatingPointError):
    """The loss became NaN or infinite (still a ``FloatingPointError``, as it was)."""


@dataclasses.dataclass(frozen=True)
class FitResult:
    output: Path
    epochs_done: int
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_metric: float | None
    history: list[dict[str, Any]]


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------
def lr_factor(step: int, *, total: int, warmup: float, warmup_factor: float, kind: str, min_factor: float) -> float:
    """Multiplier of the base learning rate at ``step`` (epochs or iterations, 0-based).

    Linear warm-up from ``warmup_factor`` over ``warmup`` steps, then cosine annealing to
    ``min_factor`` at ``total`` (or constant).

    Example:
        >>> [round(lr_factor(s, total=4, warmup=0, warmup_factor=0.1, kind="cosine", min_factor=0.0), 3) for s in range(5)]
        [1.0, 0.854, 0.5, 0.146, 0.0]
    """
    if step < warmup:
        return warmup_factor + (1.0 - warmup_factor) * step / warmup
    if kind == "constant":
        return 1.0
    t = min(1.0, (step - warmup) / max(1.0, total - warmup))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    params = list(model.parameters())
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    return torch.optim.Adam(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay, amsgrad=o.name == "amsgrad")


def build_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, iters_per_epoch: int):
    s = cfg.schedule
    per_iter = s.step == "iter"
    scale = iters_per_epoch if per_iter else 1
    min_factor = s.min_lr / cfg.optim.lr

    def factor(step: int) -> float:
        return lr_factor(step, total=s.epochs * scale, warmup=s.warmup_epochs * scale, warmup_factor=s.warmup_factor,
                         kind=s.name, min_factor=min_factor)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _apply_schedule(optimizer: torch.optim.Optimizer, scheduler, base_lr: float) -> None:
    """After a resume: the configured base rate and schedule (which may differ from the saved run's,
    e.g. more epochs) set the current learning rate, not the value saved in the optimizer."""
    scheduler.base_lrs = [base_lr] * len(optimizer.param_groups)
    for group in optimizer.param_groups:
        group["initial_lr"] = base_lr
        group["lr"] = base_lr * scheduler.lr_lambdas[0](scheduler.last_epoch)
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


def set_backbone_frozen(model: DSLNet, frozen: bool) -> None:
    """Freeze everything but the identity classifiers (fine-tuning's first epochs), BN statistics included."""
    for name, module in model.named_children():
        trainable = not frozen or name in _HEAD_MODULES
        for p in module.parameters():
            p.requires_grad_(trainable)
        if not trainable:
            module.eval()


def init_from_checkpoint(model: DSLNet, path: str) -> str:
    """Copy matching weights from checkpoint ``path`` into ``model`` (input size may differ).

    The classifiers are reused when the identity count matches, else left freshly initialized.
    Raises :class:`CheckpointError` when the architectures differ.
    """
    payload = load_checkpoint(path)
    theirs = dict(payload["model_config"])
    ours = model.config.to_dict()
    ignore = ("num_classes", "aux_branch", "embedding_relu", "bnneck")  # no weight shape depends on these
    diff = sorted(k for k in ours if k not in ignore and theirs.get(k) != ours[k])
    if diff:
        raise CheckpointError(f"--init-from {path}: different architecture ({', '.join(f'{k}: {theirs.get(k)} vs {ours[k]}' for k in diff)})")
    own = model.state_dict()
    loaded, skipped = {}, []
    for key, value in payload["state_dict"].items():
        if key in own and own[key].shape == value.shape:
            loaded[key] = value.float() if value.is_floating_point() else value
        else:
            skipped.append(key)
    model.load_state_dict(loaded, strict=False)
    fresh = sorted({k.split(".")[0] for k in own if k not in loaded})
    spec = InputSpec.from_dict(payload["input_spec"])
    return (f"initialized from {path} ({spec.height}x{spec.width} -> {model.spec.height}x{model.spec.width}): "
            f"{len(loaded)}/{len(own)} tensors loaded" + (f", fresh: {', '.join(fresh)}" if fresh else ""))


def find_resume_checkpoint(resume: str, output: Path) -> Path:
    """``"auto"`` -> ``output/last.pt``; a folder -> ``folder/last.pt``; else the path itself."""
    path = output / "last.pt" if resume == "auto" else Path(resume)
    if path.is_dir():
        path = path / "last.pt"
    if not path.exists():
        raise CheckpointError(f"nothing to resume: {path} does not exist")
    return path


def _choose_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"run.device={name!r} but CUDA is not available (torch {torch.__version__})")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    amp = cfg.run.amp
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@dataclasses.dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_name: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device_name != "cpu" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend)
    return _Dist(rank, world, local)


class _Logger:
    """CSV (always, rewritten atomically each epoch) and TensorBoard (when installed) on rank 0."""

    def __init__(self, output: Path, enabled: bool, tensorboard: bool, history: list[dict[str, Any]],
                 curve: list[dict[str, Any]] | None = None):
        self.output, self.enabled, self.history = output, enabled, history
        self.curve = curve if curve is not None else []
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(output / "tensorboard"))
            except ImportError:
                self.tb = None

    def scalar(self, name: str, value: float, step: int) -> None:
        if self.tb is not None:
            self.tb.add_scalar(name, value, step)

    def epoch(self, row: dict[str, Any]) -> None:
        self._append(self.history, row, "metrics.csv", "epoch", row["epoch"])

    def curve_point(self, row: dict[str, Any]) -> None:
        """A point of the training curve (every ``run.curve_every`` steps): ``curve.csv``, ``curve/*``."""
        self._append(self.curve, row, "curve.csv", "curve", row["step"])

    def _append(self, rows: list[dict[str, Any]], row: dict[str, Any], file: str, group: str, step) -> None:
        rows.append(row)
        if not self.enabled:
            return
        columns: list[str] = []
        for r in rows:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.output / file, buf.getvalue())
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)) and value == value:
                self.scalar(f"{group}/{key}", value, step)
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ---------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------
def fit(cfg: TrainConfig, *, resume: str | None = None) -> FitResult:
    """Train per ``cfg``; ``resume`` = ``"auto"`` (``run.output/last.pt``), a folder or a checkpoint path.

    Progress goes to the ``train.loop`` logger (INFO), from the main process only.
    """
    ddp = _setup_distributed(cfg.run.device)
    say = _log.info if ddp.main else (lambda msg: None)
    if not cfg.data.root:
        raise ValueError("no training data: set data.root (--data-root) to a dataset folder")
    if cfg.loss.label_weight == 0 and not cfg.distill.enabled:
        raise ConfigError("loss.label_weight is 0 and there are no teachers: nothing would be learned "
                          "(label_weight 0 is for distillation only)")
    output = Path(cfg.run.output)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = _choose_device(cfg.run.device, ddp.local_rank)
    amp_dtype = _amp_dtype(cfg, device)

    resume_payload = None
    if resume:
        path = find_resume_checkpoint(resume, output)
        resume_payload = load_checkpoint(path)
        for key in ("epoch", "optimizer", "scheduler"):
            if key not in resume_payload:
                raise CheckpointError(f"{path} is an inference checkpoint (no {key!r}); --resume needs a training checkpoint such as last.pt")
        say(f"resuming from {path} (epoch {resume_payload['epoch']} done)")

    # Data ------------------------------------------------------------------------------------
    read_kwargs = {"train_dirs": cfg.data.train_dirs} if cfg.data.train_dirs != ("bounding_box_train",) else {}
    if cfg.data.val_identities:
        read_kwargs["eval_sets"] = False  # validation comes from training identities: never read the test split
    split: ReidSplit = read_dataset(cfg.data.dataset, cfg.data.root, **read_kwargs)
    split = split.hold_out_identities(cfg.data.val_identities, seed=cfg.run.seed)
    split = split.limit_train_identities(cfg.data.max_identities)
    say(split.summary())
    spec = InputSpec(height=cfg.data.height, width=cfg.data.width)
    online = cfg.distill.enabled and cfg.distill.teacher_mode == "online"
    if cfg.data.augment.mixes and cfg.distill.enabled and not online:
        raise ConfigError("data.augment.mixup/cutmix need distill.teacher_mode: online (a fixed teacher's cached "
                          "target is of the unmixed image)")
    # Views: the augmented crops, BGR like every crop the runtime gets, at the student's size, or at the
    # teachers' when they answer online for each view and take a larger input (train/batches.py)
    tspec = cfg.distill.teacher_spec
    view_h, view_w = ((tspec.height, tspec.width) if online and tspec.height * tspec.width > spec.height * spec.width
                      else (spec.height, spec.width))
    view_spec = InputSpec(height=view_h, width=view_w, channel_order="BGR", interpolation=spec.interpolation)
    t0 = time.perf_counter()
    cache = ImageCache.build([im.path for im in split.train], view_spec, mode=cfg.data.cache,
                             threads=max(1, torch.get_num_threads()))
    say(f"decoded {len(cache)} training images at {view_h}x{view_w} in {time.perf_counter() - t0:.1f} s "
        f"({cache.nbytes / 2**20:.0f} MiB {cfg.data.cache} cache)")
    labels = [im.pid for im in split.train]
    # the mirror step runs in the dataset (it reports which view it drew, for the fixed teacher's targets)
    transform = build_transform(dataclasses.replace(cfg.data.augment, flip=0.0), height=view_h,
                                channel_order=view_spec.channel_order, mean=spec.mean)
    dataset = ReidTrainDataset(cache, labels, transform, flip=cfg.data.augment.flip)

    # Model -------------------------------------------------------------------------------------
    num_classes = split.num_train_pids
    torch.manual_seed(cfg.run.seed)
    if resume_payload is not None:
        model = model_from_checkpoint(resume_payload, source="--resume checkpoint")
        if model.config.num_classes != num_classes:
            raise CheckpointError(f"the resumed checkpoint has {model.config.num_classes} identities, "
                                  f"the dataset {num_classes}: resume with the same data (or use --init-from)")
        if (model.spec.height, model.spec.width) != (spec.height, spec.width):
            raise CheckpointError(f"the resumed checkpoint was trained at {model.spec.height}x{model.spec.width}, "
                                  f"the config says {spec.height}x{spec.width}: use --init-from to change the size")
    else:
        model = build_variant(cfg.model.variant, num_classes=num_classes, aux_branch=cfg.model.aux_branch,
                              embedding_relu=cfg.model.embedding_relu, bnneck=cfg.model.bnneck, spec=spec)
        if cfg.model.init_from:
            say(init_from_checkpoint(model, cfg.model.init_from))
    model.to(device)
    if cfg.run.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.model.mixstyle > 0:
        from train.mixstyle import MixStyle, attach_mixstyle

        try:
            attach_mixstyle(model, MixStyle(cfg.model.mixstyle, cfg.model.mixstyle_alpha), cfg.model.mixstyle_layers)
        except ValueError as exc:
            raise ConfigError(f"model.mixstyle_layers: {exc}") from None

    targets = teacher = probe = None
    if cfg.distill.enabled:
        from train.distill import OnlineTeacher

        # the teachers' answers: online for every view, and for the curve's fixed probe sets in both modes
        teacher = OnlineTeacher(cfg.distill, threads=max(1, torch.get_num_threads()))
        width = teacher(np.stack([cache[0]] * 3)).shape[1]
        if width != model.config.feature_dim:
            raise ConfigError(_width_mismatch(width, cfg, model))
    if cfg.distill.enabled and not online:
        from train.distill import teacher_targets

        if ddp.main:
            output.mkdir(parents=True, exist_ok=True)
        targets = torch.from_numpy(teacher_targets([im.path for im in split.train], cfg.distill,
                                                   cache_file=output / "teacher_targets.npy",
                                                   teachers=teacher.teachers)).to(device)
        targets = targets.reshape(-1, targets.shape[-1])  # row 2 * index + flipped
    sampler = PKSampler(labels, cfg.data.p, cfg.data.k, seed=cfg.run.seed, rank=ddp.rank, world_size=ddp.world_size)
    workers = cfg.data.workers if cfg.data.workers >= 0 else (8 if device.type == "cuda" else 0)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_uint8, num_workers=workers,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    query_set = gallery_set = None
    if split.has_eval and ddp.main:
        query_set = EvalSet.load(split.query, limit=cfg.data.eval_max_images)
        gallery_set = EvalSet.load(split.gallery, limit=cfg.data.eval_max_images)
    if teacher is not None and ddp.main:
        from train.distill import TeacherProbe

        t = time.perf_counter()
        probe = TeacherProbe(_probe_sets(split, cfg.run.probe_images, query_set, gallery_set), teacher)
        teacher.seconds, teacher.crops = 0.0, 0
        say(f"teacher probe: {', '.join(f'{k} {len(v)} crops' for k, v in probe.sets.items())} "
            f"({time.perf_counter() - t:.0f} s)")

    optimizer = build_optimizer(cfg, model)
    iters_per_epoch = len(sampler) if not cfg.run.max_iters else min(len(sampler), cfg.run.max_iters)
    scheduler = build_scheduler(cfg, optimizer, iters_per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    start_epoch, best, history, curve = 0, None, [], []
    if resume_payload is not None:
        optimizer.load_state_dict(resume_payload["optimizer"])
        scheduler.load_state_dict(resume_payload["scheduler"])
        if resume_payload.get("scaler"):
            scaler.load_state_dict(resume_payload["scaler"])
        start_epoch = int(resume_payload["epoch"])
        best = resume_payload.get("best_metric")
        history = list(resume_payload.get("history", []))
        curve = list(resume_payload.get("curve", []))
        _apply_schedule(optimizer, scheduler, cfg.optim.lr)
    label_loss = ReidLoss(cfg.loss)
    distill_loss = None
    if cfg.distill.enabled:
        from train.distill import DistillLoss

        distill_loss = DistillLoss(cfg.distill)

    def criterion(output, batch: TrainBatch, *, epoch: int):
        total, parts = label_loss(output, batch.labels, epoch=epoch, mixed_with=batch.mixed_with, lam=batch.lam)
        if distill_loss is None:
            return total, parts
        extra, more = distill_loss(output.features, batch.targets if batch.targets is not None else targets[batch.keys])
        return total + extra, {**parts, **more}

    def batches(epoch: int):
        stream = batch_stream(loader, spec=spec, augment=cfg.data.augment, seed=cfg.run.seed, epoch=epoch,
                              teacher=teacher if online else None)
        return prefetched(stream, cfg.distill.prefetch if online else 0)

    def evaluate() -> dict[str, Any]:
        """Validation Rank-1/mAP, and the probe's cosines to the teachers (one embedding of each crop)."""
        embed = torch_embedder(model, device=device, channels_last=cfg.run.channels_last)
        batch = cfg.run.eval_batch
        q = embed_images(query_set.images, model.spec, embed, batch_size=batch)
        g = embed_images(gallery_set.images, model.spec, embed, batch_size=batch)
        result, _ = evaluate_embeddings(q, g, query_set, gallery_set)
        row = {k: v for k, v in result.to_dict().items() if k != "num_valid"}
        if probe is not None:
            row.update(probe.measure(lambda crops: embed_images(crops, model.spec, embed, batch_size=batch),
                                     known={"val": np.concatenate([q, g])}))
        return row

    if ddp.main:
        output.mkdir(parents=True, exist_ok=True)
        save_config(cfg, output / "config.yaml")
    logger = _Logger(output, ddp.main, cfg.run.tensorboard, history, curve)
    extra_meta = {"train_config": cfg.to_dict(), "dataset": split.summary(),
                  "train_pid_names": list(split.train_pid_names)}
    say(f"training {cfg.model.variant} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, "
        f"{num_classes} identities) at {spec.height}x{spec.width} on {device}"
        f"{f' x{ddp.world_size} ranks' if ddp.enabled else ''}, batch {cfg.data.p}x{cfg.data.k}, "
        f"{iters_per_epoch} iterations/epoch, epochs {start_epoch + 1}..{cfg.schedule.epochs}, "
        f"{torch.get_num_threads()} threads, amp {amp_dtype or 'off'}")

    last_path, best_path = output / "last.pt", output / "best.pt"
    train_model: nn.Module = model
    frozen_state: bool | None = None
    try:
        end_epoch = cfg.schedule.epochs
        if start_epoch >= end_epoch:
            say(f"nothing to do: {start_epoch} of {end_epoch} epochs are done (raise schedule.epochs to continue)")
        if cfg.run.stop_after:
            end_epoch = min(end_epoch, start_epoch + cfg.run.stop_after)
        for epoch in range(start_epoch, end_epoch):
            frozen = epoch < cfg.optim.freeze_backbone_epochs
            if ddp.enabled and frozen != frozen_state:  # DDP must be (re)built for the trainable set
                set_backbone_frozen(model, frozen)
                train_model = nn.parallel.DistributedDataParallel(
                    model, device_ids=[device.index] if device.type == "cuda" else None)
            frozen_state = frozen
            curve_hook = None
            if cfg.run.curve_every and ddp.main and query_set is not None:
                def curve_hook(step: int, running: dict[str, float], epoch=epoch, frozen=frozen) -> None:
                    t = time.perf_counter()
                    row = {"step": step, "epoch": round(step / iters_per_epoch, 3), **running, **evaluate(),
                           "eval_s": round(time.perf_counter() - t, 1)}
                    logger.curve_point(row)
                    say(f"step {step}: Rank-1 {row['rank1']:.3f} mAP {row['mAP']:.3f}"
                        + "".join(f" {k} {row[k]:.3f}" for k in ("train_cos", "val_cos") if k in row))
                    model.train()
                    set_backbone_frozen(model, frozen)
            stats = _train_one_epoch(cfg, epoch, model, train_model, batches(epoch), sampler, optimizer, scheduler,
                                     scaler, criterion, device, amp_dtype, iters_per_epoch, frozen, logger, ddp,
                                     teacher=teacher if online else None, curve_hook=curve_hook)
            if cfg.schedule.step == "epoch":
                scheduler.step()
            row: dict[str, Any] = {"epoch": epoch + 1, **stats}
            last = epoch + 1 == cfg.schedule.epochs
            due = cfg.run.eval_every and (epoch + 1) % cfg.run.eval_every == 0
            improved = False
            if ddp.main and query_set is not None and (due or last):
                t = time.perf_counter()
                row.update(evaluate())
                row["eval_s"] = round(time.perf_counter() - t, 1)
                value = row["mAP"] if cfg.run.best_metric == "mAP" else row["rank1"]
                improved = best is None or value > best
                best = value if improved else best
                say(f"epoch {epoch + 1}: Rank-1 {row['rank1']:.3f} mAP {row['mAP']:.3f}"
                    + "".join(f" {k} {row[k]:.3f}" for k in ("train_cos", "val_cos") if k in row)
                    + f"{' (best)' if improved else ''}")
            logger.epoch(row)
            if ddp.main:
                meta = dict(epoch=epoch + 1, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                            scaler=scaler.state_dict() if scaler.is_enabled() else None, metrics=row,
                            best_metric=best, history=logger.history, curve=logger.curve, **extra_meta)
                save_checkpoint(last_path, model, **meta)
                if improved:
                    save_checkpoint(best_path, model, **meta)
            if ddp.enabled:
                dist.barrier()
    finally:
        logger.close()
        if ddp.enabled and dist.is_initialized():
            dist.destroy_process_group()
    return FitResult(output, end_epoch, last_path, best_path if best_path.exists() else None, best,
                     logger.history)


def _train_one_epoch(cfg, epoch, model, train_model, batches, sampler, optimizer, scheduler, scaler, criterion, device,
                     amp_dtype, iters, frozen, logger, ddp, *, teacher=None, curve_hook=None) -> dict[str, Any]:
    sampler.set_epoch(epoch)
    torch.manual_seed(cfg.run.seed * 100_003 + epoch)
    model.train()
    set_backbone_frozen(model, frozen)
    totals = {"loss": 0.0, "ce": 0.0, "aux": 0.0, "triplet": 0.0, "feat": 0.0, "rel": 0.0, "sim": 0.0, "acc": 0.0}
    seen, steps, mixed = 0, 0, 0
    teacher_start = teacher.seconds if teacher is not None else 0.0
    bar = _progress(cfg, ddp, iters, f"epoch {epoch + 1}/{cfg.schedule.epochs}")
    start = time.perf_counter()
    paused = 0.0  # seconds in the curve's evaluations, not training
    with contextlib.closing(batches):  # a prefetching producer stops with the epoch
        for batch in batches:
            if steps >= iters:
                break
            images = batch.images.to(device, non_blocking=True).permute(0, 3, 1, 2).float()  # NHWC uint8 -> channels-last
            if not cfg.run.channels_last:
                images = images.contiguous()
            labels = batch.labels.to(device, non_blocking=True)
            batch = dataclasses.replace(
                batch, labels=labels, keys=batch.keys.to(device),
                targets=batch.targets.to(device) if batch.targets is not None else None,
                mixed_with=batch.mixed_with.to(device) if batch.mixed_with is not None else None)
            autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
            with autocast:
                output = train_model(images)
            loss, parts = criterion(output, batch, epoch=epoch)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"epoch {epoch + 1} step {steps + 1}: the loss is {float(loss)} "
                                         f"(learning rate {optimizer.param_groups[0]['lr']:.3g} too high?)")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if cfg.schedule.step == "iter":
                scheduler.step()
            n = labels.numel()
            seen += n
            steps += 1
            mixed += batch.mixed_with is not None
            totals["loss"] += float(loss.detach()) * n
            for key, value in parts.items():
                totals[key] += value * n
            totals["acc"] += float((output.logits.detach().argmax(1) == labels).float().sum())
            if curve_hook is not None and (epoch * iters + steps) % cfg.run.curve_every == 0:
                t = time.perf_counter()
                curve_hook(epoch * iters + steps, {"lr": optimizer.param_groups[0]["lr"],
                                                   **{k: round(v / seen, 5) for k, v in totals.items() if v}})
                paused += time.perf_counter() - t
            rate = seen * ddp.world_size / (time.perf_counter() - start - paused)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{totals['loss'] / seen:.3f}", acc=f"{totals['acc'] / seen:.3f}",
                                img_s=f"{rate:.1f}", refresh=False)
            elif ddp.main and steps % max(1, iters // 4) == 0 and steps < iters:  # no bar: a line per quarter epoch
                _log.info(f"  epoch {epoch + 1} step {steps}/{iters}: loss {totals['loss'] / seen:.3f} "
                          f"acc {totals['acc'] / seen:.3f} {rate:.1f} img/s")
            logger.scalar("iter/loss", float(loss.detach()), epoch * iters + steps)
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - start - paused
    if seen == 0:
        raise ValueError("the epoch had no batches (fewer identities than data.p?)")
    stats = {k: round(v / seen, 5) for k, v in totals.items() if k in ("loss", "ce", "acc") or v}
    stats.update(lr=optimizer.param_groups[0]["lr"], img_s=round(seen * ddp.world_size / elapsed, 2),
                 epoch_s=round(elapsed, 1), frozen=int(frozen))
    if cfg.data.augment.mixes:
        stats["mixed"] = round(mixed / steps, 3)  # the share of mixed batches (the label accuracy counts own labels)
    if teacher is not None:
        stats["teacher_s"] = round((teacher.seconds - teacher_start) / steps, 4)  # teachers' seconds per step
    if ddp.main:
        msg = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items())
        _log.info(f"epoch {epoch + 1}/{cfg.schedule.epochs}: {msg}")
    return stats


def _progress(cfg: TrainConfig, ddp: _Dist, total: int, desc: str):
    if not cfg.run.progress or not ddp.main:
        return None
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5 if tty else 60,
                disable=None if tty else False, file=sys.stderr)


def describe_checkpoint(path: str | os.PathLike) -> str:
    """One line about a training checkpoint (epoch, metrics), for logs and reports."""
    payload = load_checkpoint(path)
    metrics = payload.get("metrics") or {}
    spec = InputSpec.from_dict(payload["input_spec"])
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k in ("rank1", "mAP", "loss") and isinstance(v, float))
    return f"{path}: epoch {payload.get('epoch', '?')}, {spec.height}x{spec.width}" + (f", {shown}" if shown else "")


def _width_mismatch(width: int, cfg: TrainConfig, model: DSLNet) -> str:
    return (f"the teachers' embeddings concatenate to {width}-d ({len(cfg.distill.teachers)} teacher(s) "
            f"x distill.teacher_feature_dim {cfg.distill.teacher_feature_dim}) but the student's embedding is "
            f"{model.config.feature_dim}-d: feature distillation compares them directly, so they must match")


def _probe_sets(split: ReidSplit, count: int, query_set: EvalSet | None, gallery_set: EvalSet | None) -> dict:
    """The fixed crops the curve measures the cosine to the teachers on: ``count`` clean training
    crops spread evenly over the training list, and the validation images (query + gallery)."""
    train = split.train
    picks = np.unique(np.linspace(0, len(train) - 1, num=min(count, len(train))).round().astype(int)) if count else []
    sets = {"train": [read_bgr(train[i].path) for i in picks]}
    if query_set is not None:
        sets["val"] = [*query_set.images, *gallery_set.images]
    return sets
