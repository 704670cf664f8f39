"""Every GPU path this project runs without TensorRT, on one CUDA GPU, into one JSON (a few minutes).

    python benchmarks/gpu_check.py --out gpu_check.json          # H100/H200: about 2-4 minutes
    python benchmarks/gpu_check.py --out gpu_check.json --quick  # fewer batches and steps

Needs torch with CUDA and triton (``pip install -e '.[dev]'``); cuda-python (``.[trt]``) adds the AOT check.
Sections of the JSON (each records its own error instead of stopping the run):

* ``css_correctness``: the fused Triton CSS kernel (:func:`export.plugin.css_triton.css_triton`) against
  the PyTorch reference :func:`dslnet_edge.model.css_reference` in float32, on DSLNet's three CSS shapes
  (256x128 input), float32 and float16 streams, batches 1 to 256: max |difference| and pass/fail.
* ``css_speed``: median time of the fused kernel and of the unfused PyTorch ops (in the streams' dtype,
  as an FP16 ONNX graph runs them), their ratio and the kernel's effective bandwidth.
* ``aot_kernel``: the ahead-of-time kernel TensorRT would embed (:func:`compile_css_kernel` for this GPU),
  loaded from its PTX with the CUDA driver and launched with exactly TensorRT's 14 arguments (10 inputs,
  3 int32, 1 output), compared with the reference. Skipped (with the reason) without cuda-python.
* ``train_step``: DSLNet training steps at 256x128, batch 64 (P16 x K4), the paper's losses, SGD: AMP
  (bf16 where supported, else fp16 with a GradScaler) with channels-last, and plain fp32 NCHW, in img/s.

Without a CUDA GPU it says so in one line and exits with status 2, writing nothing. Prints numbers and
pass/fail lines; the exit status is 1 when a correctness check fails, else 0.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (channels, height, width, hidden) of the CSS in stages 1, 2, 3 at a 256x128 input (as bench_css_kernel.py)
SHAPES = [(63, 64, 32, 3), (96, 32, 16, 6), (129, 16, 8, 8)]
BATCHES = [1, 4, 16, 64, 256]
QUICK_BATCHES = [1, 16, 256]
#: |fused - reference| bounds: float32 maths in both; float16 output rounding (half an ulp, relative 2**-11)
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-3}


def css_case(torch, batch: int, shape, dtype, device, seed: int = 0):
    c, h, w, r = shape
    g = torch.Generator(device="cpu").manual_seed(seed)
    streams = [torch.relu(torch.randn(batch, c, h, w, generator=g)).to(device=device, dtype=dtype) for _ in range(6)]
    weights = [(torch.randn(*s, generator=g) * 0.3).to(device) for s in ((6, r, c), (6, r), (6, c, r), (6, c))]
    return streams, weights


def check_css(torch, device, batches, dtypes=("fp32", "fp16")) -> list[dict]:
    from dslnet_edge.model import css_reference
    from export.plugin.css_triton import css_triton

    rows = []
    for name in dtypes:
        dtype = torch.float16 if name == "fp16" else torch.float32
        for batch in batches:
            for shape in SHAPES:
                streams, weights = css_case(torch, batch, shape, dtype, device)
                fused = css_triton(streams, *weights).float()
                reference = css_reference([s.float() for s in streams], *weights)
                diff = float((fused - reference).abs().max())
                scale = float(reference.abs().max())
                rows.append({"dtype": name, "batch": batch, "channels": shape[0], "hw": [shape[1], shape[2]],
                             "hidden": shape[3], "max_abs_diff": diff, "max_abs_reference": scale,
                             "passed": bool(diff <= TOLERANCE[name] * max(1.0, scale))})
    return rows


def time_ms(torch, fn, repeats: int) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_css(torch, batches, repeats: int) -> list[dict]:
    from dslnet_edge.model import css_reference
    from export.plugin.css_triton import css_triton

    rows = []
    for name in ("fp16", "fp32"):
        dtype = torch.float16 if name == "fp16" else torch.float32
        for batch in batches:
            for shape in SHAPES:
                streams, weights = css_case(torch, batch, shape, dtype, "cuda")
                out = torch.empty_like(streams[0])
                cast = [x.to(dtype) for x in weights]
                t_ref = time_ms(torch, lambda s=streams, wc=cast: css_reference(s, *wc), repeats)
                t_fused = time_ms(torch, lambda s=streams, w=weights, o=out: css_triton(s, *w, out=o), repeats)
                moved = (2 * 6 + 1) * streams[0].numel() * streams[0].element_size()
                rows.append({"dtype": name, "batch": batch, "channels": shape[0], "hw": [shape[1], shape[2]],
                             "unfused_ms": t_ref, "fused_ms": t_fused, "speedup": t_ref / t_fused,
                             "fused_gb_per_s": moved / t_fused / 1e6})
    return rows


def check_aot_launch(torch) -> dict:
    """The AOT PTX, loaded with the driver and launched with TensorRT's arguments (no Triton launcher)."""
    import ctypes

    from dslnet_edge.model import css_reference
    from export.plugin.css_triton import TENSORRT_LAUNCH_PARAMS, compile_css_kernel

    try:
        from cuda.bindings import driver
    except ImportError:
        try:
            from cuda import cuda as driver  # cuda-python 12.x before the bindings package
        except ImportError:
            return {"skipped": "cuda-python is not installed (pip install 'dslnet-edge[trt]')"}

    def call(result, what):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"{what} failed: {err}")
        return rest[0] if len(rest) == 1 else rest

    torch.cuda.init()
    torch.empty(1, device="cuda")  # make torch's primary context current on this thread
    results = []
    for name in ("fp32", "fp16"):
        dtype = torch.float16 if name == "fp16" else torch.float32
        for batch, shape in ((1, SHAPES[0]), (64, SHAPES[1]), (256, SHAPES[2])):
            c, h, w, r = shape
            kernel = compile_css_kernel(name, c, r)
            module = call(driver.cuModuleLoadData(kernel.ptx.encode() + b"\0"), "cuModuleLoadData")
            function = call(driver.cuModuleGetFunction(module, kernel.name.encode()), "cuModuleGetFunction")
            streams, weights = css_case(torch, batch, shape, dtype, "cuda")
            weights = [x.float().contiguous() for x in weights]
            out = torch.empty_like(streams[0])
            values = [*(t.data_ptr() for t in (*streams, *weights)), c, h * w, r, out.data_ptr()]
            types = [*(ctypes.c_void_p,) * 10, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
            assert len(values) == TENSORRT_LAUNCH_PARAMS == kernel.num_params
            stream = torch.cuda.current_stream().cuda_stream
            call(driver.cuLaunchKernel(function, batch, 1, 1, kernel.num_warps * 32, 1, 1, kernel.shared, driver.CUstream(stream),
                                       (tuple(values), tuple(types)), 0), "cuLaunchKernel")
            torch.cuda.synchronize()
            reference = css_reference([s.float() for s in streams], *weights)
            diff = float((out.float() - reference).abs().max())
            results.append({"dtype": name, "batch": batch, "channels": c, "params": kernel.num_params,
                            "max_abs_diff": diff, "passed": bool(diff <= TOLERANCE[name] * max(1.0, float(reference.abs().max())))})
            call(driver.cuModuleUnload(module), "cuModuleUnload")
    return {"launches": results}


def train_steps(torch, device, *, height=256, width=128, steps=10, warmup=3, amp=True, channels_last=True,
                identities=200) -> dict:
    """Median img/s of full DSLNet training steps (random images, P16 x K4 batch of 64, the paper's losses)."""
    import contextlib

    from dslnet_edge.model import build_dslnet
    from dslnet_edge.spec import InputSpec
    from train.config import TrainConfig
    from train.loop import build_optimizer
    from train.losses import LossConfig, ReidLoss

    device = torch.device(device)
    spec = InputSpec(height=height, width=width)
    model = build_dslnet(num_classes=identities, spec=spec).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(TrainConfig.from_dict({"optim": {"name": "sgd"}}), model)
    criterion = ReidLoss(LossConfig(triplet="e_trihard"))
    amp_dtype = None
    if amp and device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    g = torch.Generator(device="cpu").manual_seed(0)
    labels = torch.arange(16).repeat_interleave(4).to(device)
    images = torch.randint(0, 256, (64, height, width, 3), generator=g, dtype=torch.uint8).to(device)
    timings, losses = [], []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        x = images.permute(0, 3, 1, 2).float()  # NHWC uint8 -> channels-last float, as train.loop does
        if not channels_last:
            x = x.contiguous()
        autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
        with autocast:
            output = model(x)
        loss, _ = criterion(output, labels, epoch=0)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            timings.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
    return {"height": height, "width": width, "batch": 64, "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
            "channels_last": channels_last, "steps": steps, "img_per_s": 64 / statistics.median(timings),
            "losses_finite": all(v == v and abs(v) != float("inf") for v in losses), "first_loss": losses[0],
            "last_loss": losses[-1]}


def _section(results: dict, name: str, fn) -> None:
    start = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as exc:  # one failing section must not hide the others' numbers
        results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
    print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/gpu_check.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON to write")
    parser.add_argument("--quick", action="store_true", help="batches 1/16/256 and fewer training steps")
    parser.add_argument("--repeats", type=int, default=50, help="timed repeats per kernel measurement")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import torch
        import triton
    except ImportError as exc:
        print(f"error: {exc.name} is not installed (pip install -e '.[dev]')", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(f"error: no CUDA GPU here (torch {torch.__version__}, CUDA available: no): nothing to check; "
              "run this on the GPU machine", file=sys.stderr)
        return 2
    batches = QUICK_BATCHES if args.quick else BATCHES
    major, minor = torch.cuda.get_device_capability(0)
    results: dict = {
        "gpu": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}", "torch": torch.__version__,
        "cuda": torch.version.cuda, "triton": triton.__version__, "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"GPU: {results['gpu']} (sm_{major}{minor}), torch {torch.__version__}, triton {triton.__version__}", flush=True)
    _section(results, "css_correctness", lambda: check_css(torch, "cuda", batches))
    _section(results, "css_speed", lambda: time_css(torch, batches, args.repeats))
    _section(results, "aot_kernel", lambda: check_aot_launch(torch))
    steps = 4 if args.quick else 10
    _section(results, "train_step", lambda: [train_steps(torch, "cuda", steps=steps, amp=True, channels_last=True),
                                             train_steps(torch, "cuda", steps=steps, amp=False, channels_last=False)])
    failures = []
    for row in results.get("css_correctness", []) if isinstance(results.get("css_correctness"), list) else []:
        if not row["passed"]:
            failures.append(f"css {row['dtype']} batch {row['batch']} C={row['channels']}: |diff| {row['max_abs_diff']:.2e}")
    for row in results.get("aot_kernel", {}).get("launches", []):
        if not row["passed"]:
            failures.append(f"aot {row['dtype']} batch {row['batch']}: |diff| {row['max_abs_diff']:.2e}")
    errors = [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    results["failures"], results["errors"] = failures, errors
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for row in results.get("css_speed", []) if isinstance(results.get("css_speed"), list) else []:
        print(f"css {row['dtype']} b{row['batch']:<3} C{row['channels']:<3}: unfused {row['unfused_ms']:.3f} ms, "
              f"fused {row['fused_ms']:.3f} ms, x{row['speedup']:.2f}, {row['fused_gb_per_s']:.0f} GB/s")
    for row in results.get("train_step", []) if isinstance(results.get("train_step"), list) else []:
        print(f"train {row['amp']} channels_last={row['channels_last']}: {row['img_per_s']:.0f} img/s")
    print(f"wrote {args.out}; failures: {failures or 'none'}; section errors: {errors or 'none'}")
    return 1 if failures or errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
