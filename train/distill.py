"""Knowledge distillation from teacher Re-ID models (e.g. Intel OMZ 0277 + 0286) into DSLNet.

The teachers are run once per training image and once per its mirror image, at their own input
contract (:class:`~dslnet_edge.spec.InputSpec`, through :func:`dslnet_edge.preprocessing.preprocess`),
and their embeddings are kept: ``targets[i, f]`` is the target of image ``i`` unflipped (``f = 0``) or
flipped (``f = 1``). Each teacher's embedding is L2-normalized, the teachers are concatenated and the
result divided by ``sqrt(#teachers)``, so every target is a unit vector (the ensemble's cosine
similarity is the mean of the teachers' cosines). The student sees the same image, flipped or not,
plus its other augmentations; the target is the teacher on the image before those (a consistency
target, and 2 embeddings per image instead of one per step: the teachers cost about 5 ms per crop
on 2 CPU cores, as much as a student training step).

Losses (weights in :class:`DistillConfig`):

* :func:`feature_distill_loss` - ``1 - cos(student, target)`` per sample, averaged;
* :func:`relational_distill_loss` - KL between the row-wise softmax of the batch's teacher and
  student cosine-similarity matrices at temperature ``T``, *self-similarity left out*: with the
  diagonal in, ``exp(1 / T)`` of every row's self term swamps the rest at ``T = 0.05`` and the loss
  is ~0 whatever the student does;
* :func:`similarity_distill_loss` - mean squared difference of the two cosine-similarity matrices
  (off-diagonal). The softmax above does not change when a constant is added to a row's cosines, so
  it sees the level of the similarities only through how spread they are; this term holds the level
  too (a student whose embeddings share one large direction, every cosine high, as DSLNet's are on
  cameras it never saw).

The targets are cached in ``teacher_targets.npy`` in the run folder (with a JSON key of the image
paths and the teacher files' contents), so a resumed run does not run the teachers again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dslnet_edge._io import file_sha256
from dslnet_edge.errors import DslnetError
from dslnet_edge.preprocessing import preprocess
from dslnet_edge.spec import InputSpec

__all__ = [
    "DistillConfig",
    "Teacher",
    "load_teacher",
    "teacher_targets",
    "feature_distill_loss",
    "relational_distill_loss",
    "similarity_distill_loss",
    "DistillLoss",
    "TeacherError",
]

_log = logging.getLogger(__name__)


class TeacherError(DslnetError, ValueError):
    """A teacher model that cannot be used (missing file, unknown format, wrong output)."""


@dataclasses.dataclass
class DistillConfig:
    """``distill.*`` in the training configuration (no teachers = no distillation).

    Attributes:
        teachers: teacher model files: OpenVINO IR (``.xml``, needs ``openvino``) or ONNX.
        teacher_channel_order / teacher_height / teacher_width: the teachers' input contract
            (OMZ re-identification models: BGR pixels 0-255, 256x128, normalization in the graph).
        teacher_feature_dim: each teacher's embedding width (OMZ: 256); the teachers' L2-normalized
            embeddings are concatenated, so the student's ``feature_dim`` must be the sum.
        feature_weight: weight of the cosine feature-distillation term.
        relational_weight: weight of the relational (similarity-matrix KL) term.
        similarity_weight: weight of the similarity-matrix MSE term (0 = off).
        temperature: softmax temperature of the relational term.
        batch_size: images per teacher call when the targets are computed.
    """

    teachers: tuple[str, ...] = ()
    teacher_channel_order: str = "BGR"
    teacher_height: int = 256
    teacher_width: int = 128
    teacher_feature_dim: int = 256
    feature_weight: float = 1.0
    relational_weight: float = 1.0
    similarity_weight: float = 0.0
    temperature: float = 0.1
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.teacher_channel_order not in ("RGB", "BGR"):
            raise ValueError(f"distill.teacher_channel_order must be RGB or BGR, got {self.teacher_channel_order!r}")
        if min(self.teacher_height, self.teacher_width, self.teacher_feature_dim, self.batch_size) < 1:
            raise ValueError("distill.teacher_height, teacher_width, teacher_feature_dim and batch_size must be >= 1")
        for name in ("feature_weight", "relational_weight", "similarity_weight"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"distill.{name} must be a finite number >= 0, got {value}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"distill.temperature must be > 0, got {self.temperature}")

    @property
    def enabled(self) -> bool:
        return bool(self.teachers)

    @property
    def teacher_spec(self) -> InputSpec:
        return InputSpec(height=self.teacher_height, width=self.teacher_width,
                         channel_order=self.teacher_channel_order, feature_dim=self.teacher_feature_dim,
                         l2_normalized=False)


# ---------------------------------------------------------------------------------------------
# Teachers
# ---------------------------------------------------------------------------------------------
Teacher = Callable[[np.ndarray], np.ndarray]  # float32 [B, 3, H, W] (teacher contract) -> [B, D]


def load_teacher(path: str | os.PathLike, *, spec: InputSpec, threads: int = 0) -> Teacher:
    """An OpenVINO IR (``.xml``, FP32) or ONNX (``.onnx``, ONNX Runtime) teacher as a batch -> embeddings
    callable, run through the runtime's backends with the teacher's input contract ``spec``."""
    path = Path(path)
    if not path.is_file():
        raise TeacherError(f"teacher model {path} does not exist")
    try:
        if path.suffix == ".xml":
            from dslnet_edge.backends.openvino_backend import OpenVinoBackend

            return OpenVinoBackend(path, spec=spec, precision="f32", intra_op_threads=threads or None).infer_all
        if path.suffix == ".onnx":
            from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

            return OnnxRuntimeBackend(path, spec=spec, intra_op_threads=threads or None).infer_all
    except (DslnetError, ImportError) as exc:
        raise TeacherError(f"teacher {path}: {exc}") from None
    raise TeacherError(f"teacher {path}: expected an OpenVINO IR (.xml) or ONNX (.onnx) file, got {path.suffix!r}")


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def ensemble_embed(teachers: Sequence[Teacher], batch: np.ndarray) -> np.ndarray:
    """Concatenated L2-normalized teacher embeddings / sqrt(#teachers): unit vectors ``[B, sum D]``."""
    outs = []
    for i, teacher in enumerate(teachers):
        out = np.asarray(teacher(batch), dtype=np.float32).reshape(len(batch), -1)
        if not np.isfinite(out).all():
            raise TeacherError(f"teacher {i} returned non-finite embeddings")
        outs.append(_l2(out))
    return np.concatenate(outs, axis=1) / np.float32(math.sqrt(len(teachers)))


def _teacher_files(teacher: str | os.PathLike) -> list[Path]:
    """The files a teacher's outputs depend on: the model file, and an OpenVINO IR's weights beside it."""
    path = Path(teacher)
    weights = path.with_suffix(".bin")
    return [path, weights] if path.suffix == ".xml" and weights.is_file() else [path]


def _cache_key(paths: Sequence[str], cfg: DistillConfig) -> str:
    """The targets' identity: the image paths, the teachers' *contents* and the teachers' input contract.

    Contents, not file times: a data folder mounted or copied anew keeps its cache (the teachers'
    targets take ~10 minutes on 2 CPU cores), and a changed teacher never reuses a stale one.
    """
    h = hashlib.sha256()
    for p in paths:
        h.update(p.encode("utf-8", "surrogatepass") + b"\0")
    for t in cfg.teachers:
        for f in _teacher_files(t):
            h.update(file_sha256(f).encode())
    h.update(f"{cfg.teacher_channel_order}{cfg.teacher_height}x{cfg.teacher_width}".encode())
    return h.hexdigest()


def teacher_targets(
    paths: Sequence[str],
    cfg: DistillConfig,
    *,
    cache_file: str | os.PathLike | None = None,
    teachers: Sequence[Teacher] | None = None,
    threads: int = 0,
) -> np.ndarray:
    """Teacher-ensemble targets ``float32 [N, 2, D]`` (unflipped, flipped) for the images at ``paths``.

    ``cache_file`` (``.npy``) is reused when its key (paths, teacher files, teacher input contract)
    matches, and written atomically otherwise. ``teachers`` overrides loading ``cfg.teachers``
    (tests pass stubs).
    """
    from dslnet_edge._io import atomic_write_bytes, atomic_write_text
    from train.data import read_bgr

    key = _cache_key(paths, cfg) if teachers is None else None
    meta_file = Path(f"{cache_file}.json") if cache_file is not None else None
    if cache_file is not None and key is not None and Path(cache_file).is_file() and meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
            if meta.get("key") == key:
                targets = np.load(cache_file)
                if targets.shape[:2] == (len(paths), 2) and np.isfinite(targets).all():
                    _log.info(f"teacher targets: reusing {cache_file} ({targets.shape[0]} images x 2, {targets.shape[2]}-d)")
                    return targets
        except (OSError, ValueError):
            pass
    if teachers is None:
        if not cfg.teachers:
            raise TeacherError("distillation needs at least one teacher (distill.teachers / --teacher)")
        teachers = [load_teacher(t, spec=cfg.teacher_spec, threads=threads) for t in cfg.teachers]
    spec = cfg.teacher_spec
    t0 = time.perf_counter()
    chunks = []
    for start in range(0, len(paths), cfg.batch_size):
        crops = [read_bgr(p) for p in paths[start : start + cfg.batch_size]]
        batch = preprocess(crops, spec)
        flipped = np.ascontiguousarray(batch[..., ::-1])
        pair = ensemble_embed(teachers, np.concatenate([batch, flipped]))
        n = len(crops)
        chunks.append(np.stack([pair[:n], pair[n:]], axis=1))
        done = start + n
        if done % (cfg.batch_size * 100) < cfg.batch_size or done == len(paths):
            rate = done / max(time.perf_counter() - t0, 1e-9)
            _log.info(f"teacher targets: {done}/{len(paths)} images ({rate:.0f} images/s, x2 with flips)")
    targets = np.concatenate(chunks).astype(np.float32)
    if cache_file is not None and key is not None:
        import io

        buf = io.BytesIO()
        np.save(buf, targets)
        atomic_write_bytes(cache_file, buf.getvalue())
        atomic_write_text(meta_file, json.dumps({"key": key, "teachers": list(cfg.teachers),
                                                 "images": len(paths), "dim": int(targets.shape[2])}))
    return targets


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------
def feature_distill_loss(student, target):
    """``mean(1 - cos(student_i, target_i))`` over the batch (targets need not be normalized)."""
    import torch.nn.functional as F

    if student.shape != target.shape:
        raise ValueError(f"student features {tuple(student.shape)} and teacher targets {tuple(target.shape)} differ "
                         "(the student's feature_dim must equal the teachers' concatenated width)")
    return (1.0 - F.cosine_similarity(student.float(), target.float(), dim=1)).mean()


def _cosine_matrix(x):
    """The batch's pairwise cosine similarities ``[B, B]`` (float32)."""
    import torch.nn.functional as F

    x = F.normalize(x.float(), dim=1)
    return x @ x.t()


def relational_distill_loss(student, target, temperature: float = 0.1):
    """KL(teacher || student) of the row-wise softmax of cosine similarities / T, self-pairs left out."""
    import torch
    import torch.nn.functional as F

    if student.shape[0] != target.shape[0] or student.shape[0] < 3:
        raise ValueError(f"relational distillation needs the same batch (>= 3) for student and teacher, got "
                         f"{student.shape[0]} and {target.shape[0]}")
    eye = torch.eye(len(student), dtype=torch.bool, device=student.device)
    s_logits = (_cosine_matrix(student) / temperature).masked_fill(eye, float("-inf"))
    t_logits = (_cosine_matrix(target) / temperature).masked_fill(eye, float("-inf"))
    log_p_s = F.log_softmax(s_logits, dim=1).masked_fill(eye, 0.0)
    log_p_t = F.log_softmax(t_logits, dim=1).masked_fill(eye, 0.0)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()


def similarity_distill_loss(student, target):
    """Mean squared difference of the batch's student and teacher cosine-similarity matrices, self-pairs
    left out (they are 1 for both)."""
    import torch

    if student.shape[0] != target.shape[0] or student.shape[0] < 2:
        raise ValueError(f"similarity distillation needs the same batch (>= 2) for student and teacher, got "
                         f"{student.shape[0]} and {target.shape[0]}")
    off = ~torch.eye(len(student), dtype=torch.bool, device=student.device)
    return (_cosine_matrix(student) - _cosine_matrix(target))[off].pow(2).mean()


class DistillLoss:
    """The weighted distillation terms. Call with the student's features and the batch's targets."""

    def __init__(self, cfg: DistillConfig):
        self.cfg = cfg

    def __call__(self, features, targets):
        cfg = self.cfg
        parts = {}
        total = features.new_zeros(()).float()
        if cfg.feature_weight > 0:
            feat = feature_distill_loss(features, targets)
            total = total + cfg.feature_weight * feat
            parts["feat"] = float(feat.detach())
        if cfg.relational_weight > 0:
            rel = relational_distill_loss(features, targets, cfg.temperature)
            total = total + cfg.relational_weight * rel
            parts["rel"] = float(rel.detach())
        if cfg.similarity_weight > 0:
            sim = similarity_distill_loss(features, targets)
            total = total + cfg.similarity_weight * sim
            parts["sim"] = float(sim.detach())
        return total, parts
