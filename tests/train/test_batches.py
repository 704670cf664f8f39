"""Training batches: the teacher answers for exactly the pixels the student trains on, mixing is
seeded by (seed, epoch, step), and the prefetching thread keeps order, errors and early stops."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from dslnet_edge.preprocessing import resize_crop
from dslnet_edge.spec import InputSpec
from train.batches import TrainBatch, batch_stream, prefetched
from train.transforms import AugmentConfig


def _loader(rng, batches=3, n=8, size=(32, 16)):
    out = []
    for _ in range(batches):
        views = torch.from_numpy(rng.integers(0, 256, size=(n, *size, 3), dtype=np.uint8))
        labels = torch.arange(n) // 2
        out.append((views, labels, torch.arange(n) * 2))
    return out


class RecordingTeacher:
    def __init__(self):
        self.seen = []

    def __call__(self, views):
        self.seen.append(np.array(views))
        return views.reshape(len(views), -1)[:, :4].astype(np.float32)


def test_the_teacher_gets_the_very_views_the_student_is_resized_from(rng):
    loader = _loader(rng)
    teacher = RecordingTeacher()
    spec = InputSpec(height=16, width=8)  # the student: half the view size, RGB
    out = list(batch_stream(loader, spec=spec, augment=AugmentConfig(mixup=0.5, cutmix=0.5), seed=0, epoch=0,
                            teacher=teacher))
    assert len(out) == 3 and len(teacher.seen) == 3
    for batch, seen, (views, labels, _) in zip(out, teacher.seen, loader):
        assert batch.images.shape == (8, 16, 8, 3) and batch.images.dtype == torch.uint8
        expected = np.stack([resize_crop(v, spec) for v in seen])  # the same pixels, the runtime's resize
        np.testing.assert_array_equal(batch.images.numpy(), expected)
        np.testing.assert_array_equal(batch.targets.numpy(), seen.reshape(8, -1)[:, :4])
        if batch.mixed_with is None:
            np.testing.assert_array_equal(seen, views.numpy())
        else:  # the mixed-in labels are those of other images of the batch
            assert not np.array_equal(seen, views.numpy()) and 0.5 <= batch.lam < 1.0
            assert set(batch.mixed_with.tolist()) <= set(labels.tolist())


def test_mixing_repeats_for_the_same_epoch_and_changes_with_it(rng):
    loader = _loader(rng, batches=4)
    spec = InputSpec(height=32, width=16)
    augment = AugmentConfig(mixup=0.5, cutmix=0.5)

    def run(epoch):
        return [(b.images.numpy(), b.lam) for b in batch_stream(loader, spec=spec, augment=augment, seed=1, epoch=epoch)]

    a, b, c = run(0), run(0), run(1)
    for (x, lx), (y, ly) in zip(a, b):
        np.testing.assert_array_equal(x, y)
        assert lx == ly
    assert any(not np.array_equal(x, z) for (x, _), (z, _) in zip(a, c))


def test_without_mixing_or_teacher_the_batch_is_the_views_in_the_students_order(rng):
    loader = _loader(rng, batches=1)
    (batch,) = batch_stream(loader, spec=InputSpec(height=32, width=16), augment=AugmentConfig(), seed=0, epoch=0)
    np.testing.assert_array_equal(batch.images.numpy(), loader[0][0].numpy()[..., ::-1])  # BGR views -> RGB
    assert batch.targets is None and batch.mixed_with is None and batch.lam == 1.0


def test_train_batch_validates_its_parts():
    images = torch.zeros(4, 8, 4, 3, dtype=torch.uint8)
    labels = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="uint8"):
        TrainBatch(images.float(), labels, labels)
    with pytest.raises(ValueError, match="teacher targets"):
        TrainBatch(images, labels, labels, targets=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="lam"):
        TrainBatch(images, labels, labels, lam=1.5)


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_prefetched_keeps_the_order(depth):
    assert list(prefetched(iter(range(20)), depth)) == list(range(20))


def test_prefetched_raises_the_producers_error_where_it_happened():
    def items():
        yield 1
        yield 2
        raise RuntimeError("bad batch 3")

    got = []
    with pytest.raises(RuntimeError, match="bad batch 3"):
        for item in prefetched(items(), 2):
            got.append(item)
    assert got == [1, 2]


def test_prefetched_stops_its_thread_when_the_consumer_leaves_early():
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    before = threading.active_count()
    stream = prefetched(items(), 2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before
    assert len(produced) <= 3 + 2 + 1  # it ran at most depth (+ the one in hand) ahead, then stopped
