"""The data module's loaders: a training loader that resumes mid-epoch, and an evaluation
sampler that shards examples across DDP ranks without repeating any."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from mtst.data.batching import world_and_rank


class ResumableDataLoader(DataLoader):
    """The training loader, stateful in Lightning's sense (``state_dict``/``load_state_dict``):
    checkpoints record the epoch and how many batches the loop has taken, so a run resumed
    mid-epoch continues with the next batch instead of replaying the epoch from its start.

    "Taken" means handed to the consumer: ``__iter__`` wraps torch's iterator in one that counts
    the batches it returns. Loader workers prefetch batches ahead of that (and the batch
    sampler's position runs ahead with them), so neither the sampler nor the workers can say
    which batches the loop has actually received.

    It draws worker seeds from its own generator, not the global RNG, so creating an iterator
    does not shift the random stream (dropout) that a resumed run must reproduce.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        sampler = kwargs.get("batch_sampler")
        seed = getattr(sampler, "seed", 0)
        kwargs.setdefault("generator", torch.Generator().manual_seed(int(seed)))
        super().__init__(*args, **kwargs)
        self._live_iterator: CountingIterator | None = None

    def __iter__(self) -> CountingIterator:
        # torch's iterator (and with it the workers, which take the sampler's position at once)
        # is made at the first batch, not here: Lightning calls iter() while it sets the fit up,
        # before a resumed run can apply its checkpoint's data position at `on_train_start`
        self._live_iterator = CountingIterator(super().__iter__, self.__len__)
        return self._live_iterator

    def state_dict(self) -> dict[str, Any]:
        sampler = self.batch_sampler
        taken = self._live_iterator.yielded if self._live_iterator is not None else 0
        return {"epoch": sampler.current_epoch(), "batches": sampler.skipped + taken}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_sampler.resume(int(state["epoch"]), int(state["batches"]))


class CountingIterator(Iterator[Any]):
    """An iterator over a loader's batches that counts how many it has returned; the loader's
    own iterator is made by `make` when the first batch is asked for.

    Args:
        make: makes the loader's iterator (torch's `DataLoader.__iter__`).
        length: how many batches the loader yields now (the loader's `__len__`: a resumed
            sampler's length changes when its position is applied).
    """

    def __init__(self, make: Callable[[], Iterator[Any]], length: Callable[[], int]) -> None:
        self._make, self._length = make, length
        self._batches: Iterator[Any] | None = None
        self.yielded = 0

    def __next__(self) -> Any:
        if self._batches is None:
            self._batches = self._make()
        batch = next(self._batches)  # StopIteration and loader errors pass through uncounted
        self.yielded += 1
        return batch

    def __len__(self) -> int:
        return self._length()


class ShardedEvalSampler(Sampler[int]):
    """Evaluation order 0..n-1; under DDP rank r takes examples r, r+world, ... with no padding,
    so metrics summed across ranks count every example exactly once."""

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __iter__(self) -> Iterator[int]:
        world, rank = world_and_rank()
        return iter(range(rank, self.size, world))

    def __len__(self) -> int:
        world, rank = world_and_rank()
        return len(range(rank, self.size, world))
