"""``python -m train.run``: train DSLNet (from scratch, fine-tune, resume).

Examples::

    # from scratch (paper 4.2, SGD + cosine, 350 epochs, cross-entropy + auxiliary branch)
    python -m train.run --data-root ../shared/data/cuhk03-pair1 --output runs/cuhk03

    # a YAML recipe, with overrides
    python -m train.run --config configs/cuhk03_warmup_128x64.yaml --set optim.lr=0.05

    # continue a run (from runs/cuhk03/last.pt, with its saved configuration)
    python -m train.run --output runs/cuhk03 --resume

    # fine-tune at 256x128 from a 128x64 run (weights reused, new input size)
    python -m train.run --recipe fine_tune --init-from runs/warmup/best.pt --height 256 --width 128 ...

    # distillation from teacher models (OpenVINO IR or ONNX), validation on held-out training identities
    python -m train.run --config configs/distill_128x64.yaml \
        --teacher ../shared/peers/openvino-omz/person-reidentification-retail-0277.xml \
        --teacher ../shared/peers/openvino-omz/person-reidentification-retail-0286.xml

    # several GPUs
    torchrun --nproc_per_node 4 -m train.run --config configs/x.yaml

Every expected failure (bad data folder, bad config key, unreadable checkpoint) prints one line
``error: ...`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dslnet_edge._cli import EXPECTED_ERRORS, log_to_console, parse_args_or_status, report_error

__all__ = ["main", "build_parser", "config_from_args"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train.run",
        description="Train DSLNet for person re-identification (paper sections 3.3 and 4.2).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Configuration precedence: defaults < --recipe < --config YAML < flags and --set.",
    )
    parser.add_argument("--config", action="append", default=[], metavar="YAML",
                        help="YAML file with sections data/model/optim/schedule/loss/run (repeatable)")
    parser.add_argument("--recipe", choices=("from_scratch", "fine_tune", "distill"),
                        help="paper section 4.2 recipe, or distillation from --teacher models")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override one key, e.g. --set optim.lr=0.01 --set data.augment.erase=0")
    flags = parser.add_argument_group("common settings (shortcuts for --set)")
    flags.add_argument("--data-root", help="dataset folder (data.root)")
    flags.add_argument("--dataset", help="dataset layout (data.dataset): market1501, dukemtmc, cuhk03, msmt17")
    flags.add_argument("--output", help="run folder for checkpoints, config.yaml and metrics.csv (run.output)")
    flags.add_argument("--epochs", type=int, help="schedule.epochs")
    flags.add_argument("--lr", type=float, help="optim.lr")
    flags.add_argument("--optimizer", choices=("sgd", "amsgrad", "adam"), help="optim.name")
    flags.add_argument("--height", type=int, help="training input height (data.height; the InputSpec)")
    flags.add_argument("--width", type=int, help="training input width (data.width)")
    flags.add_argument("--threads", type=int, help="torch.set_num_threads (run.threads)")
    flags.add_argument("--device", help="auto, cpu, cuda, cuda:N (run.device)")
    flags.add_argument("--eval-every", type=int, help="evaluate every N epochs (run.eval_every)")
    flags.add_argument("--seed", type=int, help="run.seed")
    flags.add_argument("--init-from", metavar="CKPT", help="take weights from a checkpoint (model.init_from)")
    flags.add_argument("--teacher", action="append", metavar="MODEL",
                       help="teacher model for distillation, OpenVINO IR .xml or ONNX (repeatable; distill.teachers)")
    flags.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch)")
    parser.add_argument("--resume", nargs="?", const="auto", metavar="CKPT",
                        help="continue from --output's last.pt, or from the given checkpoint/folder")
    parser.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    return parser


_FLAG_KEYS = {
    "data_root": "data.root",
    "dataset": "data.dataset",
    "output": "run.output",
    "epochs": "schedule.epochs",
    "lr": "optim.lr",
    "optimizer": "optim.name",
    "height": "data.height",
    "width": "data.width",
    "threads": "run.threads",
    "device": "run.device",
    "eval_every": "run.eval_every",
    "seed": "run.seed",
    "init_from": "model.init_from",
}


def _nest(dotted: str, value) -> dict:
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


def config_from_args(args: argparse.Namespace):
    """Resolve the configuration (and, for --resume, read the saved one as the base)."""
    from dslnet_edge.model.checkpoint import load_checkpoint
    from train.config import parse_override, resolve_config
    from train.loop import find_resume_checkpoint

    overrides = [parse_override(text) for text in args.overrides]
    for attr, key in _FLAG_KEYS.items():
        value = getattr(args, attr)
        if value is not None:
            overrides.append(_nest(key, value))
    if args.teacher:
        overrides.append({"distill": {"teachers": list(args.teacher)}})
    if args.no_progress:
        overrides.append({"run": {"progress": False}})
    base = None
    if args.resume:
        from train.config import TrainConfig

        # the run folder may come from --output, --set run.output or a config file
        output = resolve_config(recipe=args.recipe, yaml_files=args.config, overrides=overrides).run.output
        payload = load_checkpoint(find_resume_checkpoint(args.resume, Path(output)))
        saved = payload.get("train_config")
        base = TrainConfig.from_dict(saved).to_dict() if saved else None
    return resolve_config(base=base, recipe=args.recipe, yaml_files=args.config, overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args_or_status(build_parser(), argv)
    if isinstance(args, int):  # a bad argument (one line printed) or --help
        return args
    # Expected failures -> one line. Imported lazily so --help stays fast.

    try:
        cfg = config_from_args(args)
        if args.print_config:
            import yaml

            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        from train.loop import fit

        with log_to_console("stderr"):
            result = fit(cfg, resume=args.resume)
    except EXPECTED_ERRORS as exc:  # the project's errors (ConfigError, DatasetError, ...), bad values, files
        return report_error(exc, status=2)
    except KeyboardInterrupt:
        print("interrupted: the last finished epoch is in last.pt; continue with --resume", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") != "0":  # torchrun: one summary line, from rank 0
        return 0
    best = f", best {result.best_metric:.4f} in {result.best_checkpoint}" if result.best_metric is not None else ""
    print(f"done: {result.epochs_done} epochs, last checkpoint {result.last_checkpoint}{best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
