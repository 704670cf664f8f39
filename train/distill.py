"""Knowledge distillation from teacher Re-ID models (e.g. Intel OMZ 0277 + 0286) into DSLNet.

Two ways to teach (``distill.teacher_mode``):

* ``online`` - the *consistent* teacher of Beyer et al., "Knowledge distillation: A good teacher is
  patient and consistent" (CVPR 2022): every training batch, after all augmentation and mixing
  (:func:`train.transforms.mix_batch`), goes to the teachers (:class:`OnlineTeacher`), and the student
  is fitted to their answer for the very pixels it sees. Teacher and student get the same view
  through the one preprocessing function, each at its own input contract (the view is made at the
  larger of the two sizes and resized for the other).
* ``fixed`` - the baseline below: targets computed once on the clean images and cached.

In ``fixed`` mode the teachers are run once per training image and once per its mirror image, at their own input
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
    "OnlineTeacher",
    "TeacherProbe",
    "load_teacher",
    "load_teachers",
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
        teacher_mode: "fixed" (targets of the clean images, computed once and cached) or "online"
            (the teachers answer for every augmented, mixed training view: :class:`OnlineTeacher`).
        teacher_precision: "f32", or "bf16" (OpenVINO IR teachers only: about 2x faster on a CPU
            with AVX512-BF16; loaded only when its embeddings agree with f32 to ``teacher_min_cosine``).
        teacher_min_cosine: the per-crop cosine to f32 that a bf16 teacher must reach at load. Looser
            than the runtime's 0.999: a training target tolerates a 0.1% wobble, a deployed model need not.
        teacher_threads: threads per teacher (0 = the training threads).
        prefetch: online mode: batches assembled ahead (augmentation, mixing, teachers) in a
            background thread while the student trains on the current one (0 = in line).
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
    teacher_mode: str = "fixed"
    teacher_precision: str = "f32"
    teacher_min_cosine: float = 0.995
    teacher_threads: int = 0
    prefetch: int = 0

    def __post_init__(self) -> None:
        if self.teacher_mode not in ("fixed", "online"):
            raise ValueError(f"distill.teacher_mode must be 'fixed' or 'online', got {self.teacher_mode!r}")
        if self.teacher_precision not in ("f32", "bf16"):
            raise ValueError(f"distill.teacher_precision must be 'f32' or 'bf16', got {self.teacher_precision!r}")
        if not (math.isfinite(self.teacher_min_cosine) and 0.0 < self.teacher_min_cosine <= 1.0):
            raise ValueError(f"distill.teacher_min_cosine must be in (0, 1], got {self.teacher_min_cosine}")
        if self.teacher_threads < 0 or not 0 <= self.prefetch <= 8:
            raise ValueError(f"distill.teacher_threads must be >= 0 and distill.prefetch in 0..8, got "
                             f"{self.teacher_threads} and {self.prefetch}")
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


def load_teacher(path: str | os.PathLike, *, spec: InputSpec, threads: int = 0, precision: str = "f32",
                 min_cosine: float = 0.995) -> Teacher:
    """An OpenVINO IR (``.xml``, f32 or bf16) or ONNX (``.onnx``, ONNX Runtime, f32) teacher as a
    batch -> embeddings callable, run through the runtime's backends with the teacher's input contract
    ``spec``. A bf16 teacher passes the backend's load-time check against f32 at ``min_cosine``."""
    path = Path(path)
    if not path.is_file():
        raise TeacherError(f"teacher model {path} does not exist")
    if precision != "f32" and path.suffix != ".xml":
        raise TeacherError(f"teacher {path}: {precision} teachers need an OpenVINO IR (.xml); an ONNX teacher runs f32")
    try:
        if path.suffix == ".xml":
            from dslnet_edge.backends.openvino_backend import OpenVinoBackend

            backend = OpenVinoBackend(path, spec=spec, precision=precision, intra_op_threads=threads or None,
                                      min_cosine=min_cosine)
            if backend.check_cosine is not None:
                _log.info(f"teacher {path.name}: {precision}, min cosine to f32 {backend.check_cosine:.5f} on the check crops")
            return backend.infer_all
        if path.suffix == ".onnx":
            from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

            return OnnxRuntimeBackend(path, spec=spec, intra_op_threads=threads or None).infer_all
    except (DslnetError, ImportError) as exc:
        raise TeacherError(f"teacher {path}: {exc}") from None
    raise TeacherError(f"teacher {path}: expected an OpenVINO IR (.xml) or ONNX (.onnx) file, got {path.suffix!r}")


def load_teachers(cfg: DistillConfig, *, threads: int = 0) -> list[Teacher]:
    """``cfg.teachers``, each through :func:`load_teacher` at the configured contract, precision and threads."""
    if not cfg.teachers:
        raise TeacherError("distillation needs at least one teacher (distill.teachers / --teacher)")
    return [load_teacher(t, spec=cfg.teacher_spec, threads=cfg.teacher_threads or threads,
                         precision=cfg.teacher_precision, min_cosine=cfg.teacher_min_cosine) for t in cfg.teachers]


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


class OnlineTeacher:
    """The teacher ensemble as a function of crops: BGR uint8 ``[B, H, W, 3]`` views -> unit targets ``[B, D]``.

    The views go through :func:`dslnet_edge.preprocessing.preprocess` at the teachers' input contract,
    exactly as the student's copy of the same views goes through it at the student's, so both answer
    for the same pixels. ``seconds`` adds up the time spent in the teachers (the cost per step).
    """

    def __init__(self, cfg: DistillConfig, *, threads: int = 0, teachers: Sequence[Teacher] | None = None):
        self.teachers = list(teachers) if teachers is not None else load_teachers(cfg, threads=threads)
        self.spec = cfg.teacher_spec
        self.seconds = 0.0
        self.crops = 0

    def __call__(self, views: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = ensemble_embed(self.teachers, preprocess(views, self.spec))
        self.seconds += time.perf_counter() - t0
        self.crops += len(out)
        return out

    def embed(self, crops: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Targets of any number of crops (of any size), in batches."""
        return np.concatenate([self(list(crops[i : i + batch_size])) for i in range(0, len(crops), batch_size)])


def _mean_row_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sum(_l2(a) * _l2(b), axis=1)))


def _mean_pair_cosine(x: np.ndarray) -> float:
    """The mean cosine between different rows: how bunched a set of embeddings is."""
    x = _l2(x)
    n = len(x)
    return float((np.sum(x @ x.T) - n) / max(1, n * (n - 1)))


class TeacherProbe:
    """How close the student is to its teachers, on fixed image sets held aside for the curve.

    ``sets`` maps a name (e.g. ``train``: clean training crops; ``val``: the held-out validation
    identities) to BGR crops; the teachers' targets of them are computed once. :meth:`measure` returns
    ``{name}_cos`` (the mean cosine of student and teacher embeddings of the same crop) and
    ``{name}_sim`` / ``{name}_sim_teacher`` (the mean cosine between different crops: a student whose
    embeddings bunch together has a much higher ``sim`` than its teacher).
    """

    def __init__(self, sets: dict[str, Sequence[np.ndarray]], teacher: OnlineTeacher):
        self.sets = {name: list(crops) for name, crops in sets.items() if len(crops)}
        self.targets = {name: teacher.embed(crops) for name, crops in self.sets.items()}
        self.teacher_sim = {name: _mean_pair_cosine(t) for name, t in self.targets.items()}

    def measure(self, embed_crops: Callable[[Sequence[np.ndarray]], np.ndarray],
                known: dict[str, np.ndarray] | None = None) -> dict[str, float]:
        """``embed_crops`` maps crops to student embeddings; ``known`` holds embeddings already computed
        for some of the sets (the validation ranking's), which are not computed again."""
        out: dict[str, float] = {}
        for name, crops in self.sets.items():
            student = known[name] if known and name in known else embed_crops(crops)
            out[f"{name}_cos"] = round(_mean_row_cosine(student, self.targets[name]), 5)
            out[f"{name}_sim"] = round(_mean_pair_cosine(student), 5)
            out[f"{name}_sim_teacher"] = round(self.teacher_sim[name], 5)
        return out


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
    if cfg.teacher_precision != "f32":  # f32 keys stay as they were: existing caches are kept
        h.update(cfg.teacher_precision.encode())
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
    matches, and written atomically otherwise. ``teachers`` are ``cfg.teachers`` already loaded (the
    loop's :class:`OnlineTeacher` has them), or stubs when ``cfg.teachers`` is empty (then nothing is
    cached: there are no files to key on).
    """
    from dslnet_edge._io import atomic_write_bytes, atomic_write_text
    from train.data import read_bgr

    key = _cache_key(paths, cfg) if cfg.teachers else None
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
        teachers = load_teachers(cfg, threads=threads)
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
