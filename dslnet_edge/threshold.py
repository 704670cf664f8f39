"""Choosing the match threshold from data, and recalibrating it on your own cameras.

The matcher gives a crop the identity of its most similar gallery entry when their cosine
similarity is at least a threshold, and otherwise enrolls a new identity. The right value depends
on the model *and* on the cameras (viewpoints, light, resolution), so it is measured, not guessed:
embed labelled crops, collect scores of same-person and different-person comparisons (across
cameras when the file names say which camera), and pick the threshold that separates them best
(:func:`calibrate_threshold`, pure NumPy).

Two ways to score (``--scores``):

* ``nearest`` (default; the matcher's own decision): for every crop, the similarity of its
  *nearest* same-person crop and of its *nearest* different-person crop among the other cameras'
  crops (:func:`nearest_similarities`). A known person is accepted when the first reaches the
  threshold; a stranger, whose identity is not in the gallery, is wrongly merged when the second
  does. The maximum over a gallery grows with the number of identities in it, so this threshold
  is higher than a pairwise one and belongs to galleries of about the size calibrated on.
  With ``--crops-per-track K`` each query and gallery entry is instead the L2-normalized mean of
  K crops of one person in one camera (:func:`track_means`, several random draws per person and
  camera): the decision a tracked video makes, where a track's mean feature is matched against
  identities enrolled from other tracks' means.
* ``pairs``: every same-person and different-person pair (:func:`pair_similarities`): how well
  two single crops are told apart, independent of gallery size. Measured on CUHK03 with the demo
  weights, its balanced threshold (0.55) lets only 8.8% of different-person *pairs* match, yet
  99.8% of crops have some different person above it in the other camera's 100 identities: as a
  matcher threshold it would merge nearly every stranger into someone.

Recalibrate on your own cameras' labelled crops::

    python -m dslnet_edge.threshold --data-root my_crops/ [--model model.onnx] [--method balanced]

``my_crops/`` holds either Market-1501-style names (``0001_c1s1_000151_00.jpg``: identity 0001,
camera 1) or one sub-folder per identity (``my_crops/alice/*.jpg``; camera unknown). The
command prints the threshold and how often same/different pairs match at it; pass it on as
``Matcher(engine, threshold=...)``.

Methods: ``balanced`` (default) maximizes balanced accuracy = (true-match rate + true-non-match
rate) / 2, which does not depend on how many more different-person pairs than same-person pairs
a dataset has; ``f1`` maximizes pair-level F1; ``far`` fixes the false-match rate (the share of
different-person pairs that would match, i.e. merged identities) at ``--target-far`` and takes
the lowest threshold that keeps it.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dslnet_edge._checks import positive_int
from dslnet_edge.images import is_image_file, parse_market_name

__all__ = [
    "ThresholdCalibration",
    "calibrate_threshold",
    "pair_similarities",
    "nearest_similarities",
    "track_means",
    "CalibrationConfig",
    "calibrate_from_folders",
    "read_labelled_crops",
    "main",
]

METHODS = ("balanced", "f1", "far")
SCORES = ("nearest", "pairs")


@dataclasses.dataclass(frozen=True)
class ThresholdCalibration:
    """A chosen threshold and how same/different pairs behave at it (a pair matches when sim >= threshold)."""

    threshold: float
    method: str
    true_match_rate: float  # same-person pairs that match
    false_match_rate: float  # different-person pairs that match
    balanced_accuracy: float
    f1: float
    num_same: int
    num_different: int
    scores: str = "pairs"  # what was compared: "pairs" or "nearest" (see the module docstring)
    crops_per_track: int = 1  # each compared feature is the mean of this many crops (1: single crops)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.scores not in SCORES:
            raise ValueError(f"scores must be one of {SCORES}, got {self.scores!r}")
        for name in ("true_match_rate", "false_match_rate", "balanced_accuracy", "f1"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if not np.isfinite(self.threshold):
            raise ValueError(f"threshold must be finite, got {self.threshold!r}")
        if self.num_same < 1 or self.num_different < 1:
            raise ValueError("a calibration needs at least one same and one different pair")
        positive_int(self.crops_per_track, "crops_per_track")

    def summary(self) -> str:
        if self.scores == "nearest":
            noun = "crop" if self.crops_per_track == 1 else "track"
            means = "" if self.crops_per_track == 1 else f" (each the mean of {self.crops_per_track} crops of one person and camera)"
            return (
                f"threshold {self.threshold:.4f} ({self.method}, nearest): {100 * self.true_match_rate:.1f}% of {noun}s reach "
                f"their nearest same-person {noun} and {100 * self.false_match_rate:.2f}% reach their nearest different-person "
                f"{noun} (a stranger merged); balanced accuracy {self.balanced_accuracy:.3f}; from {self.num_same} {noun}s{means}"
            )
        return (
            f"threshold {self.threshold:.4f} ({self.method}): {100 * self.true_match_rate:.1f}% of same-person pairs "
            f"and {100 * self.false_match_rate:.2f}% of different-person pairs match; balanced accuracy "
            f"{self.balanced_accuracy:.3f}, F1 {self.f1:.3f}; from {self.num_same} same / {self.num_different} different pairs"
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def calibrate_threshold(
    same_sims: Sequence[float] | np.ndarray,
    diff_sims: Sequence[float] | np.ndarray,
    *,
    method: str = "balanced",
    target_far: float = 0.01,
    scores: str = "pairs",
    crops_per_track: int = 1,
) -> ThresholdCalibration:
    """Pick the similarity threshold that best separates same-person from different-person pairs.

    Candidate thresholds lie halfway between consecutive observed similarities (plus one below
    and one above all of them), so the chosen value does not sit on a sample.

    Args:
        same_sims: similarities of pairs showing the same person.
        diff_sims: similarities of pairs showing different people.
        method: ``"balanced"`` (max balanced accuracy), ``"f1"`` (max pair F1) or ``"far"``
            (lowest threshold whose false-match rate is at most ``target_far``).
        target_far: the false-match rate allowed by ``method="far"``.
        scores: what the two arrays hold (``"pairs"`` or ``"nearest"``), recorded in the result.
        crops_per_track: how many crops each compared feature averaged (:func:`track_means`), recorded.

    >>> c = calibrate_threshold([0.8, 0.9, 0.7], [0.1, 0.3, 0.2, 0.4])
    >>> round(c.threshold, 2), c.true_match_rate, c.false_match_rate
    (0.55, 1.0, 0.0)
    """
    same = _scores(same_sims, "same_sims")
    diff = _scores(diff_sims, "diff_sims")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (0.0 <= target_far <= 1.0):
        raise ValueError(f"target_far must be in [0, 1], got {target_far!r}")
    values = np.unique(np.concatenate([same, diff]))
    candidates = np.concatenate([[values[0] - 1e-3], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-3]])
    same_sorted, diff_sorted = np.sort(same), np.sort(diff)
    tp = len(same) - np.searchsorted(same_sorted, candidates, side="left")  # same pairs with sim >= t
    fp = len(diff) - np.searchsorted(diff_sorted, candidates, side="left")
    tpr, fpr = tp / len(same), fp / len(diff)
    balanced = (tpr + 1.0 - fpr) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp > 0, 2 * tp / (2 * tp + fp + (len(same) - tp)), 0.0)
    if method == "balanced":
        best = _argmax_middle(balanced)
    elif method == "f1":
        best = _argmax_middle(f1)
    else:
        allowed = np.flatnonzero(fpr <= target_far + 1e-12)  # thresholds ascend, fpr descends
        best = int(allowed[0])
    return ThresholdCalibration(
        threshold=float(candidates[best]),
        method=method,
        true_match_rate=float(tpr[best]),
        false_match_rate=float(fpr[best]),
        balanced_accuracy=float(balanced[best]),
        f1=float(f1[best]),
        num_same=len(same),
        num_different=len(diff),
        scores=scores,
        crops_per_track=crops_per_track,
    )


def _argmax_middle(values: np.ndarray) -> int:
    """Index of the maximum; for a plateau of equal maxima, its middle (the widest margin)."""
    top = np.flatnonzero(values >= values.max() - 1e-12)
    runs = np.split(top, np.flatnonzero(np.diff(top) > 1) + 1)
    run = max(runs, key=len)
    return int(run[len(run) // 2])


def _scores(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name} is empty; calibration needs pairs of both kinds")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN/inf")
    if array.min() < -1.0001 or array.max() > 1.0001:
        raise ValueError(f"{name} must be cosine similarities in [-1, 1], found [{array.min():.3f}, {array.max():.3f}]")
    return array


def pair_similarities(
    features: np.ndarray,
    identities: Sequence[str],
    cameras: Sequence[str | None] | None = None,
    *,
    cross_camera: bool = True,
    max_pairs: int | None = 1_000_000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of same-identity and different-identity pairs (each unordered pair once).

    With ``cross_camera`` and known cameras, same-identity pairs must come from different
    cameras (the hard, useful case for multi-camera matching). ``max_pairs`` caps each kind by
    random subsampling (``seed``), so a large folder does not exhaust memory.
    """
    feats, ids = _unit_rows(features, identities)
    i, j = np.triu_indices(len(ids), k=1)
    sims = (feats @ feats.T)[i, j]
    same = ids[i] == ids[j]
    cams = _known_cameras(cameras, cross_camera)
    same_mask = same if cams is None else same & (cams[i] != cams[j])
    rng = np.random.default_rng(seed)
    return _cap(sims[same_mask], max_pairs, rng), _cap(sims[~same], max_pairs, rng)


def nearest_similarities(
    features: np.ndarray,
    identities: Sequence[str],
    cameras: Sequence[str | None] | None = None,
    *,
    cross_camera: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """For every crop, the similarity of its nearest same-person and its nearest different-person crop.

    Each crop plays a query against the others as gallery (with ``cross_camera`` and known
    cameras: only the other cameras' crops, as when a person walks into the next camera). A crop
    with no same-person crop in that gallery is left out. Returns two arrays of equal length,
    the scores :func:`calibrate_threshold` separates for the matcher's open-set decision.
    """
    feats, ids = _unit_rows(features, identities)
    sims = feats @ feats.T
    np.fill_diagonal(sims, -np.inf)
    same = ids[:, None] == ids[None, :]
    cams = _known_cameras(cameras, cross_camera)
    visible = np.ones_like(same) if cams is None else cams[:, None] != cams[None, :]
    best_same = np.where(same & visible, sims, -np.inf).max(axis=1)
    best_diff = np.where(~same & visible, sims, -np.inf).max(axis=1)
    keep = np.isfinite(best_same) & np.isfinite(best_diff)
    return best_same[keep], best_diff[keep]


def track_means(
    features: np.ndarray,
    identities: Sequence[str],
    cameras: Sequence[str | None] | None = None,
    *,
    crops_per_track: int,
    draws: int = 5,
    seed: int = 0,
) -> tuple[np.ndarray, list[str], list[str | None]]:
    """Track-like features: L2-normalized means of ``crops_per_track`` crops of one person in one camera.

    For every (identity, camera) with at least ``crops_per_track`` crops, ``draws`` distinct random
    subsets of that size (all of them when there are no more than ``draws``) are averaged, as a
    tracker's mean of a person's crops is. People with fewer crops in a camera are left out. Returns ``(features,
    identities, cameras)`` of the means, ready for :func:`nearest_similarities`.

    >>> f, i, c = track_means(np.eye(3), ["a", "a", "b"], ["c1", "c1", "c1"], crops_per_track=2)
    >>> np.round(f, 3).tolist(), i, c
    ([[0.707, 0.707, 0.0]], ['a'], ['c1'])
    """
    positive_int(crops_per_track, "crops_per_track")
    positive_int(draws, "draws")
    feats, ids = _unit_rows(features, identities)
    cams = [None] * len(ids) if cameras is None else list(cameras)
    if len(cams) != len(ids):
        raise ValueError(f"cameras has {len(cams)} entries for {len(ids)} features")
    groups: dict[tuple[str, str | None], list[int]] = {}
    for row, key in enumerate(zip(ids.tolist(), cams)):
        groups.setdefault(key, []).append(row)
    rng = np.random.default_rng(seed)
    out_feats, out_ids, out_cams = [], [], []
    for (identity, camera), rows in groups.items():
        if len(rows) < crops_per_track:
            continue
        if math.comb(len(rows), crops_per_track) <= draws:  # few enough: every subset, once
            subsets = list(itertools.combinations(rows, crops_per_track))
        else:  # ``draws`` distinct random subsets
            chosen: set[tuple[int, ...]] = set()
            while len(chosen) < draws:
                chosen.add(tuple(sorted(rng.choice(rows, size=crops_per_track, replace=False).tolist())))
            subsets = sorted(chosen)
        for subset in subsets:
            mean = feats[list(subset)].mean(axis=0)
            out_feats.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
            out_ids.append(identity)
            out_cams.append(camera)
    if not out_feats:
        raise ValueError(f"no identity has {crops_per_track} crops in one camera; lower --crops-per-track")
    return np.asarray(out_feats), out_ids, out_cams


def _known_cameras(cameras: Sequence[str | None] | None, cross_camera: bool) -> np.ndarray | None:
    """The cameras as an array when same-person scores must cross cameras and every camera is known, else None."""
    if cross_camera and cameras is not None and all(c is not None for c in cameras):
        return np.asarray(cameras, dtype=object)
    return None


def _unit_rows(features: np.ndarray, identities: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or len(feats) != len(identities):
        raise ValueError(f"features must be [N, D] with N = len(identities) = {len(identities)}, got {feats.shape}")
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12), np.asarray(identities, dtype=object)


def _cap(values: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or len(values) <= limit:
        return values
    return values[rng.choice(len(values), size=limit, replace=False)]


# ---------------------------------------------------------------------------------------------
# From labelled crops on disk
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    """What ``python -m dslnet_edge.threshold`` was asked to do."""

    data_roots: tuple[Path, ...]
    model: Path | None = None  # None: the bundled weights
    method: str = "balanced"
    target_far: float = 0.01
    scores: str = "nearest"
    cross_camera: bool = True
    max_per_identity: int | None = 20
    batch_size: int = 32
    crops_per_track: int = 1

    def __post_init__(self) -> None:
        if not self.data_roots:
            raise ValueError("give at least one --data-root")
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {METHODS}, got {self.method!r}")
        if self.scores not in SCORES:
            raise ValueError(f"--scores must be one of {SCORES}, got {self.scores!r}")
        if self.max_per_identity is not None and self.max_per_identity < 1:
            raise ValueError(f"--max-per-identity must be >= 1, got {self.max_per_identity}")
        if self.crops_per_track < 1:
            raise ValueError(f"--crops-per-track must be >= 1, got {self.crops_per_track}")
        if self.crops_per_track > 1 and self.scores != "nearest":
            raise ValueError("--crops-per-track applies to --scores nearest (the matcher's decision on track means)")


def read_labelled_crops(roots: Sequence[Path], *, max_per_identity: int | None = None) -> list[tuple[Path, str, str | None]]:
    """``(image path, identity, camera)`` for every image under ``roots`` (at most ``max_per_identity`` per identity and camera).

    Identity and camera come from Market-1501-style names (``PPPP_cC...``; identity -1 = junk,
    skipped); otherwise the identity is the image's parent folder and the camera is unknown.
    """
    found: list[tuple[Path, str, str | None]] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"data root {root} is not a folder")
        for path in sorted(p for p in root.rglob("*") if is_image_file(p) and p.is_file()):
            parsed = parse_market_name(path)
            if parsed:
                if parsed[0] == -1:
                    continue
                found.append((path, str(parsed[0]), f"c{parsed[1]}"))
            elif path.parent != root:
                found.append((path, path.parent.name, None))
    if max_per_identity is not None:  # per identity and camera, so every camera keeps its share
        counts: dict[tuple[str, str | None], int] = {}
        kept = []
        for item in found:
            key = (item[1], item[2])
            counts[key] = counts.get(key, 0) + 1
            if counts[key] <= max_per_identity:
                kept.append(item)
        found = kept
    return found


def calibrate_from_folders(config: CalibrationConfig) -> ThresholdCalibration:
    """Embed the labelled crops with the model and calibrate the threshold on their pairs."""
    from dslnet_edge.engine import Engine
    from dslnet_edge.images import read_image

    items = read_labelled_crops(config.data_roots, max_per_identity=config.max_per_identity)
    identities = {identity for _, identity, _ in items}
    if len(identities) < 2:
        raise ValueError(f"found {len(items)} labelled images of {len(identities)} identities under {list(map(str, config.data_roots))}; need at least 2 identities")
    with Engine(config.model) as engine:
        feats = []
        for start in range(0, len(items), config.batch_size):
            crops = []
            for path, _, _ in items[start : start + config.batch_size]:
                crops.append(read_image(path))
            feats.append(engine.embed(crops))
    feats = np.concatenate(feats)
    ids, cams = [i for _, i, _ in items], [c for _, _, c in items]
    if config.crops_per_track > 1:
        feats, ids, cams = track_means(feats, ids, cams, crops_per_track=config.crops_per_track)
    score = nearest_similarities if config.scores == "nearest" else pair_similarities
    same, diff = score(feats, ids, cams, cross_camera=config.cross_camera)
    if len(same) == 0:
        raise ValueError("no same-identity pairs (across cameras) among the images; add more images per identity or pass --any-camera")
    return calibrate_threshold(same, diff, method=config.method, target_far=config.target_far, scores=config.scores,
                               crops_per_track=config.crops_per_track)


def _parse_args(argv: Sequence[str] | None) -> tuple[CalibrationConfig, bool] | int:
    from dslnet_edge._cli import parse_args_or_status

    parser = argparse.ArgumentParser(prog="python -m dslnet_edge.threshold", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", action="append", required=True, type=Path, help="folder of labelled crops (repeatable)")
    parser.add_argument("--model", type=Path, default=None, help="model file (.onnx/.engine/.pt); default: bundled demo ONNX")
    parser.add_argument("--method", choices=METHODS, default="balanced")
    parser.add_argument("--scores", choices=SCORES, default="nearest",
                        help="nearest: each crop's nearest same/different-person crop (the matcher's decision); pairs: all pairs")
    parser.add_argument("--target-far", type=float, default=0.01, help="false-match rate for --method far")
    parser.add_argument("--any-camera", action="store_true", help="also count same-camera pairs as same-person pairs")
    parser.add_argument("--max-per-identity", type=int, default=20, help="images used per identity and camera (0 = all)")
    parser.add_argument("--crops-per-track", type=int, default=1, metavar="K",
                        help="compare means of K crops per person and camera, as tracks are matched (default 1: single crops)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parse_args_or_status(parser, argv)
    if isinstance(args, int):
        return args
    config = CalibrationConfig(
        data_roots=tuple(args.data_root),
        model=args.model,
        method=args.method,
        target_far=args.target_far,
        scores=args.scores,
        cross_camera=not args.any_camera,
        max_per_identity=args.max_per_identity or None,
        crops_per_track=args.crops_per_track,
    )
    return config, args.json


def main(argv: Sequence[str] | None = None) -> int:
    from dslnet_edge._cli import EXPECTED_ERRORS, report_error

    try:
        parsed = _parse_args(argv)
        if isinstance(parsed, int):  # a bad argument (one line printed) or --help
            return parsed
        config, as_json = parsed
        result = calibrate_from_folders(config)
    except EXPECTED_ERRORS as exc:  # what a user can cause: one line, no traceback
        return report_error(exc)
    print(json.dumps(result.to_dict(), indent=2) if as_json else result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
