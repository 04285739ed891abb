"""Token-budget batching (`data.max_tokens`): budgets respected, every example once, deterministic,
resumable, equal DDP shares; `max_tokens=null` keeps the fixed-size order exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtst.checkpoints.file_io import load_checkpoint
from mtst.cli._hydra import report_user_errors
from mtst.cli.train import train_task
from mtst.data.batching import CHUNK_BATCHES, MultiTaskBatchSampler
from mtst.data.loaders import ResumableDataLoader
from mtst.training.entry import train
from tests.conftest import SAVE_EVERY_STEP, TINY_TRAIN, compose_config
from tests.reliability.helpers import Crash

N = 2000


@pytest.fixture
def lengths():
    return np.random.default_rng(0).integers(4, 200, size=N).tolist()


def padded(batch, lengths) -> int:
    return max(lengths[i] for i in batch) * len(batch)


@pytest.mark.parametrize("mode", ["proportional", "round_robin", "temperature"])
@pytest.mark.parametrize("bucket", [True, False])
def test_every_batch_fits_the_budget(lengths, mode, bucket):
    sources = [i % 2 for i in range(N)]
    sampler = MultiTaskBatchSampler(lengths, sources, 16, sampling=mode, bucket_by_length=bucket,
                                    max_tokens=1024)
    batches = list(sampler)
    assert batches and all(padded(b, lengths) <= 1024 for b in batches)
    sizes = {len(b) for b in batches}
    assert len(sizes) > 3  # the number of examples varies with their length
    if mode == "proportional":
        assert sorted(i for b in batches for i in b) == list(range(N))


def test_bucketed_budget_batches_are_nearly_full_and_hold_similar_lengths(lengths):
    batches = list(MultiTaskBatchSampler(lengths, [0] * N, 16, max_tokens=2048, seed=3))
    real = sum(lengths[i] for b in batches for i in b)
    assert real / sum(padded(b, lengths) for b in batches) > 0.9
    # a greedy cut leaves less than one more example of room: the batch could not take the next
    assert np.mean([padded(b, lengths) for b in batches]) > 0.85 * 2048
    maxima = [max(lengths[i] for i in b) for b in batches]
    assert maxima != sorted(maxima)  # the batch order is shuffled after the cut


def test_short_examples_travel_in_larger_batches():
    lengths = [10] * 500 + [100] * 500
    batches = list(MultiTaskBatchSampler(lengths, [0] * 1000, 16, max_tokens=1000, seed=0))
    sizes = {max(lengths[i] for i in b): set() for b in batches}
    for b in batches:
        sizes[max(lengths[i] for i in b)].add(len(b))
    assert max(sizes[100]) == 10 and max(sizes[10]) == 100


def test_deterministic_per_seed_and_epoch(lengths):
    def make(seed):
        return MultiTaskBatchSampler(lengths, [0] * N, 16, seed=seed, max_tokens=1500)

    a, b = make(5), make(5)
    assert a.batches_for_epoch(2) == b.batches_for_epoch(2)
    assert a.batches_for_epoch(2) != a.batches_for_epoch(3)
    assert make(6).batches_for_epoch(2) != a.batches_for_epoch(2)
    a.set_epoch(2)
    assert list(a) == b.batches_for_epoch(2)


def fixed_size_order(lengths, batch_size, seed, epoch):
    """The fixed-size bucketed order as it was before token budgets existed, written out."""
    lengths = np.asarray(lengths)
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(len(lengths))
    chunk = np.arange(len(perm)) // (batch_size * CHUNK_BATCHES)
    ordered = perm[np.lexsort((lengths[perm], chunk))]
    batches = [ordered[i : i + batch_size].tolist() for i in range(0, len(ordered), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def test_null_budget_keeps_the_fixed_size_order(lengths):
    sampler = MultiTaskBatchSampler(lengths, [0] * N, 16, seed=9, max_tokens=None)
    for epoch in (0, 1):
        assert sampler.batches_for_epoch(epoch) == fixed_size_order(lengths, 16, 9, epoch)


@pytest.mark.parametrize("mode", ["proportional", "temperature"])
def test_ranks_get_the_same_number_of_budget_batches(lengths, mode):
    sources = [i % 2 for i in range(N)]
    full = MultiTaskBatchSampler(lengths, sources, 16, sampling=mode,
                                 max_tokens=1024).batches_for_epoch(0)
    shards = [list(MultiTaskBatchSampler(lengths, sources, 16, sampling=mode, max_tokens=1024,
                                         num_replicas=3, rank=r)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == -(-len(full) // 3)
    merged = [b for s in shards for b in s]
    assert all(b in merged for b in full)


def test_a_loader_resumed_mid_epoch_continues_with_the_next_budget_batch(lengths):
    def loader():
        sampler = MultiTaskBatchSampler(lengths, [0] * N, 16, seed=4, max_tokens=1024)
        return ResumableDataLoader(list(range(N)), batch_sampler=sampler,
                                   collate_fn=lambda items: items)

    first = loader()
    first.batch_sampler.set_epoch(1)
    iterator = iter(first)
    taken = [next(iterator) for _ in range(7)]
    state = first.state_dict()
    rest = list(iterator)
    resumed = loader()
    resumed.load_state_dict(state)
    assert state == {"epoch": 1, "batches": 7}
    assert list(resumed) == rest and taken + rest == first.batch_sampler.batches_for_epoch(1)
    assert len(resumed) == len(taken) + len(rest)


@pytest.mark.parametrize("value", [64, "many", True])
def test_a_budget_below_max_length_is_refused_by_the_data_module(value):
    from mtst.data.datamodule import MultiTaskDataModule
    from mtst.errors import MtstError
    from tests.data.conftest import two_tasks

    with pytest.raises(MtstError) as caught:
        MultiTaskDataModule(tasks=two_tasks(), max_tokens=value, max_length=128)
    assert str(caught.value) == (f"data.max_tokens={value!r}: expected null or an integer >= "
                                 "data.max_length=128, so that the longest example fits a batch")


def test_an_example_over_the_budget_is_refused():
    with pytest.raises(ValueError, match="example 2 has 90 tokens, more than max_tokens=64"):
        list(MultiTaskBatchSampler([10, 20, 90, 5], [0] * 4, 2, max_tokens=64))
    with pytest.raises(ValueError, match="max_tokens=0"):
        MultiTaskBatchSampler([1], [0], 4, max_tokens=0)


@pytest.mark.parametrize("value", [64, "many", True])
def test_a_budget_below_max_length_is_a_one_line_config_error(tmp_path, value, capsys):
    cfg = compose_config(tmp_path, TINY_TRAIN + [f"data.max_tokens={value}"])
    with pytest.raises(SystemExit) as caught:
        report_user_errors(train_task)(cfg)
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: data.max_tokens={value!r}: expected null or an integer >= "
                   "data.max_length=128, so that the longest example fits a batch")


RUN = TINY_TRAIN + ["data.max_tokens=256", "trainer.limit_train_batches=4", "run_test=false",
                    *SAVE_EVERY_STEP, "~callbacks.lr_monitor",
                    "trainer.limit_val_batches=1"]


def test_a_budget_run_resumed_mid_epoch_ends_like_the_uninterrupted_one(tmp_path):
    train(compose_config(tmp_path / "ref", RUN))
    crash = ["+callbacks.crash._target_=tests.reliability.helpers.RaiseAtStep",
             "+callbacks.crash.step=2"]
    with pytest.raises(Crash):
        train(compose_config(tmp_path / "run", RUN + crash))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    train(compose_config(tmp_path / "run", RUN + [f"ckpt_path={last}"]))
    final = load_checkpoint(last)
    reference = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.ckpt")
    assert final["global_step"] == reference["global_step"] == 4
    assert all(torch.equal(final["state_dict"][k], v) for k, v in reference["state_dict"].items())
