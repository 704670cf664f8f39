"""Runtime speed: ONNX Runtime CPU embeddings/s by batch size, the preprocessing share, and gallery
search time vs gallery size (NumPy vs faiss). Prints numbers only; no pass/fail.

    python benchmarks/bench_runtime.py                      # demo ONNX if present, else a random-init DSLNet
    python benchmarks/bench_runtime.py --onnx model.onnx --batches 1 8 32 --threads 2
    python benchmarks/bench_runtime.py --skip-engine --sizes 1000 10000 100000

Speed does not depend on the weights, so a random-init DSLNet (exported with export.onnx, needs
torch) stands in for the demo weights until they exist.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dslnet_edge.engine import Engine
from dslnet_edge.gallery import Gallery
from dslnet_edge.preprocessing import preprocess
from dslnet_edge.weights import DEMO_ONNX


def _crops(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Detector-sized person crops (CUHK03-like: 46-141 wide, 145-419 high)."""
    out = []
    for _ in range(n):
        h = int(rng.integers(145, 420))
        w = int(rng.integers(46, 142))
        out.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return out


def _timed(fn, repeats: int) -> float:
    """Best-of-``repeats`` seconds of one call (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _model_path(args, folder: Path) -> tuple[Path, str]:
    if args.onnx:
        return args.onnx, str(args.onnx)
    if DEMO_ONNX.exists():
        return DEMO_ONNX, "demo weights"
    import torch

    from dslnet_edge.model import build_dslnet
    from export.onnx import export_onnx

    torch.manual_seed(0)
    path = export_onnx(build_dslnet(num_classes=10), folder / "random_init.onnx")
    return path, "random-init DSLNet (demo weights absent), exported with export.onnx"


def bench_engine(args) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path, what = _model_path(args, Path(tmp))
        engine = Engine(path, intra_op_threads=args.threads, max_batch=max(args.batches))
        spec = engine.spec
        print(f"model: {what} ({spec.height}x{spec.width} -> {spec.feature_dim}); ONNX Runtime CPU, intra-op threads {args.threads or 'default'}")
        print(f"{'batch':>6} {'embed ms':>10} {'emb/s':>8} {'preproc ms':>11} {'preproc share':>14}")
        for batch in args.batches:
            crops = _crops(rng, batch)
            repeats = max(2, args.min_images // batch)
            total = _timed(lambda crops=crops: engine.embed(crops), repeats)
            pre = _timed(lambda crops=crops: preprocess(crops, spec), repeats)
            print(f"{batch:>6} {1000 * total:>10.1f} {batch / total:>8.1f} {1000 * pre:>11.2f} {100 * pre / total:>13.1f}%")
        engine.close()


def bench_gallery(args) -> None:
    rng = np.random.default_rng(1)
    dim, per_identity = 512, 4
    try:
        import faiss  # noqa: F401

        indexes = ("numpy", "faiss")
    except ImportError:
        indexes = ("numpy",)
        print("faiss not installed: NumPy only")
    print(f"\ngallery search, {dim}-d, {per_identity} exemplars per identity, top-5 (ms per call, best of runs)")
    header = f"{'exemplars':>10} {'queries':>8}" + "".join(f" {name + ' ms':>10}" for name in indexes)
    print(header + f" {'faiss rebuild ms':>17}" if "faiss" in indexes else header)
    for size in args.sizes:
        identities = size // per_identity
        galleries = {name: Gallery(dim, max_exemplars=per_identity, capacity=identities, index=name) for name in indexes}
        feats = rng.standard_normal((identities, per_identity, dim)).astype(np.float32)
        for gallery in galleries.values():
            for i in range(identities):
                gallery.add(f"id{i}", feats[i])
        for n_queries in args.queries:
            queries = rng.standard_normal((n_queries, dim)).astype(np.float32)
            row = f"{size:>10} {n_queries:>8}"
            for gallery in galleries.values():
                row += f" {1000 * _timed(lambda g=gallery, q=queries: g.search(q, 5), 5):>10.2f}"
            if "faiss" in galleries:
                g = galleries["faiss"]

                def rebuild(g=g):
                    g.touch("id0")  # a touch does not change features ...
                    g._faiss_cache = None  # ... so force what any add/evict causes: a rebuild
                    g._faiss_index()

                row += f" {1000 * _timed(rebuild, 3):>17.2f}"
            print(row)
        del galleries


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, help="ONNX model (default: demo weights, else random-init DSLNet)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--min-images", type=int, default=32, help="images per measurement (sets the repeats)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 50_000], help="gallery exemplars")
    parser.add_argument("--queries", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--skip-engine", action="store_true")
    parser.add_argument("--skip-gallery", action="store_true")
    args = parser.parse_args(argv)
    if not args.skip_engine:
        bench_engine(args)
    if not args.skip_gallery:
        bench_gallery(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
