"""The INT8 accuracy gate: the Q/DQ model against its FP32 original on held-out real crops.

Peer tools ship INT8 engines whose accuracy silently collapsed. Here an INT8 model is only
accepted after both models ran in ONNX Runtime on the same held-out person crops (never the
crops it was calibrated on) and the INT8 one stayed within the thresholds:

* **embedding agreement** (:func:`dslnet_edge.comparison.compare`, the project's one parity
  function): mean and minimum per-crop cosine between INT8 and FP32 embeddings;
* **retrieval** (:mod:`dslnet_edge.metrics`), when the file names carry identities and cameras
  (Market-1501 style, ``<pid>_c<cam>...``): Rank-1 and mAP of FP32 and of INT8 on a
  query/gallery split by camera; the gate bounds how much INT8 may lose.

Rank-1 on Q queries moves in steps of 1/Q, and one query whose match slips moves mAP by up to
1/Q, so neither bound is tighter than one query (``max(max_rank1_drop, 1/Q)``, likewise mAP):
a gate must not fail because of one coin-flip query. Judge on enough crops (the default 256
held-out crops give about 64 queries, a 1.6-point step) for the 2-point bound to bind.

Default thresholds, from measurement (``benchmarks/bench_int8.py --ablation --methods``, ONNX
Runtime CPU, CUHK03 crops: calibration on ``bounding_box_train``, the gate on 256 held-out
query/gallery crops = 128 queries; cosine of INT8 vs FP32 embeddings, retrieval FP32 -> INT8):

=====================================================  ===========  ==========  ============  ============
model and Q/DQ variant                                 cos mean     cos min     Rank-1        mAP
=====================================================  ===========  ==========  ============  ============
OMZ 0267 (trained OSNet-type, 256x128), default        0.975        0.908       88.3 -> 91.4  88.0 -> 88.1
OMZ 0267, entropy / percentile calibration             0.977/0.972  0.916/0.903 -> 90.6/91.4  -> 87.5/87.8
OMZ 0267, wide op types (Add, Mul, Relu, pools)        0.970        0.884       88.3 -> 90.6  88.0 -> 86.5
DSLNet (CUHK03 epoch 5, 128x64), default               0.9928       0.901       21.9 -> 24.2  28.3 -> 28.5
DSLNet epoch 5, CSS heads in INT8 too                  0.9928       0.869       21.9 -> 22.7  28.3 -> 28.1
DSLNet epoch 5, entropy / percentile calibration       0.990/0.997  0.696/0.969 -> 23.4/21.1  -> 28.7/28.4
DSLNet (epoch 3; 62 queries), CSS heads in INT8 too    0.978        **0.254**   29.0 -> 32.3  29.7 -> 30.1
DSLNet epoch 3, per-tensor weights                     0.989        **0.643**   29.0 -> 29.0  29.7 -> 29.5
=====================================================  ===========  ==========  ============  ============

A trained network kept its retrieval accuracy at a mean cosine of 0.972-0.977, so a 0.98
mean-cosine bound would reject models that lost nothing: the **retrieval drops** (Rank-1 and
mAP, 2 points each) are the real criteria, and the cosine bounds (**mean >= 0.95, every crop
>= 0.80**) catch what retrieval on a few hundred crops can miss -- the broken variants above
moved single crops to 0.25-0.70 while their Rank-1 happened to hold; scales off by 100x give
mean cosines below 0.9 (``tests/calibration/test_gate.py``). Without identity names only the
cosine bounds apply. The DSLNet rows come from early, partly trained checkpoints (the demo
weights were still training); rerun the bench on the final weights.

The result is a validated :class:`GateResult`, saved as JSON beside the Q/DQ ONNX
(``<stem>.gate.json``); ``export.build_engine`` copies it into the engine sidecar as
``"int8_gate"``. :class:`GateFailure` carries it when the gate fails.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calibration.crops import crop_batches, list_images, parse_market_name
from calibration.errors import CalibrationError, GateFailure
from dslnet_edge._io import atomic_write_text

__all__ = [
    "GateThresholds",
    "Holdout",
    "GateResult",
    "select_holdout",
    "run_gate",
    "check_gate",
    "gate_path_for",
    "read_gate",
    "GATE_FORMAT",
]

GATE_FORMAT = "dslnet_edge.int8_gate"
GATE_VERSION = 1
_QUERY_DIRS = ("query",)
_GALLERY_DIRS = ("bounding_box_test", "gallery")


@dataclasses.dataclass(frozen=True)
class GateThresholds:
    """How much INT8 may differ from FP32 (the defaults are justified by the measurements in the module docstring).

    Attributes:
        min_mean_cosine: smallest allowed mean cosine(INT8, FP32) over the held-out crops.
        min_cosine: smallest allowed cosine of any single crop (None: not checked).
        max_rank1_drop: largest allowed Rank-1 loss, as a fraction (0.02 = 2 points); never
            tighter than one query (see the module docstring).
        max_map_drop: largest allowed mAP loss, as a fraction (None: not checked); never tighter
            than one query either.
    """

    min_mean_cosine: float = 0.95
    min_cosine: float | None = 0.80
    max_rank1_drop: float = 0.02
    max_map_drop: float | None = 0.02

    def __post_init__(self) -> None:
        for name in ("min_mean_cosine", "min_cosine"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and -1.0 <= value <= 1.0):
                raise ValueError(f"GateThresholds.{name} must be in [-1, 1], got {value!r}")
        for name in ("max_rank1_drop", "max_map_drop"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"GateThresholds.{name} must be a fraction in [0, 1] (0.02 = 2 points), got {value!r}")


@dataclasses.dataclass(frozen=True)
class Holdout:
    """The held-out crops and, when names allow, their identities, cameras and query/gallery roles."""

    paths: tuple[Path, ...]
    pids: np.ndarray | None = None
    cams: np.ndarray | None = None
    is_query: np.ndarray | None = None
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(Path(p) for p in self.paths))
        if not self.paths:
            raise ValueError("Holdout needs at least one crop")
        labelled = [a is not None for a in (self.pids, self.cams, self.is_query)]
        if any(labelled) and not all(labelled):
            raise ValueError("Holdout.pids, cams and is_query go together: all or none")
        if all(labelled):
            for name in ("pids", "cams", "is_query"):
                if np.asarray(getattr(self, name)).shape != (len(self.paths),):
                    raise ValueError(f"Holdout.{name} must have one entry per crop ({len(self.paths)})")
            if not self.is_query.any() or self.is_query.all():
                raise ValueError("Holdout needs at least one query and one gallery crop")

    @property
    def ranked(self) -> bool:
        return self.is_query is not None


@dataclasses.dataclass(frozen=True)
class GateResult:
    """The gate's verdict and every number behind it (JSON-safe through :meth:`to_dict`)."""

    passed: bool
    failures: tuple[str, ...]
    fp32_onnx: str
    int8_onnx: str
    int8_sha256: str
    holdout: str
    num_crops: int
    mean_cosine: float
    min_cosine: float
    max_abs: float
    thresholds: GateThresholds
    num_queries: int = 0
    num_gallery: int = 0
    fp32_rank1: float | None = None
    int8_rank1: float | None = None
    fp32_mAP: float | None = None
    int8_mAP: float | None = None
    rank1_allowed_drop: float | None = None
    map_allowed_drop: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "failures", tuple(self.failures))
        if self.passed != (not self.failures):
            raise ValueError("GateResult.passed must be True exactly when there are no failures")
        if self.num_crops < 1:
            raise ValueError(f"GateResult.num_crops must be >= 1, got {self.num_crops}")
        for name in ("mean_cosine", "min_cosine"):
            value = getattr(self, name)
            if not (math.isnan(value) or -1.0 <= value <= 1.0 + 1e-9):
                raise ValueError(f"GateResult.{name} must be a cosine in [-1, 1] or NaN, got {value!r}")
        ranking = (self.fp32_rank1, self.int8_rank1, self.fp32_mAP, self.int8_mAP, self.rank1_allowed_drop)
        if any(v is None for v in ranking) and not all(v is None for v in ranking):
            raise ValueError("GateResult ranking numbers (rank-1, mAP, allowed drop) go together: all or none")
        for value in (*ranking, self.map_allowed_drop):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"GateResult ranking numbers are fractions in [0, 1], got {value!r}")
        if self.fp32_rank1 is not None and (self.num_queries < 1 or self.num_gallery < 1):
            raise ValueError("GateResult with ranking numbers needs num_queries and num_gallery >= 1")
        if len(self.int8_sha256) != 64:
            raise ValueError(f"GateResult.int8_sha256 must be a sha256 hex digest, got {self.int8_sha256!r}")

    @property
    def ranked(self) -> bool:
        return self.fp32_rank1 is not None

    def summary(self) -> str:
        """One line with the verdict, the numbers and the thresholds."""
        t = self.thresholds
        parts = [f"mean cosine {self.mean_cosine:.4f} (>= {t.min_mean_cosine})"]
        if t.min_cosine is not None:
            parts.append(f"min cosine {self.min_cosine:.4f} (>= {t.min_cosine})")
        if self.ranked:
            parts.append(f"Rank-1 {100 * self.fp32_rank1:.1f} -> {100 * self.int8_rank1:.1f} "
                         f"(drop <= {100 * self.rank1_allowed_drop:.1f} points)")
            map_bound = f" (drop <= {100 * self.map_allowed_drop:.1f} points)" if self.map_allowed_drop is not None else ""
            parts.append(f"mAP {100 * self.fp32_mAP:.1f} -> {100 * self.int8_mAP:.1f}{map_bound}")
        verdict = "passed" if self.passed else "FAILED (" + "; ".join(self.failures) + ")"
        return f"INT8 gate {verdict} on {self.num_crops} held-out crops: " + ", ".join(parts)

    def format(self) -> str:
        lines = [
            f"INT8 accuracy gate: {'PASSED' if self.passed else 'FAILED'}",
            f"  held-out crops: {self.num_crops} from {self.holdout}"
            + (f" ({self.num_queries} queries, {self.num_gallery} gallery)" if self.ranked else ""),
            f"  embeddings int8 vs fp32: cosine mean {self.mean_cosine:.5f} min {self.min_cosine:.5f}, "
            f"max|diff| {self.max_abs:.4f}",
        ]
        if self.ranked:
            lines.append(f"  Rank-1 fp32 {100 * self.fp32_rank1:.2f}% int8 {100 * self.int8_rank1:.2f}% "
                         f"(drop {100 * (self.fp32_rank1 - self.int8_rank1):+.2f} points, allowed "
                         f"{100 * self.rank1_allowed_drop:.2f})")
            lines.append(f"  mAP    fp32 {100 * self.fp32_mAP:.2f}% int8 {100 * self.int8_mAP:.2f}% "
                         f"(drop {100 * (self.fp32_mAP - self.int8_mAP):+.2f} points"
                         + (f", allowed {100 * self.map_allowed_drop:.2f})" if self.map_allowed_drop is not None else ")"))
        for failure in self.failures:
            lines.append(f"  FAILED: {failure}")
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["failures"] = list(self.failures)
        data["format"], data["format_version"] = GATE_FORMAT, GATE_VERSION
        for key in ("mean_cosine", "min_cosine", "max_abs"):
            if math.isnan(data[key]):
                data[key] = None  # strict JSON has no NaN
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        data = dict(data)
        if data.pop("format", GATE_FORMAT) != GATE_FORMAT or data.pop("format_version", GATE_VERSION) > GATE_VERSION:
            raise ValueError("not an INT8 gate result this version of dslnet_edge understands")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"INT8 gate result has unknown fields {unknown}")
        data["thresholds"] = GateThresholds(**data["thresholds"])
        for key in ("mean_cosine", "min_cosine", "max_abs"):
            if data.get(key) is None:
                data[key] = float("nan")
        return cls(**data)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result as JSON, atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return Path(path)


def gate_path_for(int8_onnx: str | os.PathLike) -> Path:
    """``model.int8.onnx`` -> ``model.int8.gate.json``."""
    int8_onnx = Path(int8_onnx)
    return int8_onnx.with_name(int8_onnx.stem + ".gate.json")


def read_gate(int8_onnx: str | os.PathLike) -> GateResult | None:
    """The gate result saved beside ``int8_onnx`` -- only if it judged exactly this file (sha256), else None."""
    from dslnet_edge._io import file_sha256

    path = gate_path_for(int8_onnx)
    if not path.is_file() or not Path(int8_onnx).is_file():
        return None
    try:
        result = GateResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CalibrationError(f"INT8 gate result {path} is unreadable ({exc}); run python -m calibration again") from None
    return result if result.int8_sha256 == file_sha256(int8_onnx) else None


# ---------------------------------------------------------------------------------------------
# held-out crops
# ---------------------------------------------------------------------------------------------
def select_holdout(
    folder: str | os.PathLike,
    num_images: int = 256,
    *,
    exclude: Iterable[str | os.PathLike] = (),
    seed: int = 0,
    per_identity: int = 4,
) -> Holdout:
    """Held-out crops from ``folder`` (never those in ``exclude``), with a query/gallery split when names allow.

    * ``folder/query`` and ``folder/bounding_box_test`` (or ``gallery``) present: the dataset's
      own split; identities are taken in a seeded order, all their query and gallery crops.
    * Market-style names elsewhere: identities seen by at least two cameras, in a seeded order,
      up to ``per_identity`` crops each spread over their cameras; the first crop of the lowest
      camera is the query, the others the gallery.
    * Otherwise: ``num_images`` crops, embeddings compared without retrieval metrics.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 2:
        raise ValueError(f"the gate needs at least 2 held-out crops, got num_images={num_images!r}")
    folder = Path(folder)
    excluded = {Path(p).resolve() for p in exclude}
    paths = [p for p in list_images(folder) if p.resolve() not in excluded]
    if not paths:
        raise CalibrationError(f"holdout folder {folder} holds no images besides the {len(excluded)} used for calibration")
    rng = np.random.default_rng(seed)
    split = _dataset_split(folder, paths)
    if split is not None:
        return _from_dataset_split(*split, num_images, rng)
    labelled = [(p, parse_market_name(p)) for p in paths]
    if all(label is not None for _, label in labelled):
        holdout = _from_market_names([(p, label) for p, label in labelled if label[0] >= 0], num_images, per_identity, rng)
        if holdout is not None:
            return holdout
        note = "no identity is seen by two cameras here: Rank-1/mAP not computed"
    else:
        note = "file names are not Market-style (<pid>_c<cam>_...): Rank-1/mAP not computed"
    chosen = [paths[i] for i in sorted(rng.permutation(len(paths))[:num_images])]
    return Holdout(tuple(chosen), note=note)


def _dataset_split(folder: Path, paths: Sequence[Path]) -> tuple[list[Path], list[Path]] | None:
    query_dir = next((folder / d for d in _QUERY_DIRS if (folder / d).is_dir()), None)
    gallery_dir = next((folder / d for d in _GALLERY_DIRS if (folder / d).is_dir()), None)
    if query_dir is None or gallery_dir is None:
        return None
    query = [p for p in paths if p.is_relative_to(query_dir)]
    gallery = [p for p in paths if p.is_relative_to(gallery_dir)]
    if not all(parse_market_name(p) for p in (*query, *gallery)) or not query or not gallery:
        return None
    return query, gallery


def _from_dataset_split(query: list[Path], gallery: list[Path], budget: int, rng: np.random.Generator) -> Holdout:
    by_pid_q: dict[int, list[Path]] = {}
    by_pid_g: dict[int, list[Path]] = {}
    for path in query:
        by_pid_q.setdefault(parse_market_name(path)[0], []).append(path)
    for path in gallery:
        by_pid_g.setdefault(parse_market_name(path)[0], []).append(path)
    pids = sorted(p for p in by_pid_q if p >= 0 and _has_cross_camera_match(by_pid_q[p], by_pid_g.get(p, [])))
    chosen_q: list[Path] = []
    chosen_g: list[Path] = []
    for i in rng.permutation(len(pids)):
        pid = pids[i]
        if chosen_q and len(chosen_q) + len(chosen_g) + len(by_pid_q[pid]) + len(by_pid_g[pid]) > budget:
            break
        chosen_q += by_pid_q[pid]
        chosen_g += by_pid_g[pid]
    if not chosen_q:
        return Holdout(tuple(query[:budget]), note="no query has a cross-camera gallery match: Rank-1/mAP not computed")
    return _labelled(chosen_q + chosen_g, [True] * len(chosen_q) + [False] * len(chosen_g))


def _has_cross_camera_match(queries: Sequence[Path], gallery: Sequence[Path]) -> bool:
    cams_q = {parse_market_name(p)[1] for p in queries}
    return any(parse_market_name(p)[1] not in cams_q or len(cams_q) > 1 for p in gallery)


def _from_market_names(labelled, budget: int, per_identity: int, rng: np.random.Generator) -> Holdout | None:
    by_pid: dict[int, dict[int, list[Path]]] = {}
    for path, (pid, cam) in labelled:
        by_pid.setdefault(pid, {}).setdefault(cam, []).append(path)
    pids = sorted(pid for pid, cams in by_pid.items() if len(cams) >= 2)
    if not pids:
        return None
    chosen: list[Path] = []
    roles: list[bool] = []
    for i in rng.permutation(len(pids)):
        cams = by_pid[pids[i]]
        take = min(per_identity, sum(len(v) for v in cams.values()), budget - len(chosen))
        if take < 2:
            break
        picked = _round_robin([sorted(cams[c]) for c in sorted(cams)], take)
        chosen += picked
        roles += [True] + [False] * (len(picked) - 1)
    return _labelled(chosen, roles) if any(roles) else None


def _round_robin(lists: Sequence[Sequence[Path]], count: int) -> list[Path]:
    out: list[Path] = []
    depth = 0
    while len(out) < count:
        for items in lists:
            if depth < len(items) and len(out) < count:
                out.append(items[depth])
        depth += 1
    return out


def _labelled(paths: list[Path], roles: list[bool]) -> Holdout:
    labels = [parse_market_name(p) for p in paths]
    return Holdout(
        tuple(paths),
        pids=np.array([pid for pid, _ in labels]),
        cams=np.array([cam for _, cam in labels]),
        is_query=np.array(roles, dtype=bool),
    )


# ---------------------------------------------------------------------------------------------
# the gate
# ---------------------------------------------------------------------------------------------
def run_gate(
    fp32_onnx: str | os.PathLike,
    int8_onnx: str | os.PathLike,
    holdout_dir: str | os.PathLike,
    *,
    thresholds: GateThresholds = GateThresholds(),
    num_images: int = 256,
    exclude: Iterable[str | os.PathLike] = (),
    seed: int = 0,
    batch_size: int = 16,
    threads: int | None = None,
    holdout: Holdout | None = None,
) -> GateResult:
    """Run FP32 and INT8 on held-out crops in ONNX Runtime (CPU) and judge the INT8 model.

    Returns the :class:`GateResult` whether it passed or not (:func:`check_gate` raises on a
    failure). ``holdout`` overrides the selection from ``holdout_dir`` (tests, benchmarks).
    """
    from dslnet_edge._io import file_sha256
    from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dslnet_edge.comparison import Tolerances, compare
    from dslnet_edge.metrics import cosine_distance, evaluate_rank

    fp32 = OnnxRuntimeBackend(fp32_onnx, intra_op_threads=threads)
    int8 = OnnxRuntimeBackend(int8_onnx, intra_op_threads=threads)
    _check_same_contract(fp32.spec, int8.spec, fp32_onnx, int8_onnx)
    if holdout is None:
        holdout = select_holdout(holdout_dir, num_images, exclude=exclude, seed=seed)
    batches = list(crop_batches(list(holdout.paths), fp32.spec, batch_size=batch_size))
    embeddings: dict[str, list[np.ndarray]] = {"fp32": [], "int8": []}

    def recording(name: str, backend):
        def run(batch: np.ndarray) -> np.ndarray:
            try:
                out = backend.infer(batch)
            except Exception as exc:  # ONNX Runtime's kernel errors: a long text on a RuntimeError
                first = " ".join(str(exc).split())[:300]
                raise CalibrationError(f"ONNX Runtime cannot run {backend.source} ({name}): {first}") from exc
            embeddings[name].append(out)
            return out

        return run

    tolerances = Tolerances(max_abs=None, min_cosine=thresholds.min_cosine, mean_cosine=thresholds.min_mean_cosine)
    comparison = compare({"fp32": recording("fp32", fp32), "int8": recording("int8", int8)}, batches,
                         tolerances=tolerances, label="int8 vs fp32 (onnxruntime, held-out crops)")
    (result,) = comparison.comparisons
    failures = list(result.failures)
    ranking: dict[str, Any] = {}
    if holdout.ranked and not result.nonfinite:
        q, g = holdout.is_query, ~holdout.is_query
        scores = {}
        for name in ("fp32", "int8"):
            emb = np.concatenate(embeddings[name])
            scores[name] = evaluate_rank(cosine_distance(emb[q], emb[g]), holdout.pids[q], holdout.pids[g],
                                         holdout.cams[q], holdout.cams[g])
        one_query = 1.0 / scores["fp32"].num_valid
        allowed = max(thresholds.max_rank1_drop, one_query)
        map_allowed = None if thresholds.max_map_drop is None else max(thresholds.max_map_drop, one_query)
        ranking = dict(num_queries=int(q.sum()), num_gallery=int(g.sum()),
                       fp32_rank1=scores["fp32"].rank1, int8_rank1=scores["int8"].rank1,
                       fp32_mAP=scores["fp32"].mAP, int8_mAP=scores["int8"].mAP,
                       rank1_allowed_drop=allowed, map_allowed_drop=map_allowed)
        rank1_drop = scores["fp32"].rank1 - scores["int8"].rank1
        if rank1_drop > allowed + 1e-12:
            failures.append(f"Rank-1 drop {100 * rank1_drop:.1f} points > {100 * allowed:.1f}")
        map_drop = scores["fp32"].mAP - scores["int8"].mAP
        if map_allowed is not None and map_drop > map_allowed + 1e-12:
            failures.append(f"mAP drop {100 * map_drop:.1f} points > {100 * map_allowed:.1f}")
    return GateResult(
        passed=not failures,
        failures=tuple(failures),
        fp32_onnx=str(fp32_onnx),
        int8_onnx=str(int8_onnx),
        int8_sha256=file_sha256(int8_onnx),
        holdout=str(holdout_dir),
        num_crops=len(holdout.paths),
        mean_cosine=result.mean_cosine,
        min_cosine=result.min_cosine,
        max_abs=result.max_abs,
        thresholds=thresholds,
        note=holdout.note,
        **ranking,
    )


def check_gate(result: GateResult) -> GateResult:
    """``result`` if it passed; :class:`GateFailure` with its one-line summary otherwise."""
    if not result.passed:
        raise GateFailure(result.summary(), result)
    return result


def _check_same_contract(fp32, int8, fp32_path, int8_path) -> None:
    fields = ("height", "width", "channel_order", "interpolation", "feature_dim", "mean", "std")
    differing = [f for f in fields if getattr(fp32, f) != getattr(int8, f)]
    if differing:
        raise CalibrationError(f"{int8_path} and {fp32_path} have different input contracts ({', '.join(differing)}); "
                               "the INT8 model must be quantized from this FP32 model")
