"""Training batch order: length bucketing and task mixing across sources, deterministic per epoch.

The order of an epoch is a pure function of ``(seed, epoch)``, so a resumed run that calls
``set_epoch`` sees the same batches as the interrupted one. Under DDP each rank takes every
``world_size``-th batch (the list is padded by wrapping so every rank gets the same count); the
trainer must then use ``use_distributed_sampler=False``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

SAMPLING_MODES = ("proportional", "round_robin", "temperature")
CHUNK_BATCHES = 50


def make_batches(indices: np.ndarray, lengths: np.ndarray, batch_size: int, bucket: bool,
                 rng: np.random.Generator, chunk_batches: int = CHUNK_BATCHES) -> list[np.ndarray]:
    """Cut already-shuffled ``indices`` into batches; with ``bucket``, sort chunks of ~50 batches
    by length first (so batches hold similar lengths) and shuffle the batch order afterwards."""
    if not bucket:
        return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    chunk = batch_size * chunk_batches
    batches: list[np.ndarray] = []
    for c in range(0, len(indices), chunk):
        part = indices[c : c + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


class _SourceStream:
    """Endless batches from one source: each pass is a fresh shuffle (smaller sources cycle)."""

    def __init__(self, indices: np.ndarray, lengths: np.ndarray, batch_size: int, bucket: bool,
                 rng: np.random.Generator) -> None:
        self.indices, self.lengths, self.batch_size, self.bucket, self.rng = (
            indices, lengths, batch_size, bucket, rng)
        self.queue: list[np.ndarray] = []
        self.passes = 0

    def next_pass(self) -> list[np.ndarray]:
        self.passes += 1
        perm = self.indices[self.rng.permutation(len(self.indices))]
        return make_batches(perm, self.lengths, self.batch_size, self.bucket, self.rng)

    def __next__(self) -> np.ndarray:
        if not self.queue:
            self.queue = self.next_pass()
        return self.queue.pop(0)


class _EpochHandle:
    """Exposed as ``batch_sampler.sampler``: Lightning calls ``set_epoch`` on that object only."""

    def __init__(self, owner: MultiTaskBatchSampler) -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class MultiTaskBatchSampler(Sampler[list[int]]):
    """Yields lists of example indices; see data/README.md for what an epoch means per mode."""

    def __init__(self, lengths: Sequence[int], sources: Sequence[int], batch_size: int,
                 sampling: str = "proportional", temperature: float = 2.0,
                 bucket_by_length: bool = True, seed: int = 42, drop_last: bool = False,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling={sampling!r}: expected one of {', '.join(SAMPLING_MODES)}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: expected a positive integer")
        if sampling == "temperature" and not temperature > 0:
            raise ValueError(f"temperature={temperature}: expected a positive number")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.sources = np.asarray(sources, dtype=np.int64)
        self.batch_size, self.sampling, self.temperature = batch_size, sampling, float(temperature)
        self.bucket, self.seed, self.drop_last = bucket_by_length, seed, drop_last
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        self._active: int | None = None
        self.sampler = _EpochHandle(self)
        self._cache: tuple[int, list[list[int]]] | None = None
        self._skip: tuple[int, int] | None = None
        self.skipped = 0  # batches skipped at the start of the running epoch (resume)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._active = int(epoch), None

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.seed = int(state["epoch"]), int(state["seed"])

    def _source_indices(self) -> list[np.ndarray]:
        return [np.flatnonzero(self.sources == s) for s in np.unique(self.sources)]

    def batches_for_epoch(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` across ranks; depends only on ``(seed, epoch)`` and the data."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        if self.sampling == "proportional":
            perm = rng.permutation(len(self.lengths))
            batches = make_batches(perm, self.lengths, self.batch_size, self.bucket, rng)
        else:
            streams = [_SourceStream(ix, self.lengths, self.batch_size, self.bucket, rng)
                       for ix in self._source_indices()]
            batches = self._round_robin(streams) if self.sampling == "round_robin" else (
                self._temperature(streams, rng))
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size] or batches[:1]
        out = [b.tolist() for b in batches]
        self._cache = (epoch, out)
        return out

    @staticmethod
    def _round_robin(streams: list[_SourceStream]) -> list[np.ndarray]:
        """One batch per source in turn until the largest source has been seen once."""
        first = [s.next_pass() for s in streams]
        rounds = max(len(b) for b in first)
        for s, b in zip(streams, first, strict=True):
            s.queue = b
        return [next(s) for _ in range(rounds) for s in streams]

    def _temperature(self, streams: list[_SourceStream], rng: np.random.Generator) -> list[np.ndarray]:
        """Pick a source per batch with p ~ n_i^(1/T) until the epoch holds >= all examples."""
        sizes = np.asarray([len(s.indices) for s in streams], dtype=np.float64)
        probs = sizes ** (1.0 / self.temperature)
        probs /= probs.sum()
        total, seen, batches = int(sizes.sum()), 0, []
        while seen < total:
            batch = next(streams[int(rng.choice(len(streams), p=probs))])
            batches.append(batch)
            seen += len(batch)
        return batches

    def _world(self) -> tuple[int, int]:
        if self.num_replicas is not None:
            return self.num_replicas, self.rank or 0
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def _shard(self, batches: list[list[int]]) -> list[list[int]]:
        world, rank = self._world()
        if world == 1:
            return batches
        per_rank = -(-len(batches) // world)
        padded = batches + batches[: per_rank * world - len(batches)]
        return padded[rank::world]

    def resume(self, epoch: int, batches_done: int) -> None:
        """Continue ``epoch`` after its first ``batches_done`` batches (a mid-epoch resume)."""
        self.set_epoch(epoch)
        self._skip = (int(epoch), int(batches_done))

    def current_epoch(self) -> int:
        return self.epoch if self._active is None else self._active

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self._active = self.epoch
        self.epoch += 1  # a loop that never calls set_epoch still gets a new order each epoch
        batches = self._shard(self.batches_for_epoch(epoch))
        skip, self._skip = self._skip, None
        self.skipped = skip[1] if skip is not None and skip[0] == epoch else 0
        yield from batches[self.skipped:]  # __len__ stays the full epoch: Lightning counts the skipped

    def __len__(self) -> int:
        epoch = self.epoch if self._active is None else self._active
        return len(self._shard(self.batches_for_epoch(epoch)))


class ResumableDataLoader(DataLoader):
    """The training loader, stateful in Lightning's sense (``state_dict``/``load_state_dict``):
    checkpoints record the epoch and how many batches the loop has taken, so a run resumed
    mid-epoch continues with the next batch instead of replaying the epoch from its start.

    It draws worker seeds from its own generator, not the global RNG, so creating an iterator
    does not shift the random stream (dropout) that a resumed run must reproduce.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        sampler = kwargs.get("batch_sampler")
        seed = getattr(sampler, "seed", 0)
        kwargs.setdefault("generator", torch.Generator().manual_seed(int(seed)))
        super().__init__(*args, **kwargs)
        self._live_iterator: Any = None

    def __iter__(self) -> Any:
        self._live_iterator = super().__iter__()
        return self._live_iterator

    def state_dict(self) -> dict[str, Any]:
        sampler = self.batch_sampler
        taken = getattr(self._live_iterator, "_num_yielded", 0) if self._live_iterator else 0
        return {"epoch": sampler.current_epoch(), "batches": sampler.skipped + int(taken)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_sampler.resume(int(state["epoch"]), int(state["batches"]))


class ShardedEvalSampler(Sampler[int]):
    """Evaluation order 0..n-1; under DDP rank r takes examples r, r+world, ... with no padding,
    so metrics summed across ranks count every example exactly once."""

    def __init__(self, size: int) -> None:
        self.size = int(size)

    @staticmethod
    def _world() -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def __iter__(self) -> Iterator[int]:
        world, rank = self._world()
        return iter(range(rank, self.size, world))

    def __len__(self) -> int:
        world, rank = self._world()
        return len(range(rank, self.size, world))
