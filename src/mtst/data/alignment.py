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
from mtst.data.validation import Example
from mtst.errors import MtstError

log = logging.getLogger(__name__)
IGNORE = -100
_CHUNK = 1024


@dataclass
class Encoded:
    """One tokenised example; arrays are small ints, turned into long tensors by the collate."""

    input_ids: np.ndarray
    word_ids: np.ndarray
    ner_labels: np.ndarray | None
    word_labels: np.ndarray | None
    cls_label: int
    num_words: int
    example_index: int
    source: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)


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


def _first_subtoken_labels(wids: np.ndarray, tag_ids: np.ndarray, all_subtokens: bool,
                           inside_of: np.ndarray) -> np.ndarray:
    """Tag id on each word's first sub-token (every sub-token, B->I, when ``all_subtokens``)."""
    labels = np.full(len(wids), IGNORE, dtype=np.int32)
    real = wids >= 0
    prev = np.concatenate(([-1], wids[:-1]))
    first = real & (wids != prev)
    labels[first] = tag_ids[wids[first]]
    if all_subtokens:
        rest = real & ~first
        labels[rest] = inside_of[tag_ids[wids[rest]]]
    return labels


def _truncate(wids: np.ndarray, max_length: int) -> np.ndarray:
    """Keep all template special tokens and the first content tokens (right truncation)."""
    content = np.flatnonzero(wids >= 0)
    budget = max_length - (len(wids) - len(content))
    if budget < 1:
        raise MtstError(f"data.max_length={max_length} leaves no room for words after the "
                        f"{len(wids) - len(content)} special tokens")
    keep = np.ones(len(wids), dtype=bool)
    keep[content[budget:]] = False
    return keep


def encode_examples(examples: Sequence[Example], tokenizer: Any, space: LabelSpace | None,
                    max_length: int, label_all_subtokens: bool = False,
                    stats: AlignmentStats | None = None) -> list[Encoded]:
    """Tokenise words (``is_split_into_words=True``) and align labels; needs a fast tokenizer."""
    if not getattr(tokenizer, "is_fast", False):
        raise MtstError(f"the tokenizer {type(tokenizer).__name__} is not a fast (Rust) tokenizer; "
                        "word alignment needs word_ids()")
    stats = stats if stats is not None else AlignmentStats()
    inside_of = np.arange(space.num_tags if space else 1, dtype=np.int32)
    if space is not None:
        for t in space.entity_types:
            inside_of[space.tag_to_id[f"B-{t}"]] = space.tag_to_id[f"I-{t}"]
    out: list[Encoded] = []
    for start in range(0, len(examples), _CHUNK):
        chunk = examples[start : start + _CHUNK]
        enc = tokenizer([ex.words for ex in chunk], is_split_into_words=True, truncation=False,
                        add_special_tokens=True, return_attention_mask=False,
                        return_token_type_ids=False, verbose=False)
        for j, ex in enumerate(chunk):
            ids = np.asarray(enc["input_ids"][j], dtype=np.int64)
            wids = np.asarray([-1 if w is None else w for w in enc.word_ids(j)], dtype=np.int32)
            seen = np.unique(wids[wids >= 0])
            if len(seen) < len(ex.words):
                stats.empty_words += len(ex.words) - len(seen)
                stats.empty_examples.append(f"{ex.path}:{ex.where}")
            if len(ids) > max_length:
                keep = _truncate(wids, max_length)
                ids, wids = ids[keep], wids[keep]
                stats.truncated_examples += 1
                stats.truncated_words += len(seen) - len(np.unique(wids[wids >= 0]))
            out.append(_labelled(ex, start + j, ids, wids, space, label_all_subtokens, inside_of))
    stats.examples += len(examples)
    return out


def _labelled(ex: Example, index: int, ids: np.ndarray, wids: np.ndarray, space: LabelSpace | None,
              all_subtokens: bool, inside_of: np.ndarray) -> Encoded:
    ner = word_labels = None
    if ex.tags is not None and space is not None:
        word_labels = np.asarray([space.tag_to_id[t] for t in ex.tags], dtype=np.int32)
        ner = _first_subtoken_labels(wids, word_labels, all_subtokens, inside_of)
    cls = space.class_to_id[ex.label] if ex.label is not None and space is not None else IGNORE
    return Encoded(ids.astype(np.int32), wids, ner, word_labels, cls, len(ex.words), index, ex.source)


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
