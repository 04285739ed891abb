"""The resumable training loader counts the batches it hands to the loop, not those its workers or
its batch sampler have prepared ahead; a loader resumed from that count continues with the next
batch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mtst.data.batching import MultiTaskBatchSampler
from mtst.data.loaders import ResumableDataLoader

N = 40  # examples; batches of 2: 20 per epoch


class CountingSampler(MultiTaskBatchSampler):
    """Counts the batches of indices it gives the loader (the workers' prefetch included)."""

    given = 0

    def __iter__(self) -> Iterator[list[int]]:
        for batch in super().__iter__():
            CountingSampler.given += 1
            yield batch


def keep(items: list[int]) -> list[int]:
    return items


def loader(workers: int = 0, persistent: bool = False) -> ResumableDataLoader:
    sampler = CountingSampler([8] * N, [0] * N, 2, seed=3)
    return ResumableDataLoader(list(range(N)), batch_sampler=sampler, collate_fn=keep,
                               num_workers=workers, persistent_workers=persistent,
                               prefetch_factor=4 if workers else None)


def test_a_fresh_loader_has_taken_nothing() -> None:
    assert loader().state_dict() == {"epoch": 0, "batches": 0}


@pytest.mark.parametrize("workers", [0, 2])
def test_the_count_is_the_batches_handed_out_and_resuming_from_it_continues(workers) -> None:
    first = loader(workers)
    first.batch_sampler.set_epoch(1)
    CountingSampler.given = 0
    iterator = iter(first)
    taken = [next(iterator) for _ in range(3)]
    state = first.state_dict()
    if workers:  # the workers were given batches beyond the three the loop received
        assert CountingSampler.given > 3
    assert state == {"epoch": 1, "batches": 3}
    rest = list(iterator)
    assert first.state_dict() == {"epoch": 1, "batches": 20}
    resumed = loader(workers)
    resumed.load_state_dict(state)
    again = iter(resumed)
    assert list(again) == rest and taken + rest == first.batch_sampler.batches_for_epoch(1)
    assert len(again) == len(resumed) == 20
    assert resumed.state_dict() == {"epoch": 1, "batches": 20}  # the skipped ones count as taken


def test_each_epoch_counts_from_zero_with_persistent_workers() -> None:
    persistent = loader(workers=2, persistent=True)
    assert len(list(persistent)) == 20
    iterator = iter(persistent)  # the same worker processes, a new epoch
    next(iterator)
    next(iterator)
    assert persistent.state_dict() == {"epoch": 1, "batches": 2}
