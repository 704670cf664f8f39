"""The fused CSS Triton kernel vs the unfused PyTorch CSS (``css_reference``), on a CUDA GPU.

For each of DSLNet's three CSS shapes (256x128 input: 63 ch @ 64x32, 96 ch @ 32x16, 129 ch @ 16x8)
and each batch size, prints the median time of both, the speed-up ratio, and the fused kernel's
effective bandwidth (it reads the six streams twice and writes the output once). Also checks the
two agree. Prints numbers only; no pass/fail.

    python benchmarks/bench_css_kernel.py                      # batches 1 8 32, fp16 and fp32
    python benchmarks/bench_css_kernel.py --batches 1 64 --dtypes fp16 --repeats 200

Without a CUDA GPU it says so in one line and exits with status 2 (the kernel's correctness on
the CPU is covered by tests/export/test_css_triton.py in the Triton interpreter).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling gpu_check is importable
from gpu_check import SHAPES, time_ms  # noqa: E402  (one timing helper and shape table for both GPU scripts)

# (channels, height, width, hidden) of the CSS in stages 1, 2, 3 at a 256x128 input


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--dtypes", nargs="+", choices=["fp16", "fp32"], default=["fp16", "fp32"])
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        import torch
        import triton  # noqa: F401
    except ImportError as exc:
        print(f"error: {exc.name} is not installed (pip install 'dslnet-edge[export,triton]')", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("error: no CUDA GPU: nothing to time (the kernel's CPU correctness is in tests/export/test_css_triton.py)",
              file=sys.stderr)
        return 2

    from dslnet_edge.model import css_reference
    from export.plugin.css_triton import css_triton

    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, triton {triton.__version__}")
    print(f"{'dtype':5} {'batch':>5} {'C':>4} {'HxW':>6} | {'torch ms':>9} {'fused ms':>9} {'ratio':>6} | {'fused GB/s':>10} {'max|diff|':>10}")
    for name in args.dtypes:
        dtype = torch.float16 if name == "fp16" else torch.float32
        for batch in args.batches:
            for c, h, w, r in SHAPES:
                streams = [torch.relu(torch.randn(batch, c, h, w, device="cuda")).to(dtype) for _ in range(6)]
                weights = [torch.randn(*s, device="cuda") * 0.3 for s in ((6, r, c), (6, r), (6, c, r), (6, c))]
                out = torch.empty_like(streams[0])
                # the unfused PyTorch CSS runs in the streams' dtype, as an FP16 ONNX graph would
                w_cast = [x.to(dtype) for x in weights]
                t_ref = time_ms(torch, lambda s=streams, wc=w_cast: css_reference(s, *wc), args.repeats)
                t_fused = time_ms(torch, lambda s=streams, w=weights, o=out: css_triton(s, *w, out=o), args.repeats)
                diff = (css_triton(streams, *weights).float() - css_reference([x.float() for x in streams], *weights)).abs().max()
                moved = (2 * 6 + 1) * streams[0].numel() * streams[0].element_size()
                print(f"{name:5} {batch:5d} {c:4d} {h:>3}x{w:<2} | {t_ref:9.3f} {t_fused:9.3f} {t_ref / t_fused:6.2f} | "
                      f"{moved / t_fused / 1e6:10.1f} {float(diff):10.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
