"""Training throughput on this CPU: what each setting buys (img/s, one run, one table).

    python benchmarks/bench_train.py                      # the full table (~10 minutes on 2 cores)
    python benchmarks/bench_train.py --quick              # fewer steps, 128x64 only
    python benchmarks/bench_train.py --json out.json

Uses the real pieces of ``python -m train.run`` (decoded cache -> P x K sampler -> augmentation
-> collate -> DSLNet step with the label losses and, with ``--distill``, the distillation losses on
cached teacher targets) on random images, so it needs no dataset. Each row is end to end: the
batches come through the DataLoader (in the main process, or in worker processes), the model runs
forward + backward + AMSGrad step. Settings compared, each at 128x64 and 256x128:

* ``fp32``: float32, NCHW;
* ``fp32 + channels-last``;
* ``bf16 autocast + channels-last`` (AVX512-BF16 / AMX CPUs run bf16 matmuls natively);
* the same + ``torch.compile`` (compile time excluded, reported apart);
* the same + data loading in 1 worker process.

Also timed: the two OMZ teachers run online per training crop (``--teacher``, OpenVINO IR), which is
what caching the teacher targets per image and mirror view (``train.distill``) saves.
Speed is never asserted in tests: this prints numbers, ratios are read within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time

import numpy as np
import torch

from dslnet_edge.model import build_dslnet
from dslnet_edge.spec import InputSpec
from train.config import TrainConfig
from train.data import ReidTrainDataset, collate_uint8
from train.distill import DistillConfig, DistillLoss
from train.loop import build_optimizer
from train.losses import LossConfig, ReidLoss
from train.sampler import PKSampler
from train.transforms import AugmentConfig, build_transform

SETTINGS = {
    "fp32": dict(amp=False, channels_last=False, compile=False, workers=0),
    "fp32 + channels-last": dict(amp=False, channels_last=True, compile=False, workers=0),
    "bf16 + channels-last": dict(amp=True, channels_last=True, compile=False, workers=0),
    "bf16 + channels-last + compile": dict(amp=True, channels_last=True, compile=True, workers=0),
    "bf16 + channels-last + 1 loader worker": dict(amp=True, channels_last=True, compile=False, workers=1),
}


def measure(setting: dict, spec: InputSpec, *, steps: int, identities: int, distill: bool, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(identities * 8, spec.height, spec.width, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(identities), 8)
    transform = build_transform(AugmentConfig(color_jitter=0.3, flip=0.0), height=spec.height)
    dataset = ReidTrainDataset(images, labels, transform, flip=0.5)
    sampler = PKSampler(labels, 16, 4, seed=seed)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_uint8,
                                         num_workers=setting["workers"], persistent_workers=setting["workers"] > 0)
    model = build_dslnet(num_classes=identities, spec=spec, embedding_relu=not distill, bnneck=distill).train()
    if setting["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    forward = model
    compile_s = None
    optimizer = build_optimizer(TrainConfig.from_dict({"optim": {"name": "amsgrad", "lr": 0.0015}}), model)
    label_loss = ReidLoss(LossConfig(triplet="e_trihard"))
    targets = torch.nn.functional.normalize(torch.randn(len(images) * 2, 512), dim=1)
    distill_loss = DistillLoss(DistillConfig(feature_weight=5.0, relational_weight=1.0)) if distill else None
    if setting["compile"]:
        forward = torch.compile(model)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if setting["amp"] else contextlib.nullcontext

    def step(x, y, keys):
        x = x.permute(0, 3, 1, 2).float()
        if not setting["channels_last"]:
            x = x.contiguous()
        with autocast():
            out = forward(x)
        loss, _ = label_loss(out, y)
        if distill_loss is not None:
            extra, _ = distill_loss(out.features, targets[keys])
            loss = loss + extra
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    batches = iter(loader)
    t = time.perf_counter()
    for _ in range(2):  # warm-up (and compilation)
        step(*next(batches))
    if setting["compile"]:
        compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(steps):
        step(*next(batches))
    elapsed = time.perf_counter() - t
    return {"img_s": 64 * steps / elapsed, "compile_s": compile_s}


def teacher_cost(teachers: list[str], crops: int = 64) -> float:
    """Milliseconds per crop for all teachers together (OpenVINO, batch 1 as the IRs are fixed)."""
    from train.distill import ensemble_embed, load_teacher

    runners = [load_teacher(t, spec=DistillConfig().teacher_spec) for t in teachers]
    batch = np.random.default_rng(0).uniform(0, 255, size=(crops, 3, 256, 128)).astype(np.float32)
    ensemble_embed(runners, batch[:2])
    t = time.perf_counter()
    ensemble_embed(runners, batch)
    return 1000 * (time.perf_counter() - t) / crops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="128x64 only, fewer steps")
    parser.add_argument("--steps", type=int, default=0, help="timed steps per row (default 8, quick 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--identities", type=int, default=100)
    parser.add_argument("--no-distill", action="store_true", help="label losses only")
    parser.add_argument("--only", action="append", default=[], help="run only settings containing this text")
    parser.add_argument("--teacher", action="append", default=[], help="time these teachers online too")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = args.steps or (3 if args.quick else 8)
    sizes = [(128, 64)] if args.quick else [(128, 64), (256, 128)]
    rows = []
    print("| input | setting | img/s | x fp32 | note |\n| --- | --- | --- | --- | --- |")
    for h, w in sizes:
        base = None
        for name, setting in SETTINGS.items():
            if args.only and not any(o in name for o in args.only):
                continue
            try:
                r = measure(setting, InputSpec(height=h, width=w), steps=steps, identities=args.identities,
                            distill=not args.no_distill)
            except Exception as exc:  # a setting this machine cannot run (e.g. no compiler for torch.compile)
                print(f"| {h}x{w} | {name} | - | - | failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]} |")
                continue
            base = base or (r["img_s"] if name == "fp32" else None)
            ratio = f"{r['img_s'] / base:.2f}" if base else "-"
            note = f"compile {r['compile_s']:.0f} s" if r["compile_s"] else ""
            print(f"| {h}x{w} | {name} | {r['img_s']:.1f} | {ratio} | {note} |", flush=True)
            rows.append({"input": f"{h}x{w}", "setting": name, **r})
    teacher_ms = teacher_cost(args.teacher) if args.teacher else None
    if teacher_ms is not None:
        print(f"\nteachers online ({len(args.teacher)} OpenVINO IRs, batch 1): {teacher_ms:.1f} ms/crop "
              f"= at most {1000 / teacher_ms:.0f} crops/s before any student work; cached targets cost nothing per step")
    if args.json:
        from dslnet_edge._io import atomic_write_text

        atomic_write_text(args.json, json.dumps({
            "machine": platform.processor() or platform.machine(), "threads": args.threads, "torch": torch.__version__,
            "distill": not args.no_distill, "steps": steps, "rows": rows, "teacher_ms_per_crop": teacher_ms,
            "date": time.strftime("%Y-%m-%d")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
