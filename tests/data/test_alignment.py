"""Sub-token alignment round trips (byte-level BPE and WordPiece), truncation, partial labels."""

from __future__ import annotations

import logging

import pytest
import torch

from mtst.data.alignment import IGNORE, AlignmentStats, encode_examples, word_predictions
from mtst.data.collate import Collator
from mtst.data.labels import LabelSpace
from mtst.data.validation import Example

SPACE = LabelSpace(["travel", "technology"], ["PERSON", "LOC", "ORG", "DATE"])
WORDS = ["Zürich", "unbelievably", "2021-03-04", "3.5km", ",", "O'Brien", "naïve", "😀",
         "Ann", "Lee", "visited", "!"]
TAGS = ["B-LOC", "O", "B-DATE", "O", "O", "B-PERSON", "O", "O", "B-PERSON", "I-PERSON", "O", "O"]


def ex(words, tags=None, label=None, where="line 1"):
    return Example(words=list(words), tags=None if tags is None else list(tags), label=label,
                   path="mem.jsonl", where=where)


def encode_batch(tokenizer, examples, max_length=512, all_subtokens=False, stats=None):
    items = encode_examples(examples, tokenizer, SPACE, max_length, all_subtokens, stats)
    pad = tokenizer.pad_token_id
    return items, Collator(pad)(items)


def positions(batch, row, word):
    return (batch["word_ids"][row] == word).nonzero().flatten().tolist()


def normalized(tokenizer, word):
    norm = tokenizer.backend_tokenizer.normalizer
    return "".join((norm.normalize_str(word) if norm else word).split())


def test_round_trip(any_tokenizer):
    tok = any_tokenizer
    _, batch = encode_batch(tok, [ex(WORDS, TAGS, "travel")])
    ids, labels = batch["input_ids"][0], batch["ner_labels"][0]
    assert len(positions(batch, 0, WORDS.index("unbelievably"))) > 1  # the premise of the test
    for w, word in enumerate(WORDS):
        pos = positions(batch, 0, w)
        assert pos and pos == list(range(pos[0], pos[-1] + 1)), word  # present and contiguous
        text = "".join(tok.decode(ids[pos].tolist()).split())
        if tok.unk_token is None or tok.unk_token not in text:
            assert text == normalized(tok, word)
        assert labels[pos[0]] == SPACE.tag_to_id[TAGS[w]]
        assert (labels[pos[1:]] == IGNORE).all()
    special = batch["word_ids"][0] == -1
    assert (labels[special] == IGNORE).all()
    assert special.sum() == tok.num_special_tokens_to_add(pair=False)
    # token predictions: right on first sub-tokens, wrong on the rest -> gold per word
    preds = torch.where(labels == IGNORE, torch.tensor(SPACE.num_tags - 1), labels).unsqueeze(0)
    got = word_predictions(preds, batch["word_ids"], batch["num_words"])
    assert got == [[SPACE.tag_to_id[t] for t in TAGS]]
    assert batch["word_labels"][0].tolist() == got[0]


def test_label_all_subtokens(any_tokenizer):
    words, tags = ["unbelievably", "unbelievably", "Zürich"], ["B-ORG", "I-ORG", "O"]
    _, batch = encode_batch(any_tokenizer, [ex(words, tags)], all_subtokens=True)
    labels = batch["ner_labels"][0]
    expect_rest = [SPACE.tag_to_id["I-ORG"], SPACE.tag_to_id["I-ORG"], SPACE.tag_to_id["O"]]
    for w, tag in enumerate(tags):
        pos = positions(batch, 0, w)
        assert len(pos) > 1 or w == 2
        assert labels[pos[0]] == SPACE.tag_to_id[tag]
        assert (labels[pos[1:]] == expect_rest[w]).all()
    assert (labels[batch["word_ids"][0] == -1] == IGNORE).all()


def test_truncation_accounting(any_tokenizer, caplog):
    tok = any_tokenizer
    long_a = ["unbelievably", "Zürich", "visited"] * 6
    long_b = ["naïve", "😀"] * 10
    short = ["Ann"]
    examples = [ex(long_a, ["O"] * len(long_a)), ex(short, ["B-PERSON"]), ex(long_b, ["O"] * 20)]
    max_length = 12
    stats = AlignmentStats()
    with caplog.at_level(logging.WARNING, logger="mtst.data"):
        _, batch = encode_batch(tok, examples, max_length, stats=stats)
        stats.warn("train", max_length)
    oracle = tok([e.words for e in examples], is_split_into_words=True, truncation=True,
                 max_length=max_length)
    lost = 0
    for i, e in enumerate(examples):
        n = len(oracle["input_ids"][i])
        assert batch["input_ids"][i, :n].tolist() == oracle["input_ids"][i]
        assert batch["attention_mask"][i].sum() == n
        kept = {w for w in oracle.word_ids(i) if w is not None}
        lost += len(e.words) - len(kept)
        assert batch["num_words"][i] == len(e.words)
        assert (batch["word_labels"][i, : len(e.words)] != IGNORE).all()  # gold keeps every word
    assert lost > 0 and stats.truncated_examples == 2 and stats.truncated_words == lost
    records = [r for r in caplog.records if "max_length" in r.getMessage()]
    assert len(records) == 1
    assert "2 of 3 example(s)" in records[0].getMessage() and f" {lost} word(s)" in records[0].getMessage()
    preds = torch.full_like(batch["input_ids"], SPACE.tag_to_id["B-LOC"])
    words = word_predictions(preds, batch["word_ids"], batch["num_words"])
    assert words[0].count(0) == len(long_a) - len({w for w in oracle.word_ids(0) if w is not None})
    assert words[1] == [SPACE.tag_to_id["B-LOC"]]


def test_word_without_subtokens_is_counted(wordpiece_tokenizer):
    stats = AlignmentStats()
    _, batch = encode_batch(wordpiece_tokenizer, [ex(["a", "\ufeff", "b"], ["O", "B-LOC", "O"])],
                            stats=stats)
    assert stats.empty_words == 1 and positions(batch, 0, 1) == []
    preds = torch.full_like(batch["input_ids"], 5)
    assert word_predictions(preds, batch["word_ids"], batch["num_words"]) == [[5, 0, 5]]


def test_partial_supervision_masks_and_padding(any_tokenizer):
    tok = any_tokenizer
    examples = [ex(["Ann", "flew"], ["B-PERSON", "O"]), ex(["new", "phones", "today"], None, "technology"),
                ex(["Rome"], ["B-LOC"], "travel")]
    items, batch = encode_batch(tok, examples)
    assert batch["has_ner"].tolist() == [True, False, True]
    assert batch["has_cls"].tolist() == [False, True, True]
    assert batch["cls_labels"].tolist() == [IGNORE, SPACE.class_to_id["technology"], SPACE.class_to_id["travel"]]
    assert (batch["ner_labels"][1] == IGNORE).all() and (batch["word_labels"][1] == IGNORE).all()
    assert batch["word_labels"].shape == (3, 3) and batch["word_labels"][2, 1:].eq(IGNORE).all()
    assert batch["input_ids"].shape[1] == max(len(it) for it in items)
    for i, it in enumerate(items):  # right padding with the pad id
        n = len(it)
        assert batch["attention_mask"][i, :n].all() and not batch["attention_mask"][i, n:].any()
        assert (batch["input_ids"][i, n:] == tok.pad_token_id).all()
        assert (batch["word_ids"][i, n:] == -1).all() and (batch["ner_labels"][i, n:] == IGNORE).all()
    assert batch["example_index"].tolist() == [0, 1, 2]
    assert all(v.dtype == (torch.bool if k.startswith("has_") else torch.long) for k, v in batch.items())


def test_slow_tokenizer_rejected():
    from mtst.errors import MtstError

    class Slow:
        is_fast = False

    with pytest.raises(MtstError, match="fast"):
        encode_examples([ex(["a"], ["O"])], Slow(), SPACE, 8)
