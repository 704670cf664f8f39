"""INT8 (Q/DQ) vs FP32 in ONNX Runtime on the CPU: throughput and the accuracy gate's numbers.

    python benchmarks/bench_int8.py --onnx model.onnx [--crops DIR] [--holdout DIR]
                                    [--num-images 128] [--num-holdout 128] [--ablation] [--methods]

* calibrates ``--onnx`` (default placement, MinMax) on crops from ``--crops`` (default: the
  CUHK03 training crops of the shared data) and gates it on ``--holdout`` (default: CUHK03
  query + gallery), printing the gate report;
* times FP32 and INT8 in ONNX Runtime (CPU EP, batch ``--batch``). ONNX Runtime's CPU INT8
  speed says nothing about TensorRT's: with Q/DQ only on the inputs of weighted ops (the
  placement TensorRT wants) ONNX Runtime cannot fuse them into its integer kernels and runs
  DequantizeLinear + float ops, so INT8 is usually *slower* here. TensorRT compiles the same
  Q/DQ pairs into INT8 kernels.
* ``--ablation``: which float islands matter -- the gate numbers for other Q/DQ placements
  (no exclusions, the embedding FC kept in float, wide op types), on the same held-out crops
  with the same activation ranges (the range cache makes each variant a few seconds);
* ``--methods``: MinMax vs entropy vs percentile calibration.

Measurements go into the docstrings of calibration/quantization.py and calibration/gate.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibration.gate import GateThresholds, run_gate, select_holdout  # noqa: E402
from calibration.quantization import DEFAULT_EXCLUDE, QuantizeConfig, quantize  # noqa: E402

DATA = Path(os.environ.get("DSLNET_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "cuhk03-pair1"
WIDE_OP_TYPES = ("Conv", "Gemm", "MatMul", "Add", "Mul", "Relu", "MaxPool", "AveragePool", "ReduceMean", "Softmax")


def throughput(path: Path, spec, batch: int, seconds: float, threads: int | None) -> float:
    from dslnet_edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(path, intra_op_threads=threads)
    x = np.random.default_rng(0).uniform(0, 255, size=(batch, *spec.input_shape)).astype(np.float32)
    backend.infer(x)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        backend.infer(x)
        done += batch
    return done / (time.perf_counter() - start)


def gate_line(name: str, q, gate) -> str:
    ranked = (f"R1 {100 * gate.fp32_rank1:5.1f}->{100 * gate.int8_rank1:5.1f}  mAP {100 * gate.fp32_mAP:5.1f}->"
              f"{100 * gate.int8_mAP:5.1f}") if gate.ranked else "(no ranking)"
    return (f"  {name:<34} Q/DQ {q.summary.quantize_nodes:>4}  cos mean {gate.mean_cosine:.5f} min {gate.min_cosine:.5f}  "
            f"{ranked}  {'pass' if gate.passed else 'FAIL'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True, help="plain FP32 ONNX (python -m export.onnx)")
    parser.add_argument("--crops", type=Path, default=DATA / "bounding_box_train")
    parser.add_argument("--holdout", type=Path, default=DATA)
    parser.add_argument("--num-images", type=int, default=128)
    parser.add_argument("--num-holdout", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="timing per model")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dslnet_bench_int8")
    parser.add_argument("--ablation", action="store_true")
    parser.add_argument("--methods", action="store_true")
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    base = QuantizeConfig(num_images=args.num_images)
    out = args.workdir / (args.onnx.stem + ".int8.onnx")
    started = time.perf_counter()
    from dslnet_edge._cli import log_to_console

    with log_to_console("stdout"):
        q = quantize(args.onnx, args.crops, out, base)
    print(q.format())
    print(f"calibration + quantization: {time.perf_counter() - started:.1f} s ({'cache hit' if q.cache_hit else 'measured'})")
    holdout = select_holdout(args.holdout, args.num_holdout, exclude=q.crops)
    thresholds = GateThresholds()
    gate = run_gate(args.onnx, out, args.holdout, thresholds=thresholds, holdout=holdout, threads=args.threads)
    print(gate.format())

    fp32_speed = throughput(args.onnx, q.spec, args.batch, args.seconds, args.threads)
    int8_speed = throughput(out, q.spec, args.batch, args.seconds, args.threads)
    print(f"ONNX Runtime CPU, batch {args.batch}, {q.spec.height}x{q.spec.width}: FP32 {fp32_speed:.1f} img/s, "
          f"INT8 Q/DQ {int8_speed:.1f} img/s ({int8_speed / fp32_speed:.2f}x)")
    print("note: ONNX Runtime's CPU INT8 speed is not TensorRT's. These Q/DQ pairs sit only on the inputs of "
          "weighted ops (TensorRT's placement), which ONNX Runtime executes as DequantizeLinear + float kernels; "
          "TensorRT compiles them into INT8 kernels. Time the engine with trtexec on the target GPU.")

    if args.ablation:
        print("\nablation (same held-out crops; MinMax ranges from the cache where the op types match):")
        variants = {
            "default (float islands)": base,
            "no exclusions": dataclasses.replace(base, exclude=()),
            "CSS heads only float (FC int8)": dataclasses.replace(base, exclude=(DEFAULT_EXCLUDE["CSS heads"],)),
            "default + stem conv float": dataclasses.replace(base, exclude=(*DEFAULT_EXCLUDE.values(), r"^/stem/")),
            "per-tensor weights": dataclasses.replace(base, per_channel=False),
            "wide op types (Add, Mul, Relu, pools...)": dataclasses.replace(base, op_types=WIDE_OP_TYPES),
        }
        path = args.workdir / "ablation.int8.onnx"  # one path: one range cache, reused while the op types match
        for name, config in variants.items():
            try:
                qv = quantize(args.onnx, args.crops, path, config)
                gv = run_gate(args.onnx, path, args.holdout, thresholds=thresholds, holdout=holdout, threads=args.threads)
            except (ValueError, RuntimeError) as exc:
                print(f"  {name:<34} error: {' '.join(str(exc).split())[:200]}")
                continue
            print(gate_line(name, qv, gv))
    if args.methods:
        print("\ncalibration methods (default placement):")
        for method in ("minmax", "entropy", "percentile"):
            config = dataclasses.replace(base, method=method)
            path = args.workdir / f"method_{method}.int8.onnx"
            t0 = time.perf_counter()
            qv = quantize(args.onnx, args.crops, path, config)
            seconds = time.perf_counter() - t0
            gv = run_gate(args.onnx, path, args.holdout, thresholds=thresholds, holdout=holdout, threads=args.threads)
            print(gate_line(f"{method} ({seconds:.0f} s)", qv, gv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
