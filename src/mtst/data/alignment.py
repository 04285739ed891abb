"""Word <-> sub-token alignment: tokenise pre-split words once, label sub-tokens, and invert.

Gold NER labels stay per *word* (``word_labels``) so evaluation never loses words: a word cut
by truncation (or that the tokenizer turns into nothing) is simply predicted ``O``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtst.data.labels import LabelSpace
from mtst.data.store import IGNORE, EncodedStore, StoreWriter, offsets
from mtst.data.validation import Example
from mtst.errors import MtstError

log = logging.getLogger(__name__)
CHUNK = 4096
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


def _segments(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For segments of ``counts`` items laid end to end: each item's segment and its position in it."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return owner, np.arange(int(counts.sum())) - offsets(counts)[owner]


def _tag_ids(examples: Sequence[Example], space: LabelSpace | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-word gold tag ids (IGNORE where an example has no tags) and which examples have tags."""
    has_ner = np.fromiter((ex.tags is not None and space is not None for ex in examples),
                          dtype=bool, count=len(examples))
    if space is None:
        return np.full(sum(len(ex.words) for ex in examples), IGNORE), has_ner
    tag_to_id = space.tag_to_id
    return np.fromiter((tag_to_id[t] if ex.tags is not None else IGNORE
                        for ex in examples for t in (ex.tags or [None] * len(ex.words))),
                       dtype=np.int64), has_ner


def encode_chunk(examples: Sequence[Example], cache: SubwordCache, space: LabelSpace | None,
                 max_length: int, label_all_subtokens: bool = False,
                 stats: AlignmentStats | None = None) -> dict[str, np.ndarray]:
    """Tokenise and align a chunk of examples into flat columns (see ``store.COLUMNS``).

    Right truncation keeps the template's special tokens; gold tags stay per word, so a word cut
    by truncation still counts (as predicted O) in evaluation.
    """
    stats = stats if stats is not None else AlignmentStats()
    n = len(examples)
    special = len(cache.prefix) + len(cache.suffix)
    budget = max_length - special
    if budget < 1:
        raise MtstError(f"data.max_length={max_length} leaves no room for words after the "
                        f"{special} special tokens")
    num_words = np.fromiter((len(ex.words) for ex in examples), dtype=np.int64, count=n)
    word_index = cache.lookup([w for ex in examples for w in ex.words])
    word_tokens = cache.lengths[word_index]
    word_example, word_pos = _segments(num_words)
    content = np.bincount(word_example, weights=word_tokens, minlength=n).astype(np.int64)
    kept = np.minimum(content, budget)
    content_start = offsets(content)[:-1]  # of each example in the chunk's content tokens

    token_word, token_in_word = _segments(word_tokens)  # content tokens, all words of the chunk
    token_example = word_example[token_word]
    token_pos = np.arange(len(token_word)) - content_start[token_example]
    keep = token_pos < budget
    lengths = kept + special
    out_start = offsets(lengths)[:-1]
    input_ids = np.empty(int(lengths.sum()), dtype=np.int32)
    word_ids = np.full(len(input_ids), -1, dtype=np.int32)
    ner = np.full(len(input_ids), IGNORE, dtype=np.int16)
    for offset, ids in ((out_start, cache.prefix), (out_start + len(cache.prefix) + kept, cache.suffix)):
        if len(ids):
            input_ids[(offset[:, None] + np.arange(len(ids))).ravel()] = np.tile(ids, n)
    dest = out_start[token_example[keep]] + len(cache.prefix) + token_pos[keep]
    source = cache.starts[word_index][token_word] + token_in_word
    input_ids[dest] = cache.ids[source[keep]]
    word_ids[dest] = word_pos[token_word[keep]]

    word_labels, has_ner = _tag_ids(examples, space)
    if has_ner.any():
        tags = word_labels[token_word]
        labelled = token_in_word == 0
        if label_all_subtokens:
            inside_of = np.arange(space.num_tags)
            for t in space.entity_types:
                inside_of[space.tag_to_id[f"B-{t}"]] = space.tag_to_id[f"I-{t}"]
            tags = np.where(labelled | (tags == IGNORE), tags, inside_of[np.maximum(tags, 0)])
            labelled = tags != IGNORE
        ner[dest] = np.where(labelled, tags, IGNORE)[keep]

    word_start = offsets(word_tokens)[:-1] - content_start[word_example]  # in its example
    empty = word_tokens == 0
    stats.examples += n
    stats.truncated_examples += int((content > budget).sum())
    stats.truncated_words += int(((word_start >= budget) & ~empty).sum())
    if empty.any():
        stats.empty_words += int(empty.sum())
        first = examples[int(word_example[np.argmax(empty)])]
        stats.empty_examples.append(f"{first.path}:{first.where}")
    return {
        "input_ids": input_ids, "word_ids": word_ids, "ner_labels": ner,
        "word_labels": word_labels.astype(np.int16),
        "lengths": lengths.astype(np.int32), "num_words": num_words.astype(np.int32),
        "cls_labels": np.fromiter(
            (space.class_to_id[ex.label] if ex.label is not None and space is not None else IGNORE
             for ex in examples), dtype=np.int32, count=n),
        "has_ner": has_ner, "sources": np.fromiter((ex.source for ex in examples), dtype=np.int32,
                                                   count=n),
    }


def encode_examples(examples: Sequence[Example], tokenizer: Any, space: LabelSpace | None,
                    max_length: int, label_all_subtokens: bool = False,
                    stats: AlignmentStats | None = None) -> EncodedStore:
    """Tokenise and align examples held in memory (the DataModule streams files through
    ``encode_chunk`` instead); the result is a sequence of ``Encoded`` items."""
    cache = SubwordCache(tokenizer)
    writer = StoreWriter()
    for start in range(0, len(examples), CHUNK):
        writer.append(encode_chunk(examples[start : start + CHUNK], cache, space, max_length,
                                   label_all_subtokens, stats))
    return writer.finish()


def word_predictions(token_preds: Any, word_ids: Any, num_words: Any,
                     outside_id: int = 0) -> list[list[int]]:
    """One tag id per word from its first sub-token; words without a sub-token get ``outside_id``."""
    preds = torch.as_tensor(token_preds).detach().cpu()
    wids = torch.as_tensor(word_ids).detach().cpu()
    counts = torch.as_tensor(num_words).detach().cpu().tolist()
    prev = torch.cat([torch.full_like(wids[:, :1], -1), wids[:, :-1]], dim=1)
    first = (wids >= 0) & (wids != prev)
    out: list[list[int]] = []
    for b, n in enumerate(counts):
        row = [outside_id] * int(n)
        pos = first[b].nonzero().flatten()
        for w, p in zip(wids[b, pos].tolist(), preds[b, pos].tolist(), strict=True):
            if w < n:
                row[w] = int(p)
        out.append(row)
    return out
