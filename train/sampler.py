"""Identity-balanced batches: P identities x K images each (batch 64 = 16 x 4 by default).

Batch-hard triplet mining (Eq. 6) needs every identity in a batch to bring K >= 2 images. The
epoch plan is a pure function of ``(seed, epoch)``:

1. every identity's images are shuffled and cut into chunks of K; an identity with fewer than K
   images is topped up by drawing its own images again, and a last partial chunk is topped up
   the same way, so every image is seen each epoch;
2. batches are formed by repeatedly drawing P *distinct* identities among those with chunks left
   and taking one chunk of each, until fewer than P identities have chunks left (the remainder is
   dropped, as in the usual Re-ID samplers);
3. under distributed training (DDP) the plan is cut to a multiple of ``world_size`` batches and
   rank r takes batches ``r, r + world_size, ...``: the ranks see disjoint shares of the same plan
   and the same number of steps (so no rank waits forever in an all-reduce).

Each yielded item is an ``(index, seed)`` pair: the seed drives that sample's augmentation, so
the pixels do not depend on data-loader workers and a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["PKSampler", "epoch_plan"]


def epoch_plan(labels: Sequence[int] | np.ndarray, p: int, k: int, *, seed: int, epoch: int) -> np.ndarray:
    """The whole epoch's batches, ``int64 [num_batches, p * k]`` dataset indices (all ranks together).

    Example:
        >>> plan = epoch_plan([0, 0, 1, 1, 2, 2, 2, 2], p=2, k=2, seed=0, epoch=0)
        >>> plan.shape
        (2, 4)
    """
    labels = np.asarray(labels)
    _check_pk(p, k)
    rng = np.random.default_rng([int(seed), int(epoch), 0x5EED])
    by_id: dict[int, list[np.ndarray]] = {}
    for pid in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == pid))
        short = (-len(idx)) % k if len(idx) >= k else k - len(idx)
        if short:
            idx = np.concatenate([idx, rng.choice(idx, size=short, replace=len(idx) < short)])
        by_id[int(pid)] = list(idx.reshape(-1, k))
    num_ids = len(by_id)
    if num_ids < p:
        raise ValueError(f"P x K sampling needs at least P={p} identities, the training set has {num_ids}")
    batches = []
    while True:
        alive = np.array([pid for pid, chunks in by_id.items() if chunks])
        if len(alive) < p:
            break
        chosen = rng.choice(alive, size=p, replace=False)
        batches.append(np.concatenate([by_id[int(pid)].pop() for pid in chosen]))
    return np.stack(batches).astype(np.int64)


def _check_pk(p: int, k: int) -> None:
    for name, value in (("P (identities per batch)", p), ("K (images per identity)", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class PKSampler:
    """Batch sampler yielding lists of ``(index, seed)``; call :meth:`set_epoch` before each epoch.

    Pass it as ``DataLoader(dataset, batch_sampler=PKSampler(...))``.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        p: int = 16,
        k: int = 4,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        _check_pk(p, k)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.p, self.k, self.seed, self.rank, self.world_size = p, k, seed, rank, world_size
        self.epoch = 0
        self._plan: np.ndarray | None = None
        num_ids = len(np.unique(self.labels))
        if num_ids < p:
            raise ValueError(f"P x K sampling needs at least P={p} identities, the training set has {num_ids}")

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._plan = epoch, None

    def rank_plan(self) -> np.ndarray:
        """This rank's batches for the current epoch, ``[num_batches, p * k]``."""
        if self._plan is None:
            plan = epoch_plan(self.labels, self.p, self.k, seed=self.seed, epoch=self.epoch)
            usable = len(plan) - len(plan) % self.world_size
            self._plan = plan[:usable][self.rank :: self.world_size]
        return self._plan

    def __len__(self) -> int:
        return len(self.rank_plan())

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        plan = self.rank_plan()
        # one augmentation seed per (epoch, batch, position): independent of rank count and workers
        base = np.random.default_rng([int(self.seed), int(self.epoch), 0xA06]).integers(
            0, 2**62, size=(len(plan) * self.world_size, plan.shape[1]) if len(plan) else (0, 0)
        )
        for b, batch in enumerate(plan):
            seeds = base[b * self.world_size + self.rank]
            yield [(int(i), int(s)) for i, s in zip(batch, seeds)]
