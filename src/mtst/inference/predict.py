"""Each task's predictions for raw text: classes per text, entities with exact character offsets.

One key per task with a head: a sentence-classification task gives `{"label", "score",
"scores"}`, a token-classification task a list of entities. (A similarity task has no head: its
answer is `model.similarity(texts_a, texts_b)`.)

Text is split into words by `mtst.data.words.split_words` (the rule training used for text-only
records), the words are tokenised with `is_split_into_words=True` as in training, and each word
takes the tag predicted on its first sub-token. Entities are decoded from the word tags
(B-X starts an entity, I-X continues an entity of type X and otherwise starts one, as training
repairs stray I-X to B-X); an entity spans the characters from its first word's start to its last
word's end, so `text[start:end] == entity["text"]` always holds. Its score is the mean of its
words' tag probabilities.

Texts longer than the model's window (`max_length` sub-tokens) are read in overlapping windows
(sliding window, half a window of overlap): every word takes its tag from the window where it has
the most context on both sides, and the topic probabilities are the mean over the windows. A
warning says how many texts needed more than one window. Nothing is truncated. Sentence-level
probabilities are the mean over the windows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mtst.data.words import split_words
from mtst.errors import MtstError
from mtst.model.encoder import pad_batch
from mtst.tasks import TASK_TYPES

log = logging.getLogger(__name__)


@dataclass
class Window:
    """Words [start, end) of text `text`, tokenised with the model's special tokens."""

    text: int
    start: int
    end: int
    input_ids: list[int]
    word_ids: list[int]  # word index inside the window, -1 for special tokens


def word_spans(counts: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Word ranges of at most `budget` sub-tokens; each next range keeps about half a window of
    the previous one as left context. A single word longer than `budget` gets a range alone."""
    n = len(counts)
    if sum(counts) <= budget:
        return [(0, n)]
    spans, start = [], 0
    while True:
        end, used = start, 0
        while end < n and (end == start or used + counts[end] <= budget):
            used += counts[end]
            end += 1
        spans.append((start, end))
        if end >= n:
            return spans
        following, kept = end, 0
        while following - 1 > start and kept + counts[following - 1] <= budget // 2:
            following -= 1
            kept += counts[following]
        start = following


def make_windows(tokenizer: Any, words: list[list[str]], max_length: int) -> list[Window]:
    """Tokenise every text's words once to count sub-tokens, cut windows, tokenise the windows."""
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if budget < 1:
        raise MtstError(f"max_length={max_length} leaves no room for words after special tokens")
    plain = tokenizer(words, is_split_into_words=True, add_special_tokens=False,
                      return_attention_mask=False, return_token_type_ids=False, verbose=False)
    cuts = []
    for i, text_words in enumerate(words):
        ids = [w for w in plain.word_ids(i) if w is not None]
        counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=len(text_words)).tolist()
        cuts += [(i, s, e) for s, e in word_spans(counts, budget)]
    encoded = tokenizer([words[i][s:e] for i, s, e in cuts], is_split_into_words=True,
                        truncation=True, max_length=max_length, return_attention_mask=False,
                        return_token_type_ids=False, verbose=False)
    filler = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id
    windows = []
    for j, (i, s, e) in enumerate(cuts):
        ids = list(encoded["input_ids"][j])
        wids = [-1 if w is None else w for w in encoded.word_ids(j)]
        if not ids:  # no words and no template tokens (GPT-style): one end-of-text token
            ids, wids = [int(filler)], [-1]
        windows.append(Window(i, s, e, ids, wids))
    return windows


def run_windows(model: Any, windows: list[Window], batch_size: int) -> list[dict[str, np.ndarray]]:
    """Per window and task with a head: class probabilities [C] (sentence heads), or the tag
    probabilities of each word's first sub-token [n_words, T] (token heads; NaN rows for words
    that produced no sub-token)."""
    device = model.device
    heads = {name: spec["head"] for name, spec in model.tasks.items() if spec.get("head")}
    order = sorted(range(len(windows)), key=lambda k: -len(windows[k].input_ids))
    results: list[Any] = [None] * len(windows)
    for first in range(0, len(order), batch_size):
        rows = order[first : first + batch_size]
        ids, mask = pad_batch([windows[k].input_ids for k in rows], model.encoder.pad_id)
        out = model(ids.to(device), mask.to(device))  # encoder + every head (torch or ONNX)
        probs = {name: out[name].float().softmax(-1).cpu().numpy() for name in heads}
        for b, k in enumerate(rows):
            window, result = windows[k], {}
            for name, kind in heads.items():
                if kind == "sentence":
                    result[name] = probs[name][b]
                    continue
                tags = probs[name][b]
                word_probs = np.full((window.end - window.start, tags.shape[-1]), np.nan,
                                     dtype=np.float32)
                previous = -1
                for position, word in enumerate(window.word_ids):
                    if word >= 0 and word != previous:
                        word_probs[word] = tags[position]
                    previous = word
                result[name] = word_probs
            results[k] = result
    return results


def predict(model: Any, texts: str | Sequence[str], batch_size: int = 32) -> list[dict[str, Any]]:
    """One dict per text: `{"text", <task>: its answer, ...}`, e.g. for the default tasks
    `{"text", "topic": {"label", "score", "scores"}, "ner": [{"text", "type", "start", "end",
    "score"}, ...]}`."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise MtstError(f"text {i}: expected a string, got {type(text).__name__}")
    if not texts:
        return []
    spans = [split_words(text) for text in texts]
    words = [[word for word, _, _ in text_spans] for text_spans in spans]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            windows = make_windows(model.encoder.tokenizer, words, model.encoder.max_length)
            outputs = run_windows(model, windows, batch_size)
    finally:
        model.train(was_training)
    per_text: list[list[tuple[Window, dict[str, np.ndarray]]]] = [[] for _ in texts]
    for window, output in zip(windows, outputs, strict=True):
        per_text[window.text].append((window, output))
    long_texts = sum(len(parts) > 1 for parts in per_text)
    if long_texts:
        log.warning("%d text(s) longer than max_length=%d sub-tokens were read in overlapping "
                    "windows (sliding window, nothing truncated)", long_texts, model.encoder.max_length)
    return [_result(model, texts[i], spans[i], parts) for i, parts in enumerate(per_text)]


def _result(model: Any, text: str, spans: list[tuple[str, int, int]], parts: list) -> dict[str, Any]:
    result: dict[str, Any] = {"text": text}
    for name, spec in model.tasks.items():
        kind, space, task_type = spec.get("head"), model.label_spaces[name], TASK_TYPES[spec["type"]]
        if kind == "sentence":
            probabilities = np.mean([output[name] for _, output in parts], axis=0)
            result[name] = task_type.prediction(probabilities, space)
        elif kind == "token":
            rows = []
            for w in range(len(spans)):
                # the window where word w has the most context on both sides
                window, output = max((p for p in parts if p[0].start <= w < p[0].end),
                                     key=lambda p: min(w - p[0].start, p[0].end - 1 - w))
                rows.append(output[name][w - window.start])
            width = len(space)
            probabilities = np.stack(rows) if rows else np.zeros((0, width), dtype=np.float32)
            result[name] = task_type.prediction(text, spans, probabilities, space)
    return result
