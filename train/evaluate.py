"""Evaluation: embeddings through the runtime's preprocessing, Rank-k / mAP / CMC, pictures.

``python -m train.evaluate --checkpoint runs/x/best.pt --data-root ../shared/data/cuhk03-pair1``

Protocol (paper section 4.2): single query, Market-1501 protocol (a gallery image of the query's
identity taken by the query's camera is removed), cosine distance on the L2-normalized 512-d
embeddings, optionally k-reciprocal re-ranking. Embeddings are computed from the original image
files through :func:`dslnet_edge.preprocessing.preprocess` - the same pixels the deployed model gets.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from dslnet_edge._cli import EXPECTED_ERRORS, parse_args_or_status, report_error
from dslnet_edge._io import atomic_write_bytes, atomic_write_text
from dslnet_edge.metrics import RankResult, cosine_distance, evaluate_rank
from dslnet_edge.preprocessing import preprocess
from dslnet_edge.spec import SPEC_METADATA_KEY, InputSpec
from train.data import READERS, DatasetError, ReidImage, read_bgr, read_dataset, read_image_folder

__all__ = [
    "EvalSet",
    "Embedder",
    "embed_images",
    "torch_embedder",
    "load_embedder",
    "evaluate_embeddings",
    "evaluate_sets",
    "save_cmc_plot",
    "save_ranked_picture",
    "main",
]

#: A function from a float32 ``[N, 3, H, W]`` batch (already preprocessed) to ``[N, D]`` embeddings.
Embedder = Callable[[np.ndarray], np.ndarray]


class LazyImages:
    """A read-on-access sequence of BGR images (large galleries need not sit in RAM)."""

    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [read_bgr(p) for p in self.paths[index]]
        return read_bgr(self.paths[index])


@dataclasses.dataclass
class EvalSet:
    """Query or gallery images (original size, BGR) with identities and cameras.

    ``preload=True`` decodes them once into RAM (the training loop evaluates the same images
    every few epochs); ``preload=False`` reads them from disk when embedding (one-off evaluation
    of large galleries).
    """

    images: Sequence[np.ndarray]
    pids: np.ndarray
    camids: np.ndarray
    paths: list[str]

    @classmethod
    def load(cls, items: Sequence[ReidImage], *, limit: int = 0, preload: bool = True) -> EvalSet:
        items = list(items)[:limit] if limit > 0 else list(items)
        paths = [im.path for im in items]
        return cls(
            images=[read_bgr(p) for p in paths] if preload else LazyImages(paths),
            pids=np.array([im.pid for im in items], dtype=np.int64),
            camids=np.array([im.camid for im in items], dtype=np.int64),
            paths=paths,
        )

    def __len__(self) -> int:
        return len(self.images)


def embed_images(images: Sequence[np.ndarray], spec: InputSpec, embed: Embedder, *, batch_size: int = 64) -> np.ndarray:
    """``[N, D]`` float32 embeddings of BGR crops, preprocessed per ``spec`` in batches."""
    if not len(images):
        raise ValueError("no images to embed")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    buffer = np.empty((min(batch_size, len(images)), *spec.input_shape), dtype=np.float32)
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = preprocess(list(images[start : start + batch_size]), spec, out=buffer)
        out = np.asarray(embed(batch), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(batch):
            raise ValueError(f"the model returned shape {out.shape} for a batch of {len(batch)}; expected [N, D]")
        chunks.append(out.copy())
    return np.concatenate(chunks)


def torch_embedder(model, *, device=None, channels_last: bool = True) -> Embedder:
    """A DSLNet (put in eval mode) as an :data:`Embedder`: the runtime's PyTorch backend on it."""
    from dslnet_edge.backends.torch_backend import TorchBackend

    device = device or next(model.parameters()).device
    return TorchBackend.from_model(model, device=str(device), channels_last=channels_last, source="the model").infer


def evaluate_embeddings(
    query: np.ndarray,
    gallery: np.ndarray,
    query_set: EvalSet,
    gallery_set: EvalSet,
    *,
    rerank: bool = False,
    max_rank: int = 50,
) -> tuple[RankResult, np.ndarray]:
    """Cosine distances (optionally k-reciprocal re-ranked) -> :class:`RankResult`, and the distances."""
    dist = cosine_distance(query, gallery)
    if rerank:
        from train.rerank import k_reciprocal_rerank

        dist = k_reciprocal_rerank(dist, cosine_distance(query, query), cosine_distance(gallery, gallery))
    result = evaluate_rank(dist, query_set.pids, gallery_set.pids, query_set.camids, gallery_set.camids,
                           max_rank=max_rank)
    return result, dist


def evaluate_sets(
    embed: Embedder,
    spec: InputSpec,
    query_set: EvalSet,
    gallery_set: EvalSet,
    *,
    batch_size: int = 64,
    rerank: bool = False,
) -> RankResult:
    """Embed both sets with ``embed`` and rank: the one evaluation path for checkpoints and peers."""
    q = embed_images(query_set.images, spec, embed, batch_size=batch_size)
    g = embed_images(gallery_set.images, spec, embed, batch_size=batch_size)
    return evaluate_embeddings(q, g, query_set, gallery_set, rerank=rerank)[0]


# ---------------------------------------------------------------------------------------------
# Models as embedders
# ---------------------------------------------------------------------------------------------
def onnx_input_spec(path: str | os.PathLike) -> InputSpec:
    """The InputSpec stored in an exported DSLNet ONNX file's metadata_props."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    meta = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).get_modelmeta()
    text = meta.custom_metadata_map.get(SPEC_METADATA_KEY)
    if text is None:
        raise ValueError(f"{path} has no {SPEC_METADATA_KEY!r} metadata: not a dslnet_edge export "
                         "(peer models are evaluated with python -m train.peers)")
    return InputSpec.from_json(text)


def load_embedder(path: str | os.PathLike, *, threads: int = 0) -> tuple[Embedder, InputSpec]:
    """A checkpoint (``.pt``) or an exported ONNX file (``.onnx``) -> (embedder, its InputSpec)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model {path} does not exist")
    if path.suffix == ".onnx":
        from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

        spec = onnx_input_spec(path)  # refuses a foreign ONNX with the hint to use train.peers
        return OnnxRuntimeBackend(path, device="cpu", intra_op_threads=threads or None).infer_all, spec
    import torch

    from dslnet_edge.model.checkpoint import load_model

    if threads:
        torch.set_num_threads(threads)
    model = load_model(path)
    model.to(memory_format=torch.channels_last)
    return torch_embedder(model, device=torch.device("cpu")), model.spec


# ---------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------
def save_cmc_plot(results: dict[str, RankResult], path: str | os.PathLike, *, max_rank: int = 20, title: str = "") -> None:
    """CMC curves (Rank-k against k) of one or more models as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for name, result in results.items():
        ranks = np.arange(1, min(max_rank, result.cmc.size) + 1)
        ax.plot(ranks, result.cmc[: ranks.size], marker="o", markersize=3,
                label=f"{name} (R1 {result.rank1:.3f}, mAP {result.mAP:.3f})")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("rank k")
    ax.set_ylabel("matching rate (Rank-k)")
    ax.set_ylim(0, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title or "CMC", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def save_ranked_picture(
    dist: np.ndarray,
    query_set: EvalSet,
    gallery_set: EvalSet,
    path: str | os.PathLike,
    *,
    queries: Sequence[int] | None = None,
    topk: int = 10,
    tile: tuple[int, int] = (128, 64),
) -> None:
    """One row per query: the query (blue border), then its top-k gallery images under the
    evaluation protocol (same identity and camera removed), green border = correct, red = wrong."""
    if queries is None:
        queries = np.linspace(0, len(query_set) - 1, num=min(8, len(query_set))).round().astype(int)
    h, w = tile
    border = 4
    rows = []

    def framed(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
        resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        return cv2.copyMakeBorder(resized, border, border, border, border, cv2.BORDER_CONSTANT, value=colour)

    gap = np.full((h + 2 * border, 12, 3), 255, np.uint8)
    for qi in queries:
        order = np.argsort(dist[qi], kind="stable")
        same = (gallery_set.pids[order] == query_set.pids[qi]) & (gallery_set.camids[order] == query_set.camids[qi])
        order = order[~same][:topk]
        tiles = [framed(query_set.images[qi], (255, 0, 0)), gap]  # BGR: blue
        for gi in order:
            ok = gallery_set.pids[gi] == query_set.pids[qi]
            tiles.append(framed(gallery_set.images[gi], (0, 170, 0) if ok else (0, 0, 220)))
        while len(tiles) < topk + 2:
            tiles.append(np.full_like(tiles[0], 255))
        rows.append(np.concatenate(tiles, axis=1))
    sheet = np.concatenate([np.pad(r, ((3, 3), (0, 0), (0, 0)), constant_values=255) for r in rows], axis=0)
    ok, buf = cv2.imencode(".png", sheet)
    if not ok:
        raise ValueError(f"could not encode the ranked-retrieval picture for {path}")
    atomic_write_bytes(path, buf.tobytes())


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EvalConfig:
    model: str
    data_root: str
    dataset: str = "market1501"
    output: str = ""
    rerank: bool = False
    batch_size: int = 64
    threads: int = 0
    max_images: int = 0
    plots: bool = True

    def __post_init__(self) -> None:
        for name, low in (("batch_size", 1), ("threads", 0), ("max_images", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be an integer >= {low}, got {value!r}" + (" (0 = all)" if name == "max_images" else ""))


def read_eval_sets(dataset: str, root: str | os.PathLike) -> tuple[str, tuple[ReidImage, ...], tuple[ReidImage, ...]]:
    """``(dataset name, query, gallery)``: evaluation reads only what it uses.

    A root with ``query/`` and ``bounding_box_test/`` (the Market-1501 layout, which DukeMTMC-reID
    and exported CUHK03 subsets share) is read without its training folders, which may be absent
    or empty; other layouts (CUHK03 ``.mat``/nested, MSMT17 lists) go through their reader.
    """
    if dataset not in READERS:
        raise DatasetError(f"unknown dataset {dataset!r}; choose from {sorted(READERS)}")
    root = Path(root)
    if (root / "query").is_dir() and (root / "bounding_box_test").is_dir():
        return dataset, tuple(read_image_folder(root / "query")), tuple(read_image_folder(root / "bounding_box_test"))
    split = read_dataset(dataset, root)
    if not split.has_eval:
        raise DatasetError(f"{root} has no query/gallery images to evaluate on")
    return split.name, split.query, split.gallery


def run_evaluation(cfg: EvalConfig) -> dict:
    """Evaluate one model on a dataset's query/gallery; write results.json (+ PNGs); return the results."""
    embed, spec = load_embedder(cfg.model, threads=cfg.threads)
    dataset, query, gallery = read_eval_sets(cfg.dataset, cfg.data_root)
    query_set = EvalSet.load(query, limit=cfg.max_images, preload=False)
    gallery_set = EvalSet.load(gallery, limit=cfg.max_images, preload=False)
    q = embed_images(query_set.images, spec, embed, batch_size=cfg.batch_size)
    g = embed_images(gallery_set.images, spec, embed, batch_size=cfg.batch_size)
    results = {}
    dists = {}
    for name, rerank in (("cosine", False), ("cosine+rerank", True)):
        if rerank and not cfg.rerank:
            continue
        results[name], dists[name] = evaluate_embeddings(q, g, query_set, gallery_set, rerank=rerank)
    output = Path(cfg.output) if cfg.output else Path(cfg.model).with_suffix("").parent / f"eval_{Path(cfg.model).stem}"
    report = {
        "model": str(cfg.model),
        "data_root": str(cfg.data_root),
        "dataset": dataset,
        "input": f"{spec.height}x{spec.width} {spec.channel_order}",
        "num_query": len(query_set),
        "num_gallery": len(gallery_set),
        "protocol": "single query, Market-1501 (same id + same camera removed), cosine distance",
        "results": {name: {**r.to_dict(), "cmc": [round(float(v), 5) for v in r.cmc[:20]]} for name, r in results.items()},
    }
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / "results.json", json.dumps(report, indent=2) + "\n")
    if cfg.plots:
        save_cmc_plot(results, output / "cmc.png", title=f"{Path(cfg.model).name} on {dataset}")
        last = list(dists)[-1]
        save_ranked_picture(dists[last], query_set, gallery_set, output / "ranked.png")
    report["output"] = str(output)
    return report


def format_table(rows: Sequence[tuple[str, RankResult | dict]]) -> str:
    """A plain-text table of Rank-1/5/10 and mAP."""
    lines = [f"{'model':<44} {'Rank-1':>7} {'Rank-5':>7} {'Rank-10':>8} {'mAP':>7}"]
    for name, r in rows:
        d = r.to_dict() if isinstance(r, RankResult) else r
        lines.append(f"{name:<44} {d['rank1']:>7.3f} {d.get('rank5', float('nan')):>7.3f} "
                     f"{d.get('rank10', float('nan')):>8.3f} {d['mAP']:>7.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", "--model", dest="model", required=True,
                        help="a dslnet_edge checkpoint (.pt) or exported ONNX (.onnx)")
    parser.add_argument("--data-root", required=True, help="dataset folder with query/ and bounding_box_test/")
    parser.add_argument("--dataset", default="market1501", help="layout: market1501, dukemtmc, cuhk03, msmt17")
    parser.add_argument("--output", default="", help="folder for results.json, cmc.png, ranked.png "
                        "(default: eval_<model name> beside the model)")
    parser.add_argument("--rerank", action="store_true", help="also report k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--max-images", type=int, default=0, help="only the first N query and gallery images")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parse_args_or_status(parser, argv)
    if isinstance(args, int):  # a bad argument (one line printed) or --help
        return args

    try:
        cfg = EvalConfig(args.model, args.data_root, args.dataset, args.output, args.rerank, args.batch_size,
                         args.threads, args.max_images, not args.no_plots)
        report = run_evaluation(cfg)
    except EXPECTED_ERRORS as exc:  # the project's errors (ConfigError, DatasetError, ...), bad values, files
        return report_error(exc, status=2)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['dataset']}: {report['num_query']} queries, {report['num_gallery']} gallery images, "
              f"input {report['input']}")
        print(format_table([(f"{Path(cfg.model).name} [{name}]", r) for name, r in report["results"].items()]))
        print(f"written: {report['output']}/results.json" + (", cmc.png, ranked.png" if cfg.plots else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
