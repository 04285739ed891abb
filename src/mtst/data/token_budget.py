"""Token-budget batching (``data.max_tokens``): batches of similar length filled up to a number
of padded tokens, instead of a fixed number of examples.

A step then costs about the same whatever the sentence lengths: a batch of short sentences holds
many of them, a batch of long ones few, and the padded size (longest example x examples, what the
collator allocates) never exceeds the budget.
"""

from __future__ import annotations

import numpy as np


def token_bounds(lengths: np.ndarray, max_tokens: int) -> np.ndarray:
    """Batch boundaries over ``lengths`` taken in order: each batch is the longest run from its
    start whose running maximum length x count stays within ``max_tokens``."""
    bounds, start, longest = [0], 0, 0
    for i, length in enumerate(lengths.tolist()):
        longest = max(longest, length)
        if longest * (i - start + 1) > max_tokens:
            bounds.append(i)
            start, longest = i, length
    if len(lengths):
        bounds.append(len(lengths))
    return np.asarray(bounds, dtype=np.int64)


def token_batches(indices: np.ndarray, lengths: np.ndarray, max_tokens: int, bucket: bool,
                  chunk_batches: int) -> tuple[np.ndarray, np.ndarray]:
    """``(order, bounds)`` of token-budget batches over the already-shuffled ``indices``.

    With ``bucket``, chunks of about ``chunk_batches`` batches' worth of examples are sorted by
    length and cut on their own (a batch never spans two chunks), as fixed-size bucketing does;
    the caller shuffles the batch order. An example longer than the budget fits in no batch and
    is a ``ValueError`` naming it.
    """
    own = np.asarray(lengths[indices], dtype=np.int64)
    if not len(own):
        return indices, np.zeros(1, dtype=np.int64)
    if own.max() > max_tokens:
        where = int(indices[int(np.argmax(own))])
        raise ValueError(f"example {where} has {int(own.max())} tokens, more than "
                         f"max_tokens={max_tokens}: it fits in no batch")
    if not bucket:
        return indices, token_bounds(own, max_tokens)
    per_batch = max(1, max_tokens // max(1, int(own.mean())))
    chunk = np.arange(len(indices)) // (per_batch * chunk_batches)
    order = np.lexsort((own, chunk))  # stable: by chunk, then length
    ordered, own, chunk = indices[order], own[order], chunk[order]
    starts = np.flatnonzero(np.diff(chunk, prepend=-1))
    ends = np.append(starts[1:], len(chunk))
    bounds = [np.zeros(1, dtype=np.int64)]
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        bounds.append(token_bounds(own[a:b], max_tokens)[1:] + a)
    return ordered, np.concatenate(bounds)
