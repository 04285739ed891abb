"""Batch order: bucketing cuts padding; sampling modes give the documented epochs; determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mtst.data.batching import MultiTaskBatchSampler


def padded_share(batches, lengths):
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths[i] for b in batches for i in b) / padded


@pytest.fixture
def varied_lengths():
    rng = np.random.default_rng(0)
    return rng.integers(4, 200, size=2000).tolist()


def test_bucketing_reduces_padding(varied_lengths):
    plain = MultiTaskBatchSampler(varied_lengths, [0] * 2000, 16, bucket_by_length=False, seed=1)
    bucketed = MultiTaskBatchSampler(varied_lengths, [0] * 2000, 16, bucket_by_length=True, seed=1)
    share_plain = padded_share(list(plain), varied_lengths)
    share_bucketed = padded_share(list(bucketed), varied_lengths)
    assert share_bucketed < share_plain / 2


def test_bucketed_batches_are_shuffled_not_sorted(varied_lengths):
    batches = list(MultiTaskBatchSampler(varied_lengths, [0] * 2000, 16, seed=3))
    maxima = [max(varied_lengths[i] for i in b) for b in batches]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)


@pytest.mark.parametrize("bucket", [True, False])
def test_proportional_epoch_covers_every_example_once(varied_lengths, bucket):
    sources = [i % 3 for i in range(2000)]
    sampler = MultiTaskBatchSampler(varied_lengths, sources, 16, bucket_by_length=bucket)
    batches = list(sampler)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(2000))
    assert len(batches) == len(sampler) == 125
    assert sum(len({sources[i] for i in b}) > 1 for b in batches) > 0  # sources mix in batches


def test_deterministic_per_seed_and_epoch(varied_lengths):
    def make(seed):
        return MultiTaskBatchSampler(varied_lengths, [0] * 2000, 16, seed=seed)

    a, b = make(5), make(5)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(b) != a.batches_for_epoch(3)
    assert make(6).batches_for_epoch(3) != a.batches_for_epoch(3)
    # without set_epoch every pass is a new epoch, and it matches what set_epoch would give
    c = make(5)
    first, second = list(c), list(c)
    assert first != second and second == make(5).batches_for_epoch(1)


def test_round_robin_counts():
    sizes = [100, 30, 10]
    sources = [s for s, n in enumerate(sizes) for _ in range(n)]
    sampler = MultiTaskBatchSampler([5] * 140, sources, 10, sampling="round_robin", seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 * 10  # epoch ends when the largest source is used up
    assert [sources[b[0]] for b in batches] == [0, 1, 2] * 10  # alternate source by source
    assert all(len({sources[i] for i in b}) == 1 for b in batches)
    counts = Counter(i for b in batches for i in b)
    assert all(counts[i] == 1 for i in range(100))  # largest source: each example once
    assert all(counts[i] in (3, 4) for i in range(100, 130))  # 30 examples cycled over 10 batches
    assert all(counts[i] == 10 for i in range(130, 140))


def test_balanced_batches_hold_every_source():
    sizes = [100, 30, 10]
    sources = [s for s, n in enumerate(sizes) for _ in range(n)]
    sampler = MultiTaskBatchSampler(list(range(140)), sources, 8, sampling="balanced", seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 34  # the largest source's share is 3: ceil(100 / 3)
    shares = [[sum(sources[i] == s for i in b) for s in range(3)] for b in batches]
    # one batch holds the largest source's last example (batch order is shuffled)
    assert sorted(shares).count([3, 3, 2]) == 33 and [1, 3, 2] in shares
    counts = Counter(i for b in batches for i in b)
    assert all(counts[i] == 1 for i in range(100))  # largest source: each example once
    assert all(counts[i] >= 3 for i in range(100, 140))  # the small ones cycle
    assert sampler.batches_for_epoch(0) == batches and sampler.batches_for_epoch(1) != batches


def test_temperature_epoch_size_and_source_shares():
    sizes = [900, 100]
    sources = [s for s, n in enumerate(sizes) for _ in range(n)]

    def batch_share(temperature):
        sampler = MultiTaskBatchSampler([5] * 1000, sources, 10, sampling="temperature",
                                        temperature=temperature, seed=0)
        picked = []
        for epoch in range(20):
            batches = sampler.batches_for_epoch(epoch)
            seen = sum(len(b) for b in batches)
            assert 1000 <= seen < 1010  # an epoch holds (just over) all examples
            assert all(len({sources[i] for i in b}) == 1 for b in batches)
            picked += [sources[b[0]] for b in batches]
        return picked.count(1) / len(picked)

    expected_t1 = 100 / 1000
    expected_t100 = 100 ** 0.01 / (900 ** 0.01 + 100 ** 0.01)
    assert abs(batch_share(1.0) - expected_t1) < 0.03
    assert abs(batch_share(100.0) - expected_t100) < 0.05
    assert batch_share(100.0) > batch_share(2.0) > batch_share(1.0)


@pytest.mark.parametrize("mode", ["proportional", "round_robin", "temperature", "balanced"])
def test_ranks_get_equal_shares_covering_the_epoch(varied_lengths, mode):
    sources = [i % 2 for i in range(2000)]
    full = MultiTaskBatchSampler(varied_lengths, sources, 16, sampling=mode).batches_for_epoch(0)
    shards = [list(MultiTaskBatchSampler(varied_lengths, sources, 16, sampling=mode,
                                         num_replicas=3, rank=r)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == -(-len(full) // 3)
    merged = [b for s in shards for b in s]
    assert all(b in merged for b in full)


def test_lightning_hook_reaches_sampler(varied_lengths):
    sampler = MultiTaskBatchSampler(varied_lengths, [0] * 2000, 16)
    sampler.sampler.set_epoch(7)  # Lightning calls set_epoch on batch_sampler.sampler
    assert list(sampler) == sampler.batches_for_epoch(7)


def test_bad_arguments():
    with pytest.raises(ValueError, match="sampling"):
        MultiTaskBatchSampler([1], [0], 4, sampling="uniform")
    with pytest.raises(ValueError, match="temperature"):
        MultiTaskBatchSampler([1], [0], 4, sampling="temperature", temperature=0)
    with pytest.raises(ValueError, match="balanced"):
        MultiTaskBatchSampler([1], [0], 4, sampling="balanced", max_tokens=64)
