"""P x K sampler invariants, single process and sharded for DDP."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from train.sampler import PKSampler, epoch_plan


def uneven_labels(rng: np.random.Generator, ids: int = 30) -> np.ndarray:
    counts = rng.integers(1, 12, size=ids)  # some identities have fewer than K images
    return rng.permutation(np.repeat(np.arange(ids), counts))


@pytest.mark.parametrize("p, k", [(4, 4), (8, 2), (3, 5)])
def test_every_batch_is_p_identities_times_k_images(rng, p, k):
    labels = uneven_labels(rng)
    plan = epoch_plan(labels, p, k, seed=1, epoch=0)
    assert plan.shape[1] == p * k and len(plan) > 0
    for batch in plan:
        counts = Counter(labels[batch].tolist())
        assert len(counts) == p and set(counts.values()) == {k}


def test_every_image_is_seen_unless_its_identity_is_left_over(rng):
    labels = uneven_labels(rng)
    plan = epoch_plan(labels, 4, 4, seed=0, epoch=0)
    seen = set(plan.ravel().tolist())
    unseen_ids = {int(labels[i]) for i in range(len(labels)) if i not in seen}
    # images go unseen only through the dropped remainder, i.e. fewer than P identities' chunks
    assert len(unseen_ids) < 4
    assert len(seen) >= 0.8 * len(labels)


def test_plan_is_a_function_of_seed_and_epoch(rng):
    labels = uneven_labels(rng)
    a = epoch_plan(labels, 4, 4, seed=3, epoch=5)
    np.testing.assert_array_equal(a, epoch_plan(labels, 4, 4, seed=3, epoch=5))
    assert not np.array_equal(a, epoch_plan(labels, 4, 4, seed=3, epoch=6))
    assert not np.array_equal(a, epoch_plan(labels, 4, 4, seed=4, epoch=5))


@pytest.mark.parametrize("world", [2, 3])
def test_ddp_shards_are_disjoint_equal_and_cover_the_plan(rng, world):
    labels = uneven_labels(rng, ids=40)
    plan = epoch_plan(labels, 4, 4, seed=0, epoch=2)
    shards = []
    for rank in range(world):
        s = PKSampler(labels, 4, 4, seed=0, rank=rank, world_size=world)
        s.set_epoch(2)
        shards.append([tuple(i for i, _ in batch) for batch in s])
    assert len({len(s) for s in shards}) == 1  # same number of steps on every rank
    flat = [b for s in shards for b in s]
    assert len(set(flat)) == len(flat)  # no batch on two ranks
    usable = len(plan) - len(plan) % world
    assert sorted(flat) == sorted(tuple(b) for b in plan[:usable].tolist())  # together: the plan


def test_sampler_yields_index_seed_pairs_stable_across_iterations(rng):
    labels = uneven_labels(rng)
    s = PKSampler(labels, 4, 4, seed=0)
    s.set_epoch(1)
    first, second = list(s), list(s)
    assert first == second and len(first) == len(s)
    assert all(isinstance(i, int) and isinstance(seed, int) for batch in first for i, seed in batch)
    seeds = [seed for batch in first for _, seed in batch]
    assert len(set(seeds)) == len(seeds)  # every sample its own augmentation stream
    s.set_epoch(2)
    assert list(s) != first


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"p": 0}, "P"),
        ({"k": 0}, "K"),
        ({"p": 50}, "at least P=50 identities"),
        ({"rank": 2, "world_size": 2}, "rank 2"),
    ],
)
def test_bad_arguments(kwargs, message):
    labels = np.repeat(np.arange(10), 4)
    with pytest.raises(ValueError, match=message):
        PKSampler(labels, **{"p": 4, "k": 4, **kwargs})
