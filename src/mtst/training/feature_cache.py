"""Encoder outputs of a frozen (eval-mode, hence deterministic) encoder, kept per example.

With the encoder frozen, every epoch after the first would recompute exactly the same token
states; serving them from memory leaves only the heads to run. Entries are keyed on
`(split, example_index)`, stored trimmed to the example's real tokens in `dtype` (fp16 by default,
half the memory of fp32), and re-padded with zeros: padded positions carry no label, so the
heads' gradients do not depend on what sits there. Past `max_mb` new examples are not stored and
their batches are recomputed.

Features always pass through `dtype` (also when just computed), so every epoch, and a resumed
run, feeds the heads the same rounded values. Each entry also keeps a hash of its token ids and
attention mask, so a different dataset evaluated under the same split name is recomputed, not
served stale.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import numpy as np
import torch

from mtst.errors import MtstError

log = logging.getLogger("mtst")

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
Features = tuple[torch.Tensor, torch.Tensor]
Signature = tuple[int, bytes]
Entry = tuple[torch.Tensor, torch.Tensor, Signature]


def signatures(batch: dict[str, torch.Tensor]) -> list[Signature]:
    """(number of real tokens, BLAKE2b digest of the ids and the mask) of each row.

    Trailing padding is left out, so one example padded to different batch lengths keeps its
    signature; sums of ids would not do (`[a, b, b, a]` and `[b, a, a, b]` share them).
    """
    mask = batch["attention_mask"].detach().to("cpu", torch.int64).numpy()
    ids = batch["input_ids"].detach().to("cpu", torch.int64).numpy() * mask
    real = mask != 0  # the end of each row's last real token, found for the whole batch at once
    ends = np.where(real.any(1), mask.shape[1] - np.argmax(real[:, ::-1], axis=1), 0)
    out = []
    for row_ids, row_mask, end, count in zip(ids, mask, ends.tolist(), mask.sum(1).tolist(),
                                             strict=True):
        digest = hashlib.blake2b(row_ids[:end].tobytes(), digest_size=16)
        digest.update(row_mask[:end].tobytes())
        out.append((int(count), digest.digest()))
    return out


class FeatureCache:
    """(token states, sentence embedding) per example of each split, capped at `max_mb`."""

    def __init__(self, dtype: str = "float16", max_mb: float = 1024.0) -> None:
        if dtype not in DTYPES:
            raise MtstError(f"freeze.cache_dtype={dtype!r}: expected one of {', '.join(DTYPES)}")
        if max_mb is None or float(max_mb) < 0:
            raise MtstError(f"freeze.cache_max_mb={max_mb!r}: expected a size in MB >= 0")
        self.dtype = DTYPES[dtype]
        self.max_bytes = int(float(max_mb) * 2**20)
        self.entries: dict[str, dict[int, Entry]] = {}
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._warned: set[str] = set()

    def clear(self) -> None:
        """Forget everything (the encoder is about to change)."""
        self.entries.clear()
        self.nbytes = 0

    def __len__(self) -> int:
        return sum(len(d) for d in self.entries.values())

    def features(
        self, split: str, batch: dict[str, torch.Tensor], compute: Callable[[], Features]
    ) -> Features:
        """Cached features of the batch when every example is cached, else `compute()` (stored)."""
        keys, sigs = batch["example_index"].tolist(), signatures(batch)
        served = self._lookup(split, keys, sigs, batch["attention_mask"])
        if served is not None:
            self.hits += 1
            return served
        self.misses += 1
        states, embeddings = compute()
        rounded = states.to(self.dtype), embeddings.to(self.dtype)
        if not all(bool(torch.isfinite(r).all()) for r in rounded):
            self._warn_once("overflow", f"feature cache: values overflow {self.dtype}; this batch "
                            "is not cached (set freeze.cache_dtype=float32 or bfloat16)")
            return states, embeddings
        self._store(split, keys, sigs, *rounded)
        return rounded[0].to(states.dtype), rounded[1].to(embeddings.dtype)

    def _lookup(self, split: str, keys: list[int], sigs: list[Signature],
                mask: torch.Tensor) -> Features | None:
        table = self.entries.get(split)
        if not table:
            return None
        rows = [table.get(k) for k in keys]
        if any(row is None or row[2] != sig for row, sig in zip(rows, sigs, strict=True)):
            return None
        hidden = rows[0][0].size(-1)
        states = torch.zeros(len(rows), mask.size(1), hidden, dtype=torch.float32)
        for i, (row_states, _, _) in enumerate(rows):
            states[i, : row_states.size(0)] = row_states
        embeddings = torch.stack([emb for _, emb, _ in rows]).float()
        return states.to(mask.device), embeddings.to(mask.device)

    def _store(self, split: str, keys: list[int], sigs: list[Signature],
               states: torch.Tensor, emb: torch.Tensor) -> None:
        table = self.entries.setdefault(split, {})
        states, emb = states.detach().cpu(), emb.detach().cpu()
        for i, (key, sig) in enumerate(zip(keys, sigs, strict=True)):
            old = table.get(key)
            if old is not None and old[2] == sig:
                continue
            if old is not None:  # another example under this index: replace it
                self.nbytes -= _size(old)
                del table[key]
            # right padding: the example's real tokens come first
            row = (states[i, : sig[0]].clone(), emb[i].clone(), sig)
            if self.nbytes + _size(row) > self.max_bytes:
                self._warn_once("full", f"feature cache full at {self.nbytes / 2**20:.0f} MB "
                                "(freeze.cache_max_mb): the remaining examples are recomputed")
                return
            table[key] = row
            self.nbytes += _size(row)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)


def _size(entry: Entry) -> int:
    return sum(t.numel() * t.element_size() for t in entry[:2])
