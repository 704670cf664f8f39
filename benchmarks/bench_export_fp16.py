"""Which parts of DSLNet must stay FP32 in the FP16 ONNX? Measured in ONNX Runtime on real crops.

Builds the FP16 graph with different sets of nodes kept in float32 and compares each with the FP32
graph on real CUHK03 crops (min / mean cosine, max|diff|), which is how export.precision's choice
and FP16_TOLERANCES were set. Prints numbers only; no pass/fail.

    python benchmarks/bench_export_fp16.py                           # demo weights if present
    python benchmarks/bench_export_fp16.py --checkpoint ckpt.pt --crops DIR --num-crops 64

Without a checkpoint it uses a random-init full-size DSLNet whose BatchNorm statistics are
re-estimated on real crops (forward passes only): random weights with realistic activation
scales, the closest stand-in for trained weights (random BatchNorm statistics would leave the
activations unnormalized and say nothing about FP16 range).
ONNX Runtime's CPU kernels may accumulate in float32 inside an op; the graph still rounds every
float16 tensor between ops, which is what this measures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def _model(args):
    import numpy as np
    import torch

    from dslnet_edge.model import build_dslnet
    from dslnet_edge.model.checkpoint import load_model
    from dslnet_edge.preprocessing import preprocess
    from dslnet_edge.weights import DEMO_CHECKPOINT
    from export.parity import load_crops

    checkpoint = args.checkpoint or (DEMO_CHECKPOINT if DEMO_CHECKPOINT.exists() else None)
    if checkpoint is not None:
        return load_model(checkpoint), str(checkpoint)
    torch.manual_seed(0)
    model = build_dslnet(num_classes=10)
    crops = load_crops(args.crops, 10**6)
    pick = np.random.default_rng(1).choice(len(crops), size=min(96, len(crops)), replace=False)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for i in range(0, len(pick), 32):
            model(torch.from_numpy(preprocess([crops[j] for j in pick[i:i + 32]], model.spec)))
    return model.eval(), "random init, BatchNorm statistics from real crops"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--crops", type=Path, default=None)
    parser.add_argument("--num-crops", type=int, default=64)
    args = parser.parse_args(argv)
    import onnx

    from dslnet_edge.comparison import Tolerances, compare
    from dslnet_edge.preprocessing import preprocess
    from export.onnx import export_onnx
    from export.parity import backend_runner, default_crops_dir, load_crops, ort_backend
    from export.precision import FP16_TOLERANCES, sensitive_nodes, to_fp16

    args.crops = args.crops or default_crops_dir()
    if args.crops is None:
        print("error: no real crops found: pass --crops DIR or set DSLNET_DATA", file=sys.stderr)
        return 2
    model, source = _model(args)
    with tempfile.TemporaryDirectory() as folder:
        fp32 = onnx.load(export_onnx(model, Path(folder) / "m.onnx"))
    x = preprocess(load_crops(args.crops, args.num_crops), model.spec)
    keep = sensitive_nodes(fp32)
    by_name = {n.name: n for n in fp32.graph.node}
    norm_out = {k for k in keep if "/stage" not in k and by_name[k].op_type not in ("Sub", "Div") or k == "/Div_1"}
    input_norm = {k for k in keep if by_name[k].op_type in ("Sub", "Div") and k not in norm_out}
    css_heads = keep - norm_out - input_norm
    variants = {
        "everything fp16": set(),
        "L2 norm fp32": norm_out,
        "L2 norm + input norm fp32": norm_out | input_norm,
        "L2 norm + CSS heads fp32": norm_out | css_heads,
        "export default (all three)": keep,
    }
    reference = backend_runner(ort_backend(fp32))
    print(f"model: {source}; {len(x)} real crops from {args.crops}; FP16_TOLERANCES {FP16_TOLERANCES}")
    print(f"{'fp32 kept':28} | {'max|diff|':>9} {'min cos':>10} {'mean cos':>10}")
    for name, nodes in variants.items():
        result = compare({"fp32": reference, "fp16": backend_runner(ort_backend(to_fp16(fp32, keep_fp32=nodes)))}, x,
                         tolerances=Tolerances(max_abs=None, min_cosine=-1.0))
        print(f"{name:28} | {result.max_abs:9.2e} {result.min_cosine:10.6f} {result.mean_cosine:10.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
