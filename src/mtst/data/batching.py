"""Training batch order: length bucketing and task mixing across sources, deterministic per epoch.

The order of an epoch is a pure function of ``(seed, epoch)``, so a resumed run that calls
``set_epoch`` sees the same batches as the interrupted one. Under DDP each rank takes every
``world_size``-th batch (the list is padded by wrapping so every rank gets the same count); the
trainer must then use ``use_distributed_sampler=False``.

With ``max_tokens`` a batch is not a fixed number of examples but as many as fit the token budget:
padded length (its longest example) x examples <= max_tokens, so short sentences travel in large
batches and long ones in small batches at a near-constant cost per step. An example longer than
the budget is refused (``ValueError`` here; the data module checks ``max_tokens >= max_length``
up front, so with it no example can exceed the budget).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

from mtst.data.store import offsets
from mtst.data.token_budget import token_batches


def world_and_rank() -> tuple[int, int]:
    """The process group's size and this process's rank; (1, 0) outside distributed runs."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


SAMPLING_MODES = ("proportional", "round_robin", "temperature", "balanced")
CHUNK_BATCHES = 50


class EpochBatches:
    """An epoch's batches as one flat index array plus batch boundaries: about 8 bytes per
    example, where a Python list per batch costs ~36 (what kept 14 M examples from fitting)."""

    def __init__(self, order: np.ndarray, bounds: np.ndarray) -> None:
        self.order, self.bounds = order, bounds

    @classmethod
    def join(cls, batches: Sequence[np.ndarray]) -> EpochBatches:
        sizes = np.fromiter((len(b) for b in batches), dtype=np.int64, count=len(batches))
        order = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
        return cls(order, offsets(sizes))

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __getitem__(self, i: int) -> list[int]:
        return self.order[self.bounds[i] : self.bounds[i + 1]].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return (self[i] for i in range(len(self)))

    def sizes(self) -> np.ndarray:
        return np.diff(self.bounds)

    def take(self, which: np.ndarray) -> EpochBatches:
        """The batches ``which`` (in that order, repeats allowed)."""
        sizes = self.sizes()[which]
        bounds = offsets(sizes)
        position = np.repeat(self.bounds[:-1][which] - bounds[:-1], sizes) + np.arange(bounds[-1])
        return EpochBatches(self.order[position], bounds)


def make_batches(indices: np.ndarray, lengths: np.ndarray, batch_size: int, bucket: bool,
                 rng: np.random.Generator, chunk_batches: int = CHUNK_BATCHES,
                 max_tokens: int | None = None) -> EpochBatches:
    """Cut already-shuffled ``indices`` into batches; with ``bucket``, sort chunks of ~50 batches
    by length first (so batches hold similar lengths) and shuffle the batch order afterwards.
    With ``max_tokens`` the batches are filled up to that many padded tokens instead."""
    if max_tokens is not None:
        batches = EpochBatches(*token_batches(indices, lengths, max_tokens, bucket, chunk_batches))
        return batches.take(rng.permutation(len(batches))) if bucket else batches
    n = len(indices)
    bounds = np.append(np.arange(0, n, batch_size), n) if n else np.zeros(1, dtype=np.int64)
    if not bucket:
        return EpochBatches(indices, bounds)
    chunk = np.arange(n) // (batch_size * chunk_batches)  # chunks end on batch boundaries
    ordered = indices[np.lexsort((lengths[indices], chunk))]  # stable: by chunk, then length
    return EpochBatches(ordered, bounds).take(rng.permutation(len(bounds) - 1))


def balanced_shares(batch_size: int, sources: int) -> list[int]:
    """How `sampling=balanced` splits a batch: as evenly as it goes, the first sources taking
    the remainder (batch 32 over 3 sources: 11, 11, 10)."""
    base, extra = divmod(batch_size, sources)
    return [base + (i < extra) for i in range(sources)]


class _SourceStream:
    """Endless batches from one source: each pass is a fresh shuffle (smaller sources cycle)."""

    def __init__(self, indices: np.ndarray, lengths: np.ndarray, batch_size: int, bucket: bool,
                 rng: np.random.Generator, max_tokens: int | None = None) -> None:
        self.indices, self.lengths, self.batch_size, self.bucket, self.rng = (
            indices, lengths, batch_size, bucket, rng)
        self.max_tokens = max_tokens
        self.pending: EpochBatches | None = None
        self.cursor = 0
        self.passes = 0

    def next_pass(self) -> EpochBatches:
        self.passes += 1
        perm = self.indices[self.rng.permutation(len(self.indices))]
        return make_batches(perm, self.lengths, self.batch_size, self.bucket, self.rng,
                            max_tokens=self.max_tokens)

    def __next__(self) -> np.ndarray:
        if self.pending is None or self.cursor == len(self.pending):
            self.pending, self.cursor = self.next_pass(), 0
        i, self.cursor = self.cursor, self.cursor + 1
        return self.pending.order[self.pending.bounds[i] : self.pending.bounds[i + 1]]


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
                 num_replicas: int | None = None, rank: int | None = None,
                 max_tokens: int | None = None) -> None:
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling={sampling!r}: expected one of {', '.join(SAMPLING_MODES)}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: expected a positive integer")
        if sampling == "temperature" and not temperature > 0:
            raise ValueError(f"temperature={temperature}: expected a positive number")
        if sampling == "balanced" and max_tokens is not None:
            raise ValueError(f"max_tokens={max_tokens}: sampling=balanced splits a fixed "
                             "batch_size between the sources; use one or the other")
        if max_tokens is not None and (max_tokens < 1 or drop_last):
            raise ValueError(f"max_tokens={max_tokens}: expected a positive integer, and no "
                             "drop_last (a token-budget batch has no fixed size to be short of)")
        self.lengths = np.asarray(lengths)  # int32 columns (or memory maps) stay as they are
        self.sources = np.asarray(sources)
        self.batch_size, self.sampling, self.temperature = batch_size, sampling, float(temperature)
        self.bucket, self.seed, self.drop_last = bucket_by_length, seed, drop_last
        self.num_replicas, self.rank = num_replicas, rank
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.epoch = 0
        self._active: int | None = None
        self.sampler = _EpochHandle(self)
        self._cache: tuple[int, EpochBatches] | None = None
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
        return list(self._epoch(epoch))

    def _epoch(self, epoch: int) -> EpochBatches:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        if self.sampling == "proportional":
            perm = rng.permutation(len(self.lengths))
            batches = make_batches(perm, self.lengths, self.batch_size, self.bucket, rng,
                                   max_tokens=self.max_tokens)
        elif self.sampling == "balanced":
            sources = self._source_indices()
            shares = balanced_shares(self.batch_size, len(sources))
            streams = [_SourceStream(ix, self.lengths, share, self.bucket, rng)
                       for ix, share in zip(sources, shares, strict=True) if share]
            batches = EpochBatches.join(self._balanced(streams))
        else:
            streams = [_SourceStream(ix, self.lengths, self.batch_size, self.bucket, rng,
                                     self.max_tokens) for ix in self._source_indices()]
            batches = EpochBatches.join(self._round_robin(streams) if self.sampling == "round_robin"
                                        else self._temperature(streams, rng))
        if self.drop_last:
            full = np.flatnonzero(batches.sizes() == self.batch_size)
            batches = batches.take(full if len(full) else np.arange(min(1, len(batches))))
        self._cache = (epoch, batches)
        return batches

    @staticmethod
    def _round_robin(streams: list[_SourceStream]) -> list[np.ndarray]:
        """One batch per source in turn until the largest source has been seen once."""
        first = [s.next_pass() for s in streams]
        rounds = max(len(b) for b in first)
        for s, b in zip(streams, first, strict=True):
            s.pending, s.cursor = b, 0
        return [next(s) for _ in range(rounds) for s in streams]

    @staticmethod
    def _balanced(streams: list[_SourceStream]) -> list[np.ndarray]:
        """Every batch takes its share from every source, until the largest source has been seen
        once: each task of a multi-corpus run is in every batch (what gradient-level weighting
        needs to have gradients to combine, and LibMTL's one-batch-per-task step)."""
        first = [s.next_pass() for s in streams]
        rounds = max(len(b) for b in first)
        for s, b in zip(streams, first, strict=True):
            s.pending, s.cursor = b, 0
        return [np.concatenate([next(s) for s in streams]) for _ in range(rounds)]

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
        return world_and_rank()

    def _shard(self, batches: EpochBatches) -> EpochBatches:
        world, rank = self._world()
        if world == 1:
            return batches
        per_rank = -(-len(batches) // world)
        padded = np.arange(per_rank * world) % len(batches)  # wrap to the first batches
        return batches.take(padded[rank::world])

    def resume(self, epoch: int, batches_done: int) -> None:
        """Continue ``epoch`` after its first ``batches_done`` batches (a mid-epoch resume)."""
        self.set_epoch(epoch)
        self._skip = (int(epoch), int(batches_done))

    def current_epoch(self) -> int:
        return self.epoch if self._active is None else self._active

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self._active = self.epoch
        self.epoch += 1  # a loop that never calls set_epoch still gets a new order each epoch
        batches = self._shard(self._epoch(epoch))
        skip, self._skip = self._skip, None
        self.skipped = skip[1] if skip is not None and skip[0] == epoch else 0
        for i in range(self.skipped, len(batches)):  # __len__ stays the full epoch: Lightning
            yield batches[i]                         # counts the skipped ones as done

    def __len__(self) -> int:
        epoch = self.epoch if self._active is None else self._active
        return len(self._shard(self._epoch(epoch)))
