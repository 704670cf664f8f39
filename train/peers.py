"""Peer Re-ID models measured with the same evaluation code as DSLNet: ``python -m train.peers``.

The peers are Intel Open Model Zoo person re-identification models (Apache-2.0) in
``../shared/peers/openvino-omz``:

| model | file | input | normalization |
| --- | --- | --- | --- |
| person-reidentification-retail-0267 | ``.mvn_eps_patched.onnx`` (ONNX Runtime) | RGB | ImageNet mean/std, applied here (not in the graph) |
| person-reidentification-retail-0287 | OpenVINO IR ``.xml``/``.bin`` | BGR 0-255 | inside the graph |
| person-reidentification-retail-0288 | OpenVINO IR ``.xml``/``.bin`` | BGR 0-255 | inside the graph |
| person-reidentification-retail-0277 | OpenVINO IR (FP16 weights) | BGR 0-255 | inside the graph |
| person-reidentification-retail-0286 | OpenVINO IR (FP16 weights) | BGR 0-255 | inside the graph |
| 0277 + 0286 ensemble | both IRs | BGR 0-255 | each embedding L2-normalized, concatenated, / sqrt(2) |

The ensemble is the teacher of the distilled DSLNet weights (``train.distill.ensemble_embed``, the
same function that makes the distillation targets).

(The original 0267 ONNX gives NaN in ONNX Runtime: MeanVarianceNormalization without an epsilon;
the patched file adds it.) The IR models need the optional ``openvino`` package; without it they
are reported as skipped. Every model gets its crops through :func:`dslnet_edge.preprocessing.preprocess`
with its own :class:`InputSpec` (size, channel order), then the same cosine-distance ranking.

    python -m train.peers --data-root ../shared/data/cuhk03-pair1 [--checkpoint runs/x/best.pt]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from dslnet_edge._cli import EXPECTED_ERRORS, log_to_console, parse_args_or_status, report_error
from dslnet_edge.metrics import RankResult
from dslnet_edge.spec import InputSpec
from train.evaluate import (  # openvino_embedder is re-exported: it was defined here
    Embedder,
    EvalSet,
    evaluate_sets,
    format_table,
    load_embedder,
    onnx_embedder,
    openvino_embedder,
)

__all__ = ["PeerModel", "PEERS", "evaluate_peers", "openvino_embedder", "main"]

_log = logging.getLogger(__name__)
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclasses.dataclass(frozen=True)
class PeerModel:
    name: str
    file: str  # relative to the peers folder
    spec: InputSpec
    runtime: str  # "onnxruntime" | "openvino"
    mean_std: tuple | None = None  # normalization applied before the graph (0-1 units), or None
    members: tuple[str, ...] = ()  # runtime "ensemble": the member files (relative to the peers folder)

    @property
    def files(self) -> tuple[str, ...]:
        return self.members or (self.file,)


PEERS: tuple[PeerModel, ...] = (
    PeerModel("person-reidentification-retail-0288", "person-reidentification-retail-0288.xml",
              InputSpec(channel_order="BGR", feature_dim=256, l2_normalized=False), "openvino"),
    PeerModel("person-reidentification-retail-0287", "person-reidentification-retail-0287.xml",
              InputSpec(channel_order="BGR", feature_dim=256, l2_normalized=False), "openvino"),
    PeerModel("person-reidentification-retail-0267", "person-reidentification-retail-0267.mvn_eps_patched.onnx",
              InputSpec(channel_order="RGB", normalization_in_model=False, feature_dim=256, l2_normalized=False),
              "onnxruntime", _IMAGENET),
    PeerModel("person-reidentification-retail-0277", "person-reidentification-retail-0277.xml",
              InputSpec(channel_order="BGR", feature_dim=256, l2_normalized=False), "openvino"),
    PeerModel("person-reidentification-retail-0286", "person-reidentification-retail-0286.xml",
              InputSpec(channel_order="BGR", feature_dim=256, l2_normalized=False), "openvino"),
    PeerModel("omz-0277+0286-ensemble", "", InputSpec(channel_order="BGR", feature_dim=512), "ensemble",
              members=("person-reidentification-retail-0277.xml", "person-reidentification-retail-0286.xml")),
)


def _peer_embedder(peer: PeerModel, folder: Path, threads: int) -> Embedder:
    for name in peer.files:
        if not (folder / name).exists():
            raise FileNotFoundError(f"peer model {folder / name} does not exist")
    if peer.runtime == "ensemble":
        from train.distill import ensemble_embed

        members = [openvino_embedder(folder / name, threads=threads) for name in peer.members]
        return lambda batch: ensemble_embed(members, batch)
    path = folder / peer.file
    if peer.runtime == "openvino":
        return openvino_embedder(path, threads=threads)
    return onnx_embedder(path, threads=threads, mean_std=peer.mean_std)


@dataclasses.dataclass(frozen=True)
class PeerRow:
    name: str
    result: RankResult | None
    note: str = ""


def evaluate_peers(
    data_root: str | Path,
    peers_dir: str | Path,
    *,
    names: list[str] | None = None,
    checkpoints: list[str] = (),
    dataset: str = "market1501",
    threads: int = 0,
    max_images: int = 0,
) -> list[PeerRow]:
    """Evaluate the chosen peers (and optional DSLNet checkpoints/ONNX) on one query/gallery split."""
    from train.evaluate import read_eval_sets

    for name, value in (("max_images", max_images), ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 0, got {value!r}")
    chosen = [p for p in PEERS if names is None or any(n in p.name for n in names)]
    if names and not chosen:
        raise ValueError(f"no peer matches {names}; known: {[p.name for p in PEERS]}")
    for peer in chosen:  # fail before the (slow) image loading
        for name in peer.files:
            if not (Path(peers_dir) / name).exists():
                raise FileNotFoundError(f"peer model {Path(peers_dir) / name} does not exist")
    for ckpt in checkpoints:
        if not Path(ckpt).exists():
            raise FileNotFoundError(f"model {ckpt} does not exist")
    dataset_name, query, gallery = read_eval_sets(dataset, data_root)  # the training folders are not needed
    query_set = EvalSet.load(query, limit=max_images)
    gallery_set = EvalSet.load(gallery, limit=max_images)
    _log.info(f"{dataset_name}: {len(query_set)} queries, {len(gallery_set)} gallery images")
    rows = []
    for peer in chosen:
        try:
            embed = _peer_embedder(peer, Path(peers_dir), threads)
        except ImportError as exc:
            rows.append(PeerRow(peer.name, None, f"skipped: {exc}"))
            continue
        _log.info(f"evaluating {peer.name} ({peer.runtime})")
        rows.append(PeerRow(peer.name, evaluate_sets(embed, peer.spec, query_set, gallery_set, batch_size=32)))
    for ckpt in checkpoints:
        embed, spec = load_embedder(ckpt, threads=threads)
        _log.info(f"evaluating {ckpt}")
        rows.append(PeerRow(Path(ckpt).name, evaluate_sets(embed, spec, query_set, gallery_set)))
    return rows


def _default(path: str) -> str:
    here = Path(__file__).resolve().parents[1]
    return str((here.parent / path) if (here.parent / path).exists() else Path("..") / path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=_default("shared/data/cuhk03-pair1"))
    parser.add_argument("--dataset", default="market1501")
    parser.add_argument("--peers-dir", default=_default("shared/peers/openvino-omz"))
    parser.add_argument("--models", help="comma-separated peer names or parts (e.g. 0267,0287); default all")
    parser.add_argument("--checkpoint", action="append", default=[],
                        help="also evaluate a DSLNet checkpoint (.pt) or ONNX export (repeatable)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--max-images", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parse_args_or_status(parser, argv)
    if isinstance(args, int):  # a bad argument (one line printed) or --help
        return args

    names = [n.strip() for n in args.models.split(",")] if args.models else None
    try:
        with log_to_console("stderr"):
            rows = evaluate_peers(args.data_root, args.peers_dir, names=names, checkpoints=args.checkpoint,
                                  dataset=args.dataset, threads=args.threads, max_images=args.max_images)
    except EXPECTED_ERRORS as exc:  # the project's errors (ConfigError, DatasetError, ...), bad values, files
        return report_error(exc, status=2)
    if args.json:
        print(json.dumps({r.name: (r.result.to_dict() if r.result else {"note": r.note}) for r in rows}, indent=2))
        return 0
    print(format_table([(r.name, r.result) for r in rows if r.result is not None]))
    for r in rows:
        if r.result is None:
            print(f"{r.name}: {r.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
