"""``python -m dslnet_edge.model``: parameters, multiply-adds, stage shapes, hyper-parameters."""

from __future__ import annotations

import argparse
import json
import sys

from dslnet_edge._cli import EXPECTED_ERRORS, parse_args_or_status, report_error
from dslnet_edge.model.dslnet import ATTENTIONS, build_dslnet
from dslnet_edge.spec import InputSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dslnet_edge.model", description=__doc__)
    parser.add_argument("--attention", choices=ATTENTIONS, default="css", help="attention variant (Table 5)")
    parser.add_argument("--no-dense", action="store_true", help="remove the dense connections (Table 4)")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--num-classes", type=int, default=1000, help="classifier width (training only)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parse_args_or_status(parser, argv)
    if isinstance(args, int):  # a bad argument (one line printed) or --help
        return args
    try:
        spec = InputSpec(height=args.height, width=args.width)
        model = build_dslnet(num_classes=args.num_classes, dense=not args.no_dense, attention=args.attention, spec=spec)
    except EXPECTED_ERRORS as exc:
        return report_error(exc, status=2)
    from dslnet_edge.model.summary import summarize

    summary = summarize(model)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
