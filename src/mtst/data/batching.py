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
import torch.distributed as dist
from torch.utils.data import Sampler

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

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self._active = self.epoch
        self.epoch += 1  # a loop that never calls set_epoch still gets a new order each epoch
        yield from self._shard(self.batches_for_epoch(epoch))

    def __len__(self) -> int:
        epoch = self.epoch if self._active is None else self._active
        return len(self._shard(self.batches_for_epoch(epoch)))
