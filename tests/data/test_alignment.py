"""Sub-token alignment round trips (byte-level BPE and WordPiece), truncation, partial labels."""

from __future__ import annotations

import logging

import pytest
import torch

from mtst.data.alignment import (
    IGNORE,
    AlignmentStats,
    encode_examples,
    tokenize_texts,
    word_predictions,
)
from mtst.data.collate import Collator
from mtst.data.labels import LabelSpace
from mtst.data.validation import Example

TASKS = {"topic": "label", "ner": "tags"}
SPACES = {"topic": LabelSpace("label", ["travel", "technology"], "topic"),
          "ner": LabelSpace("tags", ["PERSON", "LOC", "ORG", "DATE"], "ner")}
TAG = SPACES["ner"].to_id
WORDS = ["Zürich", "unbelievably", "2021-03-04", "3.5km", ",", "O'Brien", "naïve", "😀",
         "Ann", "Lee", "visited", "!"]
TAGS = ["B-LOC", "O", "B-DATE", "O", "O", "B-PERSON", "O", "O", "B-PERSON", "I-PERSON", "O", "O"]


def ex(words, tags=None, label=None, where="line 1"):
    return Example(words=list(words), path="mem.jsonl", where=where,
                   labels={} if label is None else {"topic": label},
                   tags={} if tags is None else {"ner": list(tags)})


def encode_batch(tokenizer, examples, max_length=512, all_subtokens=False, stats=None,
                 tasks=TASKS, spaces=SPACES):
    items = encode_examples(examples, tokenizer, tasks, spaces, max_length, all_subtokens, stats)
    pad = tokenizer.pad_token_id
    return items, Collator(pad, tasks)([items[i] for i in range(len(items))])


def positions(batch, row, word):
    return (batch["word_ids"][row] == word).nonzero().flatten().tolist()


def normalized(tokenizer, word):
    norm = tokenizer.backend_tokenizer.normalizer
    return "".join((norm.normalize_str(word) if norm else word).split())


def test_round_trip(any_tokenizer):
    tok = any_tokenizer
    _, batch = encode_batch(tok, [ex(WORDS, TAGS, "travel")])
    ids, labels = batch["input_ids"][0], batch["ner.labels"][0]
    assert len(positions(batch, 0, WORDS.index("unbelievably"))) > 1  # the premise of the test
    for w, word in enumerate(WORDS):
        pos = positions(batch, 0, w)
        assert pos and pos == list(range(pos[0], pos[-1] + 1)), word  # present and contiguous
        text = "".join(tok.decode(ids[pos].tolist()).split())
        if tok.unk_token is None or tok.unk_token not in text:
            assert text == normalized(tok, word)
        assert labels[pos[0]] == TAG[TAGS[w]]
        assert (labels[pos[1:]] == IGNORE).all()
    special = batch["word_ids"][0] == -1
    assert (labels[special] == IGNORE).all()
    assert special.sum() == tok.num_special_tokens_to_add(pair=False)
    # token predictions: right on first sub-tokens, wrong on the rest -> gold per word
    preds = torch.where(labels == IGNORE, torch.tensor(len(SPACES['ner']) - 1), labels).unsqueeze(0)
    got = word_predictions(preds, batch["word_ids"], batch["num_words"])
    assert got == [[TAG[t] for t in TAGS]]
    assert batch["ner.word_labels"][0].tolist() == got[0]


def test_label_all_subtokens(any_tokenizer):
    words, tags = ["unbelievably", "unbelievably", "Zürich"], ["B-ORG", "I-ORG", "O"]
    _, batch = encode_batch(any_tokenizer, [ex(words, tags)], all_subtokens=True)
    labels = batch["ner.labels"][0]
    expect_rest = [TAG["I-ORG"], TAG["I-ORG"], TAG["O"]]
    for w, tag in enumerate(tags):
        pos = positions(batch, 0, w)
        assert len(pos) > 1 or w == 2
        assert labels[pos[0]] == TAG[tag]
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
        assert (batch["ner.word_labels"][i, : len(e.words)] != IGNORE).all()  # gold keeps every word
    assert lost > 0 and stats.truncated_examples == 2 and stats.truncated_words == lost
    records = [r for r in caplog.records if "max_length" in r.getMessage()]
    assert len(records) == 1
    assert "2 of 3 example(s)" in records[0].getMessage() and f" {lost} word(s)" in records[0].getMessage()
    preds = torch.full_like(batch["input_ids"], TAG["B-LOC"])
    words = word_predictions(preds, batch["word_ids"], batch["num_words"])
    assert words[0].count(0) == len(long_a) - len({w for w in oracle.word_ids(0) if w is not None})
    assert words[1] == [TAG["B-LOC"]]


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
    assert batch["ner.has"].tolist() == [True, False, True]
    assert batch["topic.has"].tolist() == [False, True, True]
    topic = SPACES["topic"].to_id
    assert batch["topic.labels"].tolist() == [IGNORE, topic["technology"], topic["travel"]]
    assert (batch["ner.labels"][1] == IGNORE).all() and (batch["ner.word_labels"][1] == IGNORE).all()
    assert batch["ner.word_labels"].shape == (3, 3) and batch["ner.word_labels"][2, 1:].eq(IGNORE).all()
    assert batch["input_ids"].shape[1] == max(len(it) for it in items)
    for i, it in enumerate(items):  # right padding with the pad id
        n = len(it)
        assert batch["attention_mask"][i, :n].all() and not batch["attention_mask"][i, n:].any()
        assert (batch["input_ids"][i, n:] == tok.pad_token_id).all()
        assert (batch["word_ids"][i, n:] == -1).all() and (batch["ner.labels"][i, n:] == IGNORE).all()
    assert batch["example_index"].tolist() == [0, 1, 2]
    assert all(v.dtype == (torch.bool if k.endswith(".has") else torch.long) for k, v in batch.items())


def test_slow_tokenizer_rejected():
    from mtst.errors import MtstError

    class Slow:
        is_fast = False

    with pytest.raises(MtstError, match="fast"):
        encode_examples([ex(["a"], ["O"])], Slow(), TASKS, SPACES, 8)


def pair(a, b, score=None, task="sts"):
    return Example(words=[], path="pairs.jsonl", where="line 1", text=a, text_b=b,
                   scores={task: float("nan") if score is None else score})


PAIR_TEXTS = [("A man is playing a guitar.", "Someone plays the guitar!"),
              ("Zürich naïve 😀 O'Brien 2021-03-04", "x"),
              ("unbelievably " * 40, "a short one")]


def test_pair_sentences_are_tokenised_as_raw_text(any_tokenizer):
    tok, max_length = any_tokenizer, 24
    items = encode_examples([pair(a, b, 1.5) for a, b in PAIR_TEXTS], tok, {"sts": "pair"},
                            {"sts": LabelSpace("pair")}, max_length)
    for (a, b), item in zip(PAIR_TEXTS, items, strict=True):
        assert item.input_ids.tolist() == tok(a, truncation=True, max_length=max_length)["input_ids"]
        assert item.input_ids_b.tolist() == tok(b, truncation=True, max_length=max_length)["input_ids"]
        assert (item.word_ids == -1).all() and item.num_words == 0 and item.scores == {"sts": 1.5}
    assert len(items[2]) == max_length  # cut like the encoder's own tokenize
    assert tokenize_texts(tok, [a for a, _ in PAIR_TEXTS], max_length) == [
        tok(a, truncation=True, max_length=max_length)["input_ids"] for a, _ in PAIR_TEXTS]
    assert items.lengths.tolist() == [max(len(x), len(x.input_ids_b)) for x in items]


def test_mixed_batch_keys_and_shapes(any_tokenizer):
    tok = any_tokenizer
    tasks = {**TASKS, "sts": "pair", "nli": "pair"}
    spaces = {**SPACES, "sts": LabelSpace("pair"), "nli": LabelSpace("pair")}
    examples = [ex(["Ann", "flew"], ["B-PERSON", "O"]), pair(*PAIR_TEXTS[0], score=4.0),
                ex(["new", "phones", "today"], None, "technology"),
                pair(*PAIR_TEXTS[1], task="nli")]
    items, batch = encode_batch(tok, examples, tasks=tasks, spaces=spaces)
    b, t = batch["input_ids"].shape
    assert b == 4 and t == max(len(it) for it in items)
    assert batch["pair_rows"].tolist() == [1, 3]
    tb = max(len(items[i].input_ids_b) for i in (1, 3))
    assert batch["input_ids_b"].shape == batch["attention_mask_b"].shape == (2, tb)
    for row, i in enumerate((1, 3)):
        n = len(items[i].input_ids_b)
        assert batch["input_ids_b"][row, :n].tolist() == items[i].input_ids_b.tolist()
        assert batch["attention_mask_b"][row].sum() == n
    assert batch["word_ids"][[1, 3]].eq(-1).all() and batch["num_words"].tolist() == [2, 0, 3, 0]
    assert batch["ner.labels"].shape == (4, t) and batch["ner.word_labels"].shape == (4, 3)
    assert batch["ner.has"].tolist() == [True, False, False, False]
    assert batch["topic.has"].tolist() == [False, False, True, False]
    assert batch["sts.has"].tolist() == [False, True, False, False]
    assert batch["nli.has"].tolist() == [False, False, False, True]
    assert batch["sts.scores"].dtype == torch.float32
    assert batch["sts.scores"][1] == 4.0 and batch["sts.scores"][[0, 2, 3]].isnan().all()
    assert batch["nli.scores"].isnan().all()  # an anchor/positive pair has no score
    assert batch["ner.labels"][[1, 2, 3]].eq(IGNORE).all()
    expected = {"input_ids", "attention_mask", "word_ids", "num_words", "example_index",
                "pair_rows", "input_ids_b", "attention_mask_b", "topic.has", "topic.labels",
                "ner.has", "ner.labels", "ner.word_labels", "sts.has", "sts.scores", "nli.has",
                "nli.scores"}
    assert set(batch) == expected


def test_batch_without_pairs_or_words(any_tokenizer):
    tasks = {**TASKS, "sts": "pair"}
    spaces = {**SPACES, "sts": LabelSpace("pair")}
    _, singles = encode_batch(any_tokenizer, [ex(["Rome"], None, "travel")], tasks=tasks, spaces=spaces)
    assert singles["pair_rows"].shape == (0,) and singles["input_ids_b"].shape == (0, 1)
    assert singles["attention_mask_b"].shape == (0, 1)
    _, pairs = encode_batch(any_tokenizer, [pair("a b", "c d", 2.0)], tasks=tasks, spaces=spaces)
    assert pairs["ner.word_labels"].shape == (1, 1) and pairs["ner.word_labels"].eq(IGNORE).all()
    assert pairs["topic.labels"].tolist() == [IGNORE] and pairs["pair_rows"].tolist() == [0]


def reference_batch(items, tasks, pad):
    """The batch padded example by example: what the column-wise collate must equal."""
    def padded(rows, width, fill):
        out = torch.full((len(rows), width), fill, dtype=torch.long)
        for i, row in enumerate(rows):
            if row is not None:
                out[i, : len(row)] = torch.as_tensor(row.astype("int64"))
        return out

    t = max(len(it) for it in items)
    w = max(1, max(it.num_words for it in items))
    pairs = [i for i, it in enumerate(items) if it.is_pair]
    tb = max([1, *(len(items[i].input_ids_b) for i in pairs)])
    batch = {"input_ids": padded([it.input_ids for it in items], t, pad),
             "attention_mask": padded([it.input_ids * 0 + 1 for it in items], t, 0),
             "word_ids": padded([it.word_ids for it in items], t, -1),
             "num_words": torch.tensor([it.num_words for it in items]),
             "example_index": torch.tensor([it.example_index for it in items]),
             "pair_rows": torch.tensor(pairs, dtype=torch.long),
             "input_ids_b": padded([items[i].input_ids_b for i in pairs], tb, pad),
             "attention_mask_b": padded([items[i].input_ids_b * 0 + 1 for i in pairs], tb, 0)}
    for task, kind in tasks.items():
        batch[f"{task}.has"] = torch.tensor([it.supervises(task) for it in items])
        if kind == "label":
            batch[f"{task}.labels"] = torch.tensor([it.labels.get(task, IGNORE) for it in items])
        elif kind == "tags":
            batch[f"{task}.labels"] = padded([it.tags.get(task) for it in items], t, IGNORE)
            batch[f"{task}.word_labels"] = padded([it.word_labels.get(task) for it in items], w, IGNORE)
        else:
            batch[f"{task}.scores"] = torch.tensor([it.scores.get(task, float("nan")) for it in items],
                                                   dtype=torch.float32)
    return batch


def test_the_column_wise_collate_equals_padding_example_by_example(any_tokenizer):
    tasks = {**TASKS, "sts": "pair"}
    spaces = {**SPACES, "sts": LabelSpace("pair")}
    examples = [ex(WORDS, TAGS, "travel"), pair(*PAIR_TEXTS[0], score=4.0), ex(["Rome"], None, "travel"),
                ex(["Ann", "flew"], ["B-PERSON", "O"]), pair(*PAIR_TEXTS[2], score=1.0)]
    store = encode_examples(examples, any_tokenizer, tasks, spaces, 24)
    collate = Collator(any_tokenizer.pad_token_id, tasks)
    for order in ([0, 1, 2, 3, 4], [4, 2, 2, 0], [1], [2, 3]):
        items = [store[i] for i in order]
        expected = reference_batch(items, tasks, any_tokenizer.pad_token_id)
        for got in (collate(items), collate(store.__getitems__(order))):
            assert got.keys() == expected.keys()
            for key, value in expected.items():
                assert got[key].dtype == value.dtype, (order, key)
                torch.testing.assert_close(got[key], value, rtol=0, atol=0, equal_nan=True)
    loader = torch.utils.data.DataLoader(store, batch_size=3, collate_fn=collate)  # __getitems__
    first = next(iter(loader))
    assert torch.equal(first["input_ids"], collate([store[0], store[1], store[2]])["input_ids"])


def test_collating_examples_of_two_stores_is_refused(any_tokenizer):
    one = encode_examples([ex(["a"], ["O"])], any_tokenizer, TASKS, SPACES, 8)
    two = encode_examples([ex(["b"], ["O"])], any_tokenizer, TASKS, SPACES, 8)
    with pytest.raises(ValueError, match="one EncodedStore"):
        Collator(any_tokenizer.pad_token_id, TASKS)([one[0], two[0]])
    with pytest.raises(IndexError):
        one.__getitems__([0, 1])
