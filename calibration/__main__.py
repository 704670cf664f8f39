"""``python -m calibration``: FP32 ONNX + person crops -> gated Q/DQ INT8 ONNX for TensorRT.

    python -m calibration --onnx model.onnx --crops DIR [--holdout DIR] --out model.int8.onnx \\
        [--num-images 256] [--method minmax|entropy|percentile]

Prints the quantization summary and the gate report. Exit status: 0 the INT8 model passed the
gate and was written; 3 the gate failed (one line on stderr with the numbers and thresholds,
nothing written at --out, the report kept in ``<out stem>.gate.json``); 1 any other error
(one line: missing file, empty folder, ONNX without InputSpec metadata ...); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from calibration.errors import GateFailure
from dslnet_edge._cli import EXPECTED_ERRORS, log_to_console, parse_args_or_status, report_error

_log = logging.getLogger(__name__)
GATE_FAILED = 3


@dataclasses.dataclass(frozen=True)
class CliConfig:
    onnx: Path
    crops: Path
    out: Path
    holdout: Path | None
    num_holdout: int
    quantize: object  # calibration.quantization.QuantizeConfig
    thresholds: object  # calibration.gate.GateThresholds


def build_parser() -> argparse.ArgumentParser:
    from calibration.quantization import DEFAULT_EXCLUDE, METHODS

    parser = argparse.ArgumentParser(
        prog="python -m calibration",
        description="INT8 calibration for TensorRT: quantize an FP32 DSLNet ONNX into a Q/DQ ONNX from real person "
        "crops, then gate it against the FP32 model on held-out crops (exit 3 if it lost too much accuracy).",
    )
    parser.add_argument("--onnx", type=Path, required=True, help="plain FP32 ONNX (python -m export.onnx)")
    parser.add_argument("--crops", type=Path, required=True, help="folder of person crops to calibrate on (recursive)")
    parser.add_argument("--out", type=Path, default=None, help="Q/DQ ONNX to write (default: <onnx stem>.int8.onnx)")
    parser.add_argument("--holdout", type=Path, default=None,
                        help="crops the gate judges on (default: --crops minus the calibration crops); Market-style "
                        "names (<pid>_c<cam>_...) or query/ + bounding_box_test/ folders add Rank-1/mAP")
    parser.add_argument("--num-images", type=int, default=256, help="calibration crops (default 256)")
    parser.add_argument("--num-holdout", type=int, default=256, help="held-out crops for the gate (default 256)")
    parser.add_argument("--method", choices=METHODS, default="minmax", help="calibration method (default minmax)")
    parser.add_argument("--percentile", type=float, default=99.999, help="for --method percentile (default 99.999)")
    parser.add_argument("--exclude", action="append", default=[], metavar="REGEX",
                        help="keep nodes whose name matches REGEX in float (repeatable; added to the defaults)")
    parser.add_argument("--no-default-exclude", action="store_true",
                        help=f"drop the default float islands ({', '.join(DEFAULT_EXCLUDE)})")
    parser.add_argument("--per-tensor-weights", action="store_true", help="one scale per weight tensor, not per channel")
    parser.add_argument("--no-cache", action="store_true", help="ignore and do not write the activation-range cache")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="crop sampling seed (default 0)")
    parser.add_argument("--min-mean-cosine", type=float, default=None, help="gate: mean cosine INT8 vs FP32 (default 0.95)")
    parser.add_argument("--min-cosine", type=float, default=None, help="gate: worst single-crop cosine (default 0.80)")
    parser.add_argument("--max-rank1-drop", type=float, default=None, metavar="POINTS", help="gate: Rank-1 loss (default 2)")
    parser.add_argument("--max-map-drop", type=float, default=None, metavar="POINTS", help="gate: mAP loss (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads for the gate (default: all cores)")
    return parser


def config_from_args(args: argparse.Namespace) -> CliConfig:
    from calibration.gate import GateThresholds
    from calibration.quantization import DEFAULT_EXCLUDE, QuantizeConfig

    exclude = tuple(args.exclude) if args.no_default_exclude else (*DEFAULT_EXCLUDE.values(), *args.exclude)
    quantize = QuantizeConfig(
        num_images=args.num_images, method=args.method, percentile=args.percentile, per_channel=not args.per_tensor_weights,
        exclude=exclude, batch_size=args.batch_size, seed=args.seed, use_cache=not args.no_cache,
    )
    defaults = GateThresholds()
    points = {"max_rank1_drop": args.max_rank1_drop, "max_map_drop": args.max_map_drop}
    thresholds = GateThresholds(
        min_mean_cosine=defaults.min_mean_cosine if args.min_mean_cosine is None else args.min_mean_cosine,
        min_cosine=defaults.min_cosine if args.min_cosine is None else args.min_cosine,
        **{k: getattr(defaults, k) if v is None else v / 100.0 for k, v in points.items()},
    )
    out = args.out if args.out is not None else args.onnx.with_name(args.onnx.stem + ".int8.onnx")
    return CliConfig(args.onnx, args.crops, out, args.holdout, args.num_holdout, quantize, thresholds)


def run(config: CliConfig):
    from calibration.pipeline import calibrate

    result = calibrate(config.onnx, config.crops, config.out, holdout_dir=config.holdout, config=config.quantize,
                       thresholds=config.thresholds, num_holdout=config.num_holdout)
    _log.info(result.gate.format())
    _log.info(f"wrote {result.path} and {result.gate_path}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args_or_status(parser, argv)
    if isinstance(args, int):
        return args
    try:
        with log_to_console("stdout"):
            run(config_from_args(args))
    except GateFailure as exc:
        if exc.result is not None:
            print(exc.result.format())
        return report_error(exc, status=GATE_FAILED)
    except EXPECTED_ERRORS as exc:
        return report_error(exc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
