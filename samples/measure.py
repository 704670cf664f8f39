"""Re-runnable measurement behind samples/README.md's numbers: the sample videos through ``video_reid``.

::

    python -m samples.measure --out-dir measure/            # both sample videos, recommended settings
    python -m samples.measure --out-dir measure/ --png-every 10 --model other.onnx
    python -m samples.measure --out-dir measure/ --similarities --compare-peers   # weights vs OMZ peers

For each of the two Intel sample videos (``../shared/data/videos``, CC BY 4.0) it runs
``samples.video_reid`` with the recommended detector (``--detector``, default YOLOX-Nano 416
from ``../shared/models/detectors``) and otherwise *default* settings (threshold, tracker, crop
quality), writes the annotated video and the CSV log, extracts every ``--png-every``-th
annotated frame as a PNG (to count ID switches by eye), and prints one Markdown table row per
video: tracks, identities, and the time per stage. Which re-ID weights were used is printed
with their sha256, because the identity counts depend on them (the detector and tracker
numbers do not). Times on a shared CPU are disturbed by whatever else runs there.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from samples._cli import EXPECTED_ERRORS, parse_args_or_status, quiet_native_logs, report_error

if TYPE_CHECKING:
    from dslnet_edge import Engine

__all__ = ["main", "measure_video", "track_crops", "mean_similarity_matrix", "track_similarities", "peer_engines", "peer_similarities"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
VIDEOS = ("one-by-one-person-detection.mp4", "people-detection.264")
RECOMMENDED_DETECTOR = "yolox_nano_416.onnx"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def measure_video(video: Path, detector: str, out_dir: Path, *, model: str | None, every: int, png_every: int) -> dict:
    """Run one video with default settings; returns the numbers of its table row."""
    import cv2

    from samples._common import ModelConfig
    from samples.video import open_video
    from samples.video_reid import VideoReidConfig, run_video_reid

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = video.name.split(".")[0]
    out, log = out_dir / f"{stem}.annotated.mp4", out_dir / f"{stem}.csv"
    config = VideoReidConfig(video=str(video), model=ModelConfig(model=model), out=str(out), log=str(log), every=every, detector=detector)
    with open_video(video) as source:
        fps, shape = source.fps, (source.height, source.width)
    result = run_video_reid(config)
    stats = result.stats
    with open(log, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    tracks = {r["track_id"] for r in rows if r["track_id"] not in ("", "0") and r["status"] != "tentative"}
    pngs = out_dir / f"{stem}.frames"
    pngs.mkdir(exist_ok=True)
    capture = cv2.VideoCapture(str(out))
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % png_every == 0:
            small = cv2.resize(frame, (frame.shape[1] // 2, frame.shape[0] // 2), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(pngs / f"{index * every:05d}.png"), small)
        index += 1
    capture.release()
    n = max(stats.frames_processed, 1)
    return {
        "video": video.name,
        "frames": stats.frames_processed,
        "tracks": len(tracks),
        "identities": len(stats.identities),
        "detector_ms": 1000 * stats.detector_seconds / n,
        "tracker_ms": 1000 * stats.tracker_seconds / n,
        "match_ms": 1000 * stats.match_seconds / n,
        "embed_ms_per_crop": result.embed_ms_per_crop,
        "crops": result.crops_embedded,
        "fps": stats.frames_processed / stats.wall_seconds if stats.wall_seconds else float("nan"),
        "trackers": replay_trackers(log, fps / every, shape),
        "summary": result.lines,
    }


def track_crops(video: Path, log: Path, *, step: int = 3) -> dict[int, list[np.ndarray]]:
    """Every ``step``-th good crop (the log's boxes, :class:`CropQuality`) of each decided track of a measured run."""
    import cv2

    from samples.detect import Box
    from samples.pipeline import CropQuality

    quality = CropQuality()
    with open(log, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["x1"] and r["status"] in ("new", "known")]
    capture = cv2.VideoCapture(str(video))
    size = (capture.get(cv2.CAP_PROP_FRAME_HEIGHT), capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    wanted: dict[int, list[tuple[int, Box]]] = {}
    for r in rows:
        box = Box(*(float(r[k]) for k in ("x1", "y1", "x2", "y2", "score")))
        if quality.is_good(box, size):
            wanted.setdefault(int(r["frame"]), []).append((int(r["track_id"]), box))
    keep = set(sorted(wanted)[::step])
    crops: dict[int, list] = {}
    index = 0
    while keep and index <= max(keep):
        ok, frame = capture.read()
        if not ok:
            break
        for track, box in wanted.get(index, []) if index in keep else []:
            x1, y1, x2, y2 = box.as_int()
            crops.setdefault(track, []).append(frame[y1:y2, x1:x2].copy())
        index += 1
    capture.release()
    return crops


def mean_similarity_matrix(crops: dict[int, list[np.ndarray]], embed) -> tuple[list[int], np.ndarray]:
    """Cosine similarities between the tracks' mean features; ``embed(crops) -> [N, D]`` (normalized here)."""
    tracks = sorted(crops)
    means = []
    for t in tracks:
        feats = np.asarray(embed(crops[t]), dtype=np.float64)
        feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
        mean = feats.mean(0)
        means.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
    means = np.array(means).reshape(len(tracks), -1)
    return tracks, means @ means.T


def track_similarities(video: Path, log: Path, *, model: str | None, step: int = 3) -> tuple[list[int], np.ndarray]:
    """Cosine similarities between the mean features of the decided tracks of a measured run.

    Every ``step``-th good crop of each track is embedded again with the re-ID ``model``; the
    matrix shows whether the weights separate the people at the threshold (the identity counts
    follow from it). Returns ``(track ids, matrix)``.
    """
    from dslnet_edge import Engine

    with Engine(model) as engine:
        return mean_similarity_matrix(track_crops(video, log, step=step), engine.embed)


def peer_engines(peers_dir: Path) -> list[tuple[str, Engine]]:
    """An :class:`~dslnet_edge.Engine` (FP32) on each OMZ peer found in ``peers_dir``, with its short name.

    Missing peer files are skipped; a folder with none of them is a ``FileNotFoundError``. The
    engines are the caller's to close.
    """
    from dslnet_edge import Engine
    from dslnet_edge.bench.peers import PEERS, peer_backend

    found = [peer for peer in PEERS if (Path(peers_dir) / peer.file).is_file()]
    if not found:
        raise FileNotFoundError(f"no OMZ peer model in {peers_dir} (expected e.g. {PEERS[0].file})")
    engines: list[tuple[str, Engine]] = []
    try:
        for peer in found:
            engines.append((peer.short, Engine(backend=peer_backend(peer, peers_dir, precision="f32"))))
    except BaseException:  # one peer failed to load: release those already loaded
        for _, engine in engines:
            engine.close()
        raise
    return engines


def peer_similarities(crops: dict[int, list[np.ndarray]], engines: list[tuple[str, Engine]]) -> list[tuple[str, list[int], np.ndarray]]:
    """The same track-mean matrix through each peer engine (:func:`peer_engines`): ``(name, tracks, matrix)``.

    A yardstick for the weights: when a peer keeps the tracks apart and the bundled weights do
    not, the weights, not the threshold, merge the people.
    """
    return [(name, *mean_similarity_matrix(crops, engine.embed)) for name, engine in engines]


def _print_matrix(title: str, tracks: list[int], matrix: np.ndarray) -> None:
    off = matrix[~np.eye(len(tracks), dtype=bool)]
    worst = f"; between different tracks at most {off.max():.2f}" if off.size else ""
    print(f"    {title}, tracks {tracks}{worst}:", file=sys.stderr)
    for t, line in zip(tracks, matrix):
        print(f"    {t:>4} " + " ".join(f"{v:5.2f}" for v in line), file=sys.stderr)


def replay_trackers(log: Path, frame_rate: float, frame_shape: tuple[int, int], kinds=("bytetrack", "iou")) -> dict[str, dict[str, int]]:
    """Feed the detections of a measured run's log to each tracker again (defaults settings, no re-ID).

    Returns per tracker the tracks confirmed and the tracks that received at least
    ``ModelConfig.min_track_crops`` good crops (those the Matcher decides on): with one track per
    person, both equal the number of people, and every extra one is a broken track.
    """
    from samples._common import ModelConfig, TrackerConfig
    from samples.detect import Box
    from samples.pipeline import CropQuality

    frames: dict[int, list[Box]] = {}
    with open(log, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            boxes = frames.setdefault(int(r["frame"]), [])
            if r["x1"]:
                boxes.append(Box(*(float(r[k]) for k in ("x1", "y1", "x2", "y2", "score"))))
    quality, need = CropQuality(), ModelConfig.min_track_crops
    out = {}
    for kind in kinds:
        tracker = TrackerConfig(kind=kind).build(frame_rate)
        good: dict[int, int] = {}
        for index in sorted(frames):
            for tb in tracker.update(frames[index]):
                if tb.confirmed:
                    good[tb.track_id] = good.get(tb.track_id, 0) + quality.is_good(tb.box, frame_shape)
        out[kind] = {"confirmed": len(good), "decidable": sum(1 for n in good.values() if n >= need)}
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m samples.measure", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", required=True, help="folder for the annotated videos, logs and PNG frames")
    parser.add_argument("--videos", default=str(SHARED / "data" / "videos"), help="folder holding the two sample videos")
    parser.add_argument("--detector", default=f"yolox:{SHARED / 'models' / 'detectors' / RECOMMENDED_DETECTOR}",
                        help="detector spec (default: the recommended YOLOX-Nano 416)")
    parser.add_argument("--model", help="re-ID model (default: the bundled weights)")
    parser.add_argument("--every", type=int, default=1, help="process every N-th frame (default 1: the numbers in README)")
    parser.add_argument("--png-every", type=int, default=5, help="save every N-th annotated frame as a PNG (default 5)")
    parser.add_argument("--only", choices=VIDEOS, help="measure one of the two videos")
    parser.add_argument("--similarities", action="store_true",
                        help="also print the similarity matrix of the decided tracks' mean features (embeds every 3rd good crop again)")
    parser.add_argument("--compare-peers", nargs="?", const=str(SHARED / "peers" / "openvino-omz"), metavar="DIR",
                        help="with --similarities: the same matrix through the OMZ peer models in DIR "
                             "(default ../shared/peers/openvino-omz), a yardstick for the weights")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args_or_status(build_parser(), argv)
    if isinstance(args, int):
        return args
    quiet_native_logs()
    try:
        if args.every < 1 or args.png_every < 1:
            raise ValueError("--every and --png-every must be >= 1")
        if args.compare_peers and not args.similarities:
            raise ValueError("--compare-peers compares the --similarities matrix: pass both")
        from dslnet_edge import Engine
        from dslnet_edge.matcher import DEFAULT_THRESHOLD
        from dslnet_edge.weights import DEMO_ONNX

        weights = Path(args.model) if args.model else Path(DEMO_ONNX)
        with contextlib.ExitStack() as stack:
            # the engines of the similarity check load once, before any video (a wrong peers folder fails at once)
            engine = stack.enter_context(Engine(args.model)) if args.similarities else None
            peers = peer_engines(Path(args.compare_peers)) if args.compare_peers else []
            for _, peer in peers:
                stack.enter_context(peer)
            print(f"re-ID weights: {weights.name} sha256 {_sha256(weights)[:16]} (identity counts depend on them)")
            print(f"detector: {args.detector}")
            print("| video | frames | tracks | identities | detector ms/frame | tracker ms/frame | matching ms/frame (embedding incl.) | embedding ms/crop | frames/s end to end |")
            print("|---|---|---|---|---|---|---|---|---|")
            for name in [args.only] if args.only else VIDEOS:
                row = measure_video(Path(args.videos) / name, args.detector, Path(args.out_dir), model=args.model, every=args.every, png_every=args.png_every)
                print(
                    f"| {row['video']} | {row['frames']} | {row['tracks']} | {row['identities']} | {row['detector_ms']:.1f} | "
                    f"{row['tracker_ms']:.2f} | {row['match_ms']:.1f} | {row['embed_ms_per_crop']:.1f} | {row['fps']:.1f} |",
                    flush=True,
                )
                for line in row["summary"]:
                    print(f"    {line}", file=sys.stderr)
                print(f"    the same detections through each tracker (confirmed tracks / tracks with enough good crops): {row['trackers']}", file=sys.stderr)
                if engine is not None:
                    crops = track_crops(Path(args.videos) / name, Path(args.out_dir) / f"{name.split('.')[0]}.csv")
                    tracks, matrix = mean_similarity_matrix(crops, engine.embed)
                    _print_matrix(f"track-mean cosine similarities, {weights.name} (threshold {DEFAULT_THRESHOLD})", tracks, matrix)
                    for peer, tracks, matrix in peer_similarities(crops, peers):
                        _print_matrix(f"the same through {peer} (FP32)", tracks, matrix)
    except EXPECTED_ERRORS as exc:
        return report_error(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
