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
from dslnet_edge.bench.peers import PEERS as SINGLE_PEERS
from dslnet_edge.bench.peers import PeerModel, peer_backend
from dslnet_edge.metrics import RankResult
from dslnet_edge.spec import InputSpec
from train.evaluate import Embedder, EvalSet, evaluate_sets, format_table, load_embedder

__all__ = ["PeerModel", "EnsemblePeer", "PEERS", "evaluate_peers", "main"]

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EnsemblePeer:
    """Several peers as one model: each embedding L2-normalized, concatenated, / sqrt(#members)."""

    name: str
    members: tuple[PeerModel, ...]

    @property
    def spec(self) -> InputSpec:
        return self.members[0].spec.replace(feature_dim=sum(m.spec.feature_dim for m in self.members))


def _files(peer: PeerModel | EnsemblePeer) -> tuple[str, ...]:
    return tuple(m.file for m in peer.members) if isinstance(peer, EnsemblePeer) else (peer.file,)


_BY_NAME = {p.name: p for p in SINGLE_PEERS}
#: The five OMZ peers (one list, :data:`dslnet_edge.bench.peers.PEERS`) and the 0277 + 0286 ensemble.
PEERS: tuple[PeerModel | EnsemblePeer, ...] = (
    *SINGLE_PEERS,
    EnsemblePeer("omz-0277+0286-ensemble", (_BY_NAME["person-reidentification-retail-0277"],
                                            _BY_NAME["person-reidentification-retail-0286"])),
)


def _peer_embedder(peer: PeerModel | EnsemblePeer, folder: Path, threads: int) -> Embedder:
    """The peer through the runtime's backends, in FP32 (the accuracy table's precision)."""
    for name in _files(peer):
        if not (folder / name).exists():
            raise FileNotFoundError(f"peer model {folder / name} does not exist")
    if isinstance(peer, EnsemblePeer):
        from train.distill import ensemble_embed

        members = [peer_backend(m, folder, threads=threads, precision="f32").infer_all for m in peer.members]
        return lambda batch: ensemble_embed(members, batch)
    return peer_backend(peer, folder, threads=threads, precision="f32").infer_all


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
        for name in _files(peer):
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
        _log.info(f"evaluating {peer.name} ({getattr(peer, 'runtime', 'ensemble')}, FP32)")
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
