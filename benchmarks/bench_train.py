"""Training throughput: the data pipeline alone and full training steps (img/s).

    python benchmarks/bench_train.py --height 128 --width 64 --steps 6 --threads 2
    python benchmarks/bench_train.py --height 256 --width 128 --steps 3 --triplet e_trihard

Uses the real pieces of ``python -m train.run`` (decoded cache -> P x K sampler -> augmentation
-> collate -> DSLNet step with the paper's losses) on random images, so it needs no dataset.
Prints one line per measurement. Data loading must stay a small fraction of the step time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dslnet_edge.model import build_dslnet
from dslnet_edge.spec import InputSpec
from train.config import TrainConfig
from train.data import ReidTrainDataset, collate_uint8
from train.loop import build_optimizer
from train.losses import LossConfig, ReidLoss
from train.sampler import PKSampler
from train.transforms import AugmentConfig, build_transform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps (after 2 warm-up steps)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--optimizer", default="sgd", choices=("sgd", "amsgrad"))
    parser.add_argument("--triplet", default="e_trihard", choices=("none", "trihard", "e_trihard"))
    parser.add_argument("--no-channels-last", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    spec = InputSpec(height=args.height, width=args.width)
    n = args.identities * 8
    images = rng.integers(0, 256, size=(n, spec.height, spec.width, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(args.identities), 8)
    dataset = ReidTrainDataset(images, labels, build_transform(AugmentConfig(color_jitter=0.5), height=spec.height))
    sampler = PKSampler(labels, 16, 4, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_uint8)

    batches = iter(loader)
    t = time.perf_counter()
    data = [next(batches) for _ in range(args.steps + 2)]
    data_rate = 64 * len(data) / (time.perf_counter() - t)
    print(f"data pipeline {spec.height}x{spec.width}: {data_rate:.0f} img/s (augmentation, 1 process)")

    cl = not args.no_channels_last
    model = build_dslnet(num_classes=args.identities, spec=spec).train()
    if cl:
        model = model.to(memory_format=torch.channels_last)
    cfg = TrainConfig.from_dict({"optim": {"name": args.optimizer}})
    optimizer = build_optimizer(cfg, model)
    criterion = ReidLoss(LossConfig(triplet=args.triplet))
    timings = []
    for i, (x, y) in enumerate(data):
        t = time.perf_counter()
        x = x.permute(0, 3, 1, 2).float()
        if not cl:
            x = x.contiguous()
        loss, _ = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= 2:
            timings.append(time.perf_counter() - t)
    rate = 64 / np.median(timings)
    print(f"train step {spec.height}x{spec.width} batch 64 {args.optimizer} triplet={args.triplet} "
          f"{'channels-last' if cl else 'NCHW'} {args.threads} threads: {rate:.1f} img/s "
          f"(median of {len(timings)} steps; {7239 / rate / 60:.1f} min per CUHK03 epoch)")


if __name__ == "__main__":
    main()
