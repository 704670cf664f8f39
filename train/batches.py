"""Training batches as the models see them: views, mixing, the online teachers' answers, prefetched.

The data set (:class:`train.data.ReidTrainDataset`) yields *views*: augmented crops, BGR uint8 like
every crop the runtime gets, at the view size (the student's input size, or the teachers' when they
run online and their input is larger). :func:`batch_stream` then, per batch,

1. mixes the views (:func:`train.transforms.mix_batch`, seeded by ``(seed, epoch, step)``, so a
   resumed run mixes exactly as an uninterrupted one),
2. asks the online teachers for these very pixels (:class:`train.distill.OnlineTeacher`, through
   :func:`dslnet_edge.preprocessing.preprocess` at their input contract), and
3. resizes the same views to the student's input with the runtime's own resize
   (:func:`dslnet_edge.preprocessing.resize_crop`).

:func:`prefetched` runs that in a background thread, ``depth`` batches ahead of the training step:
OpenVINO and OpenCV release the GIL, so the teachers' work overlaps the student's where there are
cores to spare (on a GPU machine the student's step leaves the CPU idle).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np
import torch

from dslnet_edge.preprocessing import resize_crop
from dslnet_edge.spec import InputSpec
from train.transforms import AugmentConfig, mix_batch

__all__ = ["TrainBatch", "batch_stream", "prefetched"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class TrainBatch:
    """One training step's data."""

    images: torch.Tensor  # uint8 [B, H, W, 3]: the student's input, at its size and channel order
    labels: torch.Tensor  # int64 [B]
    keys: torch.Tensor  # int64 [B]: 2 * index + flipped (the fixed teacher's cached row)
    targets: torch.Tensor | None = None  # float32 [B, D]: the online teachers' answers for these pixels
    mixed_with: torch.Tensor | None = None  # int64 [B]: the labels mixed into each image (None: unmixed)
    lam: float = 1.0  # the share of each image's own label

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.ndim != 4 or len(self.images) != n or self.images.dtype != torch.uint8:
            raise ValueError(f"TrainBatch images must be uint8 [{n}, H, W, 3], got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.targets is not None and len(self.targets) != n:
            raise ValueError(f"TrainBatch has {n} labels but {len(self.targets)} teacher targets")
        if self.mixed_with is not None and self.mixed_with.shape != self.labels.shape:
            raise ValueError(f"TrainBatch mixed_with has shape {tuple(self.mixed_with.shape)}, labels {n}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"TrainBatch lam must be in [0, 1], got {self.lam}")


def batch_stream(
    loader: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    *,
    spec: InputSpec,
    augment: AugmentConfig,
    seed: int,
    epoch: int,
    teacher: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[TrainBatch]:
    """The loader's ``(views, labels, keys)`` batches -> :class:`TrainBatch` (see the module docstring)."""
    for step, (views, labels, keys) in enumerate(loader):
        pixels = views.numpy()
        mixed_with, lam = None, 1.0
        if augment.mixes:
            mixed = mix_batch(pixels, augment, np.random.default_rng([int(seed), int(epoch), step, 0x313]))
            pixels = mixed.images
            if mixed.mixed:
                mixed_with, lam = labels[torch.from_numpy(mixed.partner)], mixed.lam
        targets = torch.from_numpy(np.asarray(teacher(pixels), dtype=np.float32)) if teacher is not None else None
        if pixels.shape[1:3] == (spec.height, spec.width) and spec.channel_order == "BGR":
            images = torch.from_numpy(np.ascontiguousarray(pixels))
        else:
            images = torch.from_numpy(np.stack([resize_crop(v, spec, index=i) for i, v in enumerate(pixels)]))
        yield TrainBatch(images, labels, keys, targets, mixed_with, lam)


_DONE = object()


def prefetched(items: Iterable[T], depth: int) -> Iterator[T]:
    """``items``, produced ``depth`` ahead in a background thread (``depth`` 0: in line).

    An exception in the producer is raised in the consumer at the item where it happened; closing the
    generator early (a ``break``) stops the producer.
    """
    if depth <= 0:
        yield from items
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            put((None, exc))

    worker = threading.Thread(target=produce, name="train-batch-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)
