"""Encoder outputs of a frozen (eval-mode, hence deterministic) encoder, kept per example.

With the encoder frozen, every epoch after the first would recompute exactly the same token
states; serving them from memory leaves only the heads to run. Entries are keyed on
`(split, example_index)` and stored in `dtype` (fp16 by default, half the memory of fp32),
trimmed to the example's real tokens: a split's token states sit back to back in one packed
tensor (grown in place, with up to half its size spare), so a batch is served by one gather
over an index built for the whole batch (no Python work per example), re-padded with zeros: padded positions carry no label, so the heads'
gradients do not depend on what sits there. Past `max_mb` new examples are not stored and their
batches are recomputed.

Features always pass through `dtype` (also when just computed), so every epoch, and a resumed
run, feeds the heads the same rounded values. Each entry also keeps the example's token ids: a
batch is served only when its ids and (right-padded) attention mask equal the stored ones, so a
different dataset evaluated under the same split name is recomputed, not served stale.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from mtst.errors import MtstError

log = logging.getLogger("mtst")

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
Features = tuple[torch.Tensor, torch.Tensor]


def select_rows(features: Features, token_rows: torch.Tensor | None) -> Features:
    """(token states at the flattened positions `token_rows` [N, H], embeddings); both as they
    are when `token_rows` is None."""
    states, embeddings = features
    if token_rows is None:
        return features
    return states.reshape(-1, states.size(-1)).index_select(0, token_rows), embeddings


def real_lengths(mask: torch.Tensor) -> torch.Tensor | None:
    """Real tokens per row [B] when every row of `mask` is right-padded (ones, then zeros);
    None otherwise (such a batch is never cached: its real tokens are not a prefix)."""
    lengths = mask.sum(1)
    positions = torch.arange(mask.size(1), device=mask.device)
    return lengths if torch.equal(mask != 0, positions < lengths[:, None]) else None


class Rows:
    """A tensor that grows along its first dimension: appends copy into spare capacity (grown by
    half when full), so filling it costs O(rows) however many batches it takes."""

    def __init__(self, row_shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.data = torch.zeros((1, *row_shape), dtype=dtype)  # row 0: zeros, a placeholder
        self.size = 1

    def append(self, rows: torch.Tensor) -> None:
        end = self.size + len(rows)
        if end > len(self.data):
            grown = torch.empty((max(end, len(self.data) * 3 // 2 + 16), *self.data.shape[1:]),
                                dtype=self.data.dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size:end] = rows
        self.size = end

    def view(self) -> torch.Tensor:
        return self.data[: self.size]


class SplitTable:
    """One split's entries, packed: every entry's token states back to back in one [rows, H]
    tensor, its token ids alongside, one embedding row per entry. Row 0 is zeros: padded
    positions of a served batch gather it (and entry 0 is a placeholder: slot 0 means none).
    A replaced entry leaves dead rows, dropped once they outweigh the live ones."""

    def __init__(self, hidden: int, dtype: torch.dtype) -> None:
        self.slot_of = torch.empty(0, dtype=torch.long)  # example index -> entry, 0: none
        self.start = Rows((), torch.long)  # entry -> first row in `states`
        self.length = Rows((), torch.long)  # entry -> real tokens
        self.states = Rows((hidden,), dtype)
        self.ids = Rows((), torch.int32)
        self.emb = Rows((hidden,), dtype)
        self.row_bytes = hidden * self.states.data.element_size()
        self.nbytes = 0  # live entries' token states and embeddings
        self.dead_bytes = 0
        self._arange = torch.arange(64)

    def __len__(self) -> int:
        return int((self.slot_of > 0).sum())

    def slots(self, keys: torch.Tensor) -> torch.Tensor:
        """Entry of each example index [B]; 0 where none is stored."""
        out = torch.zeros_like(keys)
        known = (keys >= 0) & (keys < len(self.slot_of))
        out[known] = self.slot_of[keys[known]]
        return out

    def bytes_of(self, slots: torch.Tensor) -> int:
        held = slots[slots > 0]
        return int(((self.length.view()[held] + 1) * self.row_bytes).sum())

    def matches(self, slots: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Which rows [B] hold exactly their stored example (same token ids, same length), and
        each row's gather index [B, T] into the packed rows (0 on padding)."""
        positions = torch.arange(ids.size(1))
        real = positions < lengths[:, None]
        same = (slots > 0) & (self.length.view()[slots] == lengths)
        index = torch.where(real & same[:, None], self.start.view()[slots][:, None] + positions, 0)
        stored = self.ids.view().index_select(0, index.flatten()).view_as(index)
        same &= (stored == torch.where(real, ids, 0).to(torch.int32)).all(1)
        return same, index

    def lookup(self, keys: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
               token_rows: torch.Tensor | None = None) -> Features | None:
        """The stored (token states [B, T, H] zero-padded, or [N, H] at the flattened positions
        `token_rows`; embeddings [B, H]) when every row of the batch is stored with exactly its
        token ids and right-padded mask; None otherwise. The hit path of every cached step, so
        it checks with few tensor operations (each costs microseconds on the CPU, however small
        its tensor): the mask must equal the stored lengths' right padding, and the ids the
        stored ids (both zeroed on padding)."""
        width = ids.size(1)
        low, high = torch.aminmax(keys)
        if int(low) < 0 or int(high) >= len(self.slot_of):
            return None
        slots = self.slot_of.index_select(0, keys)
        if not bool(slots.all()):
            return None
        lengths = self.length.data.index_select(0, slots)
        if int(lengths.max()) > width:
            return None
        positions = self._positions(width)
        real = positions < lengths[:, None]
        if not torch.equal(real, mask != 0):
            return None
        index = torch.where(real, self.start.data.index_select(0, slots)[:, None] + positions, 0)
        stored = self.ids.data.index_select(0, index.view(-1)).view_as(index)
        if not torch.equal(stored, torch.where(real, ids, 0).to(torch.int32)):
            return None
        rows = index.view(-1) if token_rows is None else index.view(-1).index_select(0, token_rows)
        states = self.states.data.index_select(0, rows)  # `index_select`: several times faster
        if token_rows is None:                            # than advanced indexing on the CPU
            states = states.view(*index.shape, -1)
        return states, self.emb.data.index_select(0, slots)

    def _positions(self, width: int) -> torch.Tensor:
        if len(self._arange) < width:
            self._arange = torch.arange(max(width, 2 * len(self._arange)))
        return self._arange[:width]

    def add(self, keys: torch.Tensor, lengths: torch.Tensor, states: torch.Tensor,
            ids: torch.Tensor, emb: torch.Tensor) -> None:
        """Store rows (rounded, on the CPU, distinct `keys`) as the entries of `keys`."""
        freed = self.bytes_of(self.slots(keys))  # other examples under these indices go dead
        self.nbytes -= freed
        self.dead_bytes += freed
        real = torch.arange(states.size(1)) < lengths[:, None]
        first = self.start.size
        self.start.append(self.states.size + lengths.cumsum(0) - lengths)
        self.length.append(lengths)
        # right padding: row-major order keeps each example's tokens together and in order
        self.states.append(states[real])
        self.ids.append(ids[real].to(torch.int32))
        self.emb.append(emb)
        grow = int(keys.max()) + 1 - len(self.slot_of)
        if grow > 0:
            self.slot_of = torch.cat([self.slot_of, self.slot_of.new_zeros(grow)])
        self.slot_of[keys] = torch.arange(first, first + len(keys))
        self.nbytes += self.bytes_of(self.slot_of[keys])
        if self.dead_bytes > max(self.nbytes, 2**20):
            self._compact()

    def _compact(self) -> None:
        """Rebuild with the live entries only."""
        keys = (self.slot_of > 0).nonzero().flatten()
        slots = self.slot_of[keys]
        lengths = self.length.view()[slots]
        width = int(lengths.max()) if len(keys) else 0
        real = torch.arange(width) < lengths[:, None]
        index = torch.where(real, self.start.view()[slots][:, None] + torch.arange(width), 0)
        states, ids, emb = self.states.view()[index], self.ids.view()[index], self.emb.view()[slots]
        fresh = SplitTable(self.states.data.size(1), self.states.data.dtype)
        if len(keys):
            fresh.add(keys, lengths, states, ids, emb)
        self.__dict__.update(fresh.__dict__)


def first_occurrences(keys: torch.Tensor) -> torch.Tensor:
    """[B] bool: the first row of each distinct key (a batch may hold an example twice)."""
    order = torch.argsort(keys, stable=True)
    ordered = keys[order]
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    out = torch.zeros_like(first)
    out[order[first]] = True
    return out


class FeatureCache:
    """(token states, sentence embedding) per example of each split, capped at `max_mb`.

    Args:
        dtype: the dtype outputs are kept in (`DTYPES`; float32 is bit-identical to recomputing).
        max_mb: past this size the remaining examples are recomputed every epoch.
    """

    def __init__(self, dtype: str = "float16", max_mb: float = 1024.0) -> None:
        if dtype not in DTYPES:
            raise MtstError(f"freeze.cache_dtype={dtype!r}: expected one of {', '.join(DTYPES)}")
        if max_mb is None or float(max_mb) < 0:
            raise MtstError(f"freeze.cache_max_mb={max_mb!r}: expected a size in MB >= 0")
        self.dtype = DTYPES[dtype]
        self.max_bytes = int(float(max_mb) * 2**20)
        self.tables: dict[str, SplitTable] = {}
        self.hits = 0
        self.misses = 0
        self._warned: set[str] = set()

    @property
    def nbytes(self) -> int:
        """Bytes of the stored token states and embeddings (what `max_mb` caps)."""
        return sum(t.nbytes for t in self.tables.values())

    def clear(self) -> None:
        """Forget everything (the encoder is about to change)."""
        self.tables.clear()

    def __len__(self) -> int:
        return sum(len(t) for t in self.tables.values())

    def count(self, split: str) -> int:
        """Examples of `split` stored."""
        return len(self.tables[split]) if split in self.tables else 0

    def features(
        self, split: str, batch: dict[str, torch.Tensor], compute: Callable[[], Features],
        token_rows: torch.Tensor | None = None,
    ) -> Features:
        """Cached features of the batch when every example is cached, else `compute()` (stored);
        the token states at the flattened positions `token_rows` only when given."""
        mask = batch["attention_mask"]
        keys, ids = batch["example_index"].cpu(), batch["input_ids"].cpu()
        table = self.tables.get(split)
        if table is not None and len(keys):
            rows = None if token_rows is None else token_rows.cpu()
            served = table.lookup(keys, ids, mask.cpu(), rows)
            if served is not None:
                self.hits += 1
                return tuple(t.to(mask.device).float() for t in served)
        lengths = real_lengths(mask.detach().cpu())
        self.misses += 1
        states, embeddings = compute()
        rounded = states.to(self.dtype), embeddings.to(self.dtype)
        if not all(bool(torch.isfinite(r).all()) for r in rounded):
            self._warn_once("overflow", f"feature cache: values overflow {self.dtype}; this batch "
                            "is not cached (set freeze.cache_dtype=float32 or bfloat16)")
            return select_rows((states, embeddings), token_rows)
        if lengths is not None and len(keys):
            self._store(split, keys, ids, lengths, *rounded)
        return select_rows((rounded[0].to(states.dtype), rounded[1].to(embeddings.dtype)), token_rows)

    def _store(self, split: str, keys: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor,
               states: torch.Tensor, emb: torch.Tensor) -> None:
        table = self.tables.get(split)
        if table is None:
            table = self.tables[split] = SplitTable(states.size(-1), self.dtype)
        slots = table.slots(keys)
        same = table.matches(slots, ids, lengths)[0] if bool((slots > 0).any()) else slots > 0
        rows = (~same & first_occurrences(keys)).nonzero().flatten()
        if not len(rows):
            return
        keys, lengths = keys[rows], lengths[rows]
        # what fits goes in, in batch order: (tokens + the embedding) rows of `dtype` each
        room = self.max_bytes - self.nbytes + table.bytes_of(table.slots(keys))
        fits = int(((lengths + 1) * table.row_bytes).cumsum(0).le(room).sum())
        if fits < len(rows):
            self._warn_once("full", f"feature cache full at {self.nbytes / 2**20:.0f} MB "
                            "(freeze.cache_max_mb): the remaining examples are recomputed")
        if fits:
            rows = rows[:fits]
            table.add(keys[:fits], lengths[:fits], states.detach()[rows].cpu(), ids[rows],
                      emb.detach()[rows].cpu())

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)
