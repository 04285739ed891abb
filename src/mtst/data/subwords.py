"""Sub-token ids of words, tokenised once per distinct word, and what tokenising cost.

Kept apart from ``alignment`` (which lays the ids out into columns) so each stays readable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtst.errors import MtstError

log = logging.getLogger(__name__)
MAX_CACHED_WORDS = 1_000_000


@dataclass
class AlignmentStats:
    """What tokenisation cost: truncated examples/words and words with no sub-token at all."""

    examples: int = 0
    truncated_examples: int = 0
    truncated_words: int = 0
    empty_words: int = 0
    empty_examples: list[str] = field(default_factory=list)

    def warn(self, split: str, max_length: int) -> None:
        """One summary warning per split, so a long corpus does not flood the log."""
        if self.truncated_examples:
            log.warning(
                "%s data: %d of %d example(s) exceed max_length=%d sub-tokens; %d word(s) were cut "
                "and count as predicted O in evaluation (raise data.max_length to keep them)",
                split, self.truncated_examples, self.examples, max_length, self.truncated_words)
        if self.empty_words:
            log.warning(
                "%s data: %d word(s) produce no sub-token with this tokenizer (first at %s); they "
                "count as predicted O", split, self.empty_words, self.empty_examples[0])


class SubwordCache:
    """Sub-token ids of each distinct word, tokenised once.

    A fast tokenizer encodes pre-split words independently (normalise, pre-tokenise and model run
    per word, then the encodings are merged), so a sentence's ids are the template's special
    tokens around its words' ids: exactly what ``tokenizer(words, is_split_into_words=True)``
    returns, without re-tokenising words a corpus repeats (CoNLL-2003 train: 23.6k distinct words
    in 204k).
    """

    def __init__(self, tokenizer: Any, max_words: int = MAX_CACHED_WORDS) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise MtstError(f"the tokenizer {type(tokenizer).__name__} is not a fast (Rust) "
                            "tokenizer; word alignment needs word_ids()")
        self.tokenizer, self.max_words = tokenizer, max_words
        self.clear()
        one = tokenizer([["a"]], is_split_into_words=True, add_special_tokens=True)
        ids, wids = one["input_ids"][0], one.word_ids(0)
        content = [i for i, w in enumerate(wids) if w is not None]
        self.prefix = np.asarray(ids[: content[0]], dtype=np.int32)
        self.suffix = np.asarray(ids[content[-1] + 1 :], dtype=np.int32)

    def clear(self) -> None:
        self.index: dict[str, int] = {}
        self._ids = np.zeros(1024, dtype=np.int32)  # every cached word's ids, back to back
        self._starts = np.zeros(1024, dtype=np.int64)  # word i: _ids[_starts[i]:_starts[i + 1]]

    @property
    def ids(self) -> np.ndarray:
        return self._ids[: self._starts[len(self.index)]]

    @property
    def starts(self) -> np.ndarray:
        return self._starts[: len(self.index) + 1]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.starts)

    def lookup(self, words: list[str]) -> np.ndarray:
        """Cache index of each word, tokenising the ones not seen before in one batch call.

        The cache is emptied when it would pass ``max_words`` distinct words, so memory stays
        bounded on corpora with an open vocabulary (the chunk being encoded is always cached)."""
        missing = list(dict.fromkeys(w for w in words if w not in self.index))
        if missing and len(self.index) + len(missing) > self.max_words:
            self.clear()
            missing = list(dict.fromkeys(words))
        if missing:
            enc = self.tokenizer([[w] for w in missing], is_split_into_words=True,
                                 add_special_tokens=False, return_attention_mask=False,
                                 return_token_type_ids=False, verbose=False)["input_ids"]
            counts = np.fromiter((len(x) for x in enc), dtype=np.int64, count=len(enc))
            new = np.fromiter((t for x in enc for t in x), dtype=np.int32, count=int(counts.sum()))
            base, end = len(self.index), int(self.starts[-1])
            self._ids = _room(self._ids, end + len(new))
            self._starts = _room(self._starts, base + len(missing) + 1)
            self._ids[end : end + len(new)] = new
            self._starts[base + 1 : base + 1 + len(missing)] = end + np.cumsum(counts)
            self.index.update((w, base + i) for i, w in enumerate(missing))
        index = self.index
        return np.fromiter((index[w] for w in words), dtype=np.int64, count=len(words))


def _room(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with capacity for ``size`` items, doubling (amortised O(1) appends)."""
    if size <= len(array):
        return array
    grown = np.zeros(max(size, 2 * len(array)), dtype=array.dtype)
    grown[: len(array)] = array
    return grown
