"""Package a training checkpoint as release weights: ``python -m export.release``.

A training checkpoint (``best.pt``) carries optimizer state, classifiers and the auxiliary branch:
~12 MB of which inference needs a third. A release is three files side by side:

* ``NAME.pt``   - inference-only checkpoint, weights in float16 (loads as float32), with the
  training metrics and provenance;
* ``NAME.onnx`` - the FP32 ONNX exported *from that float16 checkpoint* (so the two give the same
  embeddings), checked against PyTorch on random inputs and real crops like every export;
* ``NAME.json`` - the model card: input contract, metrics, where the weights came from, terms.

This is how the bundled demo weights (``dslnet_edge/weights/dslnet_cuhk03.*``) are made::

    python -m export.release --checkpoint runs/cuhk03_256x128/best.pt --out-dir dslnet_edge/weights \\
        --name dslnet_cuhk03 --terms "CUHK03: non-commercial research only"
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from dslnet_edge._io import atomic_write_text, file_sha256

__all__ = ["ReleaseConfig", "release", "main"]

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ReleaseConfig:
    checkpoint: Path
    out_dir: Path
    name: str
    terms: str = ""
    metrics: dict | None = None  # evaluation results to record (e.g. from train.evaluate's results.json)
    crops_dir: Path | None = None
    num_crops: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if not self.name or any(c in self.name for c in "/\\") or self.name.startswith("."):
            raise ValueError(f"--name must be a plain file stem such as dslnet_cuhk03, got {self.name!r}")


def release(config: ReleaseConfig) -> dict[str, Path]:
    """Write ``NAME.pt``, ``NAME.onnx`` and ``NAME.json`` into ``config.out_dir``; returns their paths."""
    from dslnet_edge.model.checkpoint import load_checkpoint, load_model, model_from_checkpoint, save_checkpoint
    from export.onnx import OnnxExportConfig, export_checked

    payload = load_checkpoint(config.checkpoint)
    model = model_from_checkpoint(payload, source=str(config.checkpoint)).eval()
    source_sha = file_sha256(config.checkpoint)
    provenance = {
        "source_checkpoint": config.checkpoint.name,
        "source_sha256": source_sha,
        "epoch": payload.get("epoch"),
        "dataset": payload.get("dataset"),
        "train_config": payload.get("train_config"),
    }
    training_metrics = payload.get("metrics") or {}
    out = {kind: config.out_dir / f"{config.name}.{kind}" for kind in ("pt", "onnx", "json")}
    save_checkpoint(
        out["pt"], model, inference_only=True, half=True,
        metrics=training_metrics, provenance=provenance, terms=config.terms,
    )
    _log.info(f"wrote {out['pt']} ({out['pt'].stat().st_size / 1e6:.1f} MB, float16 inference-only)")
    released = load_model(out["pt"])  # export what users get: the float16-rounded weights
    export_checked(
        released,
        OnnxExportConfig(checkpoint=out["pt"], out=out["onnx"], crops_dir=config.crops_dir, num_crops=config.num_crops),
    )
    _log.info(f"wrote {out['onnx']} ({out['onnx'].stat().st_size / 1e6:.1f} MB, FP32 ONNX)")
    card = {
        "name": config.name,
        "architecture": "DSLNet (Wang et al., ACCV 2020)",
        "input_spec": released.spec.to_dict(),
        "model_config": released.config.to_dict(),
        "files": {kind: path.name for kind, path in out.items() if kind != "json"},
        "sha256": {out["pt"].name: file_sha256(out["pt"]), out["onnx"].name: file_sha256(out["onnx"])},
        "training": {
            "dataset": payload.get("dataset"),
            "epoch": payload.get("epoch"),
            "train_metrics": {k: training_metrics[k] for k in ("loss", "acc", "rank1", "mAP") if k in training_metrics},
            "source_sha256": source_sha,
        },
        "recipe": _recipe(payload.get("train_config") or {}),
        "evaluation": config.metrics or {},
        "terms": config.terms,
    }
    atomic_write_text(out["json"], json.dumps(card, indent=2, sort_keys=True) + "\n")
    _log.info(f"wrote {out['json']}")
    return out


def _recipe(train_config: dict) -> dict:
    """What the model card says about how the weights were trained (recipe, data, teachers)."""
    data = train_config.get("data") or {}
    recipe = {
        "recipe": train_config.get("recipe"),
        "input": f"{data.get('height')}x{data.get('width')}",
        "train_dirs": data.get("train_dirs"),
        "validation": (f"{data['val_identities']} training identities held out (best.pt chosen on them; "
                       "the dataset's query/gallery never read)") if data.get("val_identities") else "dataset query/gallery",
        "init_from": (train_config.get("model") or {}).get("init_from") or None,
        "optimizer": train_config.get("optim"),
        "epochs": (train_config.get("schedule") or {}).get("epochs"),
        "loss": train_config.get("loss"),
    }
    distill = train_config.get("distill") or {}
    if distill.get("teachers"):
        recipe["distillation"] = {
            "teachers": [Path(t).name for t in distill["teachers"]],
            "feature_weight": distill.get("feature_weight"),
            "relational_weight": distill.get("relational_weight"),
            "temperature": distill.get("temperature"),
        }
    return recipe


def main(argv: list[str] | None = None) -> int:
    import argparse

    from export._cli import EXPECTED_ERRORS, log_to_console, parse_args_or_status, report_error

    parser = argparse.ArgumentParser(prog="python -m export.release", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="training checkpoint (best.pt)")
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for NAME.pt, NAME.onnx, NAME.json")
    parser.add_argument("--name", required=True, help="file stem, e.g. dslnet_cuhk03")
    parser.add_argument("--terms", default="", help="licence/usage terms recorded in the model card")
    parser.add_argument("--metrics", type=Path, default=None, help="evaluation results JSON to record in the card")
    parser.add_argument("--crops", type=Path, default=None, help="person crops for the export parity check")
    args = parse_args_or_status(parser, argv)
    if isinstance(args, int):
        return args
    try:
        metrics = None
        if args.metrics is not None:
            try:
                metrics = json.loads(Path(args.metrics).read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"--metrics {args.metrics} is not valid JSON: {exc}") from None
        with log_to_console("stdout"):
            release(ReleaseConfig(args.checkpoint, args.out_dir, args.name, args.terms, metrics, args.crops))
    except EXPECTED_ERRORS as exc:
        return report_error(exc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
