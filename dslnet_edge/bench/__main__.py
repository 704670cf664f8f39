"""``python -m dslnet_edge.bench``: DSLNet on every available CPU runtime and precision beside the peers, in one run.

    python -m dslnet_edge.bench --quick                       # about a minute
    python -m dslnet_edge.bench --json bench.json --markdown bench.md   # full, about ten minutes
    python -m dslnet_edge.bench --int8-onnx model.int8.onnx --engine model.engine

Prints Markdown tables (models: crops/s, p50/p99 ms, speed-up over ONNX Runtime FP32, fraction of
the FP32 peak, Rank-1/mAP; FP32 peak; gallery search; end-to-end video by stage) and writes the
full result as JSON with the machine, versions, threads and date. Defaults look for the peers,
data and video in ``../shared`` beside the checkout; absent ones are skipped with a note.
Numbers only, no pass/fail: the targets are read from the table.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from dslnet_edge.bench.core import BenchConfig, run_bench
from dslnet_edge.bench.report import to_json, to_markdown

_SECTIONS = ("models", "peak", "gallery", "video")


def _shared(*parts: str) -> Path | None:
    """``../shared/<parts>`` beside the checkout (or the working directory), if it exists."""
    here = Path(__file__).resolve().parents[2]
    for base in (here.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"):
        candidate = base.joinpath(*parts)
        if candidate.exists():
            return candidate
    return None


def _default_video() -> Path | None:
    folder = _shared("data", "videos")
    videos = sorted(folder.glob("*.mp4")) if folder else []
    return videos[0] if videos else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dslnet_edge.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short timings, smaller GEMM/gallery/eval set (~1 minute)")
    parser.add_argument("--model", type=Path, help="DSLNet FP32 ONNX (default: the bundled demo ONNX)")
    parser.add_argument("--checkpoint", type=Path, help="DSLNet .pt for the PyTorch eager row (default: the bundled one)")
    parser.add_argument("--int8-onnx", type=Path, help="the calibration's Q/DQ ONNX: adds ONNX Runtime and OpenVINO INT8 rows")
    parser.add_argument("--no-torch", action="store_true", help="leave the PyTorch eager row out")
    parser.add_argument("--engine", type=Path, action="append", default=[], help="a TensorRT engine (repeatable)")
    parser.add_argument("--peers-dir", type=Path, help="OMZ peers folder (default: ../shared/peers/openvino-omz)")
    parser.add_argument("--no-peers", action="store_true", help="leave the peers out")
    parser.add_argument("--data-root", type=Path, help="query/ + bounding_box_test/ for Rank-1/mAP (default: ../shared/data/cuhk03-pair1)")
    parser.add_argument("--no-accuracy", action="store_true", help="leave Rank-1/mAP out")
    parser.add_argument("--video", type=Path, help="video for the end-to-end section (default: the first ../shared/data/videos/*.mp4)")
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 1 8 32)")
    parser.add_argument("--seconds", type=float, help="seconds per model and batch (default 3, quick 0.5)")
    parser.add_argument("--threads", type=int, default=0, help="threads for every runtime (default 0: each runtime's default)")
    parser.add_argument("--gemm-size", type=int, help="n of the n x n x n peak GEMM (default 4096, quick 2048)")
    parser.add_argument("--gallery-sizes", type=int, nargs="+", help="exemplar counts (default 1000 100000 1000000; quick without 1M)")
    parser.add_argument("--max-gallery-gb", type=float, default=10.0,
                        help="skip gallery sizes needing more memory than this (1M x 512-d with faiss: ~8.4 GB measured)")
    parser.add_argument("--eval-identities", type=int, help="first N identities of --data-root (default all; quick 25)")
    parser.add_argument("--video-frames", type=int, help="frames of the video (default 300, quick 40)")
    parser.add_argument("--only", choices=_SECTIONS, action="append", help="run only these sections (repeatable)")
    parser.add_argument("--json", type=Path, dest="json_out", help="write the full result as JSON here")
    parser.add_argument("--markdown", type=Path, dest="md_out", help="write the Markdown tables here too")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    overrides: dict = {}
    for name in ("model", "checkpoint", "int8_onnx", "seconds", "gemm_size", "eval_identities", "video_frames"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.batches:
        overrides["batches"] = tuple(args.batches)
    if args.gallery_sizes:
        overrides["gallery_sizes"] = tuple(args.gallery_sizes)
    overrides["engines"] = tuple(args.engine)
    overrides["torch"] = not args.no_torch
    overrides["threads"] = args.threads
    overrides["max_gallery_gb"] = args.max_gallery_gb
    if args.only:
        overrides["sections"] = frozenset(args.only)
    overrides["peers_dir"] = None if args.no_peers else (args.peers_dir or _shared("peers", "openvino-omz"))
    overrides["data_root"] = None if args.no_accuracy else (args.data_root or _shared("data", "cuhk03-pair1"))
    overrides["video"] = args.video or _default_video()
    for name in ("peers_dir", "data_root", "video", "model", "checkpoint", "int8_onnx"):
        path = overrides.get(name)
        if path is not None and not Path(path).exists():
            raise FileNotFoundError(f"--{name.replace('_', '-')} {path} does not exist")
    return BenchConfig.quick_preset(**overrides) if args.quick else BenchConfig(**overrides)


def run(config: BenchConfig, *, json_out: Path | None = None, md_out: Path | None = None, quiet: bool = False) -> dict:
    """Run the bench, print the Markdown, write the JSON/Markdown files atomically; return the result."""
    from dslnet_edge._io import atomic_write_text

    progress = (lambda msg: None) if quiet else (lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True))
    result = run_bench(config, progress=progress)
    markdown = to_markdown(result)
    print(markdown)
    if json_out is not None:
        atomic_write_text(json_out, to_json(result) + "\n")
    if md_out is not None:
        atomic_write_text(md_out, markdown)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    from dslnet_edge._cli import EXPECTED_ERRORS, parse_args_or_status, report_error

    args = parse_args_or_status(build_parser(), argv)
    if isinstance(args, int):  # a bad argument (one line printed) or --help
        return args
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
        run(config, json_out=args.json_out, md_out=args.md_out, quiet=args.quiet)
    except EXPECTED_ERRORS as exc:
        return report_error(exc, status=2 if isinstance(exc, ValueError) else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
