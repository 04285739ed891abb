"""Named tasks beyond the classic two: a third task in a shared file, files read once, sentence
pairs (JSONL with scores or anchor/positive, STS Benchmark TSV) through the data module."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mtst.data.collate import Collator
from mtst.data.datamodule import MultiTaskDataModule
from mtst.data.readers import SourceSpec
from mtst.data.sources import load_split
from mtst.data.tasks import TaskData
from mtst.errors import DataError
from tests.data.conftest import two_tasks

STSB = Path("/work/shared/data/stsbenchmark")


def task(name, kind, *files, labels=None, field=None, split="train"):
    specs = tuple(SourceSpec.parse(f) for f in files)
    return TaskData(name, kind, None if labels is None else tuple(labels), field, {split: specs})


ROWS = [
    {"tokens": ["Ann", "flew"], "ner_tags": ["B-PER", "O"], "label": "travel", "mood": "happy"},
    {"text": "phones are great", "label": "tech"},
    {"text": "rain again", "mood": "sad"},
    {"tokens": ["Rome"], "ner_tags": ["B-LOC"]},
    {"text": "nothing to learn here"},
]


def test_third_task_on_another_field_of_one_file(write, bpe_tokenizer, caplog):
    path = write("d.jsonl", ROWS)
    tasks = two_tasks(train=path, classes=None, entity_types=None)
    tasks["mood"] = task("mood", "label", path, field="mood")
    dm = MultiTaskDataModule(tasks=tasks, tokenizer=bpe_tokenizer, batch_size=8)
    with caplog.at_level(logging.WARNING, logger="mtst.data"):
        dm.setup("fit")
    spaces = dm.label_spaces
    assert spaces["mood"].names == ["happy", "sad"] and spaces["topic"].names == ["tech", "travel"]
    assert dm.source_specs("train") == [SourceSpec.parse(path)]  # listed three times, read once
    ds = dm.dataset("train")
    assert len(ds) == 4 and ds.sources.tolist() == [0, 0, 0, 0]
    batch = Collator(dm.pad_token_id, dm.task_kinds)([ds[i] for i in range(len(ds))])
    assert batch["mood.has"].tolist() == [True, False, True, False]
    assert batch["mood.labels"].tolist() == [0, -100, 1, -100]
    assert batch["topic.has"].tolist() == [True, True, False, False]
    assert batch["ner.has"].tolist() == [True, False, False, True]
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped and all("skipped 1 record(s)" in m and f"{path}:line 5" in m for m in skipped)


def test_file_listed_under_two_tasks_is_one_source(write, bpe_tokenizer):
    shared = write("both.jsonl", ROWS[:4])
    extra = write("extra.jsonl", [{"text": "more rain", "mood": "sad"}])
    tasks = {"ner": task("ner", "tags", shared, labels=["PER", "LOC"]),
             "mood": task("mood", "label", extra, shared, labels=["happy", "sad"], field="mood")}
    dm = MultiTaskDataModule(tasks=tasks, tokenizer=bpe_tokenizer)
    assert [s.path for s in dm.source_specs("train")] == [shared, extra]
    ds = dm.dataset("train")
    assert ds.sources.tolist() == [0, 0, 0, 1]  # the record with neither field is skipped
    assert [sorted(t for t in tasks if ds[i].supervises(t)) for i in range(4)] == [
        ["mood", "ner"], ["mood"], ["ner"], ["mood"]]


PAIRS = [
    {"sentence1": "A man plays a guitar.", "sentence2": "Someone plays guitar.", "score": 4.2},
    {"sentence1": "A cat sleeps.", "sentence2": "The stock market fell.", "score": "0.5"},
    {"anchor": "How do I reset my password?", "positive": "Steps to change a password"},
]


def test_pair_jsonl_with_scores_and_anchor_positive(write, any_tokenizer, tmp_path):
    path = write("pairs.jsonl", PAIRS)
    tasks = {**two_tasks(train=write("t.jsonl", ROWS[:2]), classes=None, entity_types=["PER"]),
             "sts": task("sts", "pair", path)}
    for store_dir in (None, tmp_path / "store"):
        dm = MultiTaskDataModule(tasks=tasks, tokenizer=any_tokenizer, batch_size=8,
                                 bucket_by_length=False, store_dir=store_dir)
        dm.setup("fit")
        ds = dm.dataset("train")
        assert len(ds) == 5 and ds.sources.tolist() == [0, 0, 1, 1, 1]
        pair = ds[2]
        assert pair.is_pair and pair.num_words == 0 and (pair.word_ids == -1).all()
        assert pair.input_ids.tolist() == any_tokenizer(PAIRS[0]["sentence1"], truncation=True,
                                                        max_length=128)["input_ids"]
        assert ds.lengths[2] == max(len(pair), len(pair.input_ids_b))
        batch = next(iter(dm.train_dataloader()))
        order = batch["example_index"].tolist()
        scores = dict(zip(order, batch["sts.scores"].tolist(), strict=True))
        assert scores[2] == pytest.approx(4.2, abs=1e-6) and scores[3] == 0.5
        assert math.isnan(scores[4]) and math.isnan(scores[0])
        assert sorted(order[i] for i in batch["pair_rows"].tolist()) == [2, 3, 4]
        assert batch["sts.has"].sum() == 3 and dm.label_spaces["sts"].kind == "pair"
        assert batch["input_ids_b"].shape[0] == 3


@pytest.mark.parametrize(("bad", "expect"), [
    ({"sentence1": "a", "sentence2": "b", "score": "high"}, "line 2: score: 'high' is not a number"),
    ({"sentence1": "a", "sentence2": "b"}, "line 2: score: missing"),
    ({"sentence1": "a", "sentence2": "  ", "score": 1}, "line 2: sentence2: empty sentence"),
    ({"anchor": "a", "positive": 3}, "line 2: positive: expected a string, got int"),
    ({"sentence1": "a", "sentence2": "b", "score": float("nan")}, "not a finite number"),
    ({"text": "a", "label": "x"}, "line 2: a pair record needs sentence1 and sentence2"),
])
def test_bad_pair_records(write, bad, expect):
    path = write("p.jsonl", [PAIRS[0], bad])
    with pytest.raises(DataError) as info:
        load_split({"sts": task("sts", "pair", path)}, "train")
    assert str(info.value).startswith(f"{path}:") and expect in str(info.value)


def test_bad_pair_csv_rows(write):
    path = write("p.tsv", "x\t1.5\ta\tb\nx\tfive\ta\tb\n")
    opts = {"path": path, "header": False, "label_column": 1, "text_column": 2, "text_pair_column": 3}
    with pytest.raises(DataError, match=r"p.tsv:line 2: column 1: 'five' is not a number"):
        load_split({"sts": task("sts", "pair", opts)}, "train")
    with pytest.raises(DataError, match=r"p.tsv: text_pair_column: a pair task needs"):
        load_split({"sts": task("sts", "pair", {**opts, "text_pair_column": None})}, "train")
    rows = load_split({"sts": task("sts", "pair", {**opts, "label_column": None, "stop": 1})}, "train")
    assert (rows[0].text, rows[0].text_b) == ("a", "b") and math.isnan(rows[0].scores["sts"])


def test_pair_file_cannot_feed_a_label_task(write):
    path = write("p.jsonl", PAIRS)
    tasks = {"sts": task("sts", "pair", path), "topic": task("topic", "label", path)}
    with pytest.raises(DataError, match=r"p.jsonl: listed under pair task sts and label task topic"):
        MultiTaskDataModule(tasks=tasks)


STSB_ENTRY = {"format": "tsv", "header": False, "quoting": False, "label_column": 4,
              "text_column": 5, "text_pair_column": 6}


@pytest.mark.skipif(not STSB.is_dir(), reason="the STS Benchmark copy is not available")
def test_sts_benchmark_files_load():
    def load(split):
        entry = {"path": str(STSB / f"sts-{split}.csv"), **STSB_ENTRY}
        return load_split({"sts": task("sts", "pair", entry)}, "train")

    dev, test = load("dev"), load("test")
    assert len(dev) == 1500 and len(test) == 1379
    scores = np.array([ex.scores["sts"] for ex in dev + test])
    assert scores.min() >= 0 and scores.max() <= 5 and scores.std() > 1
    first = dev[0]
    assert (first.text, first.text_b, first.scores["sts"]) == (
        "A man with a hard hat is dancing.", "A man wearing a hard hat is dancing.", 5.0)
    quoted = test[648]  # line 649: an unbalanced " must not swallow the following rows
    assert quoted.where == "line 649" and quoted.scores["sts"] == 4.0
    assert quoted.text_b == 'I always go by the rule "When in doubt, throw it out!'
    assert test[407].text == 'A young boy jumping into a pool that says "no diving".'


@pytest.mark.skipif(not STSB.is_dir(), reason="the STS Benchmark copy is not available")
def test_sts_benchmark_through_the_data_module(bpe_tokenizer):
    entry = {"path": str(STSB / "sts-dev.csv"), **STSB_ENTRY}
    dm = MultiTaskDataModule(tasks={"sts": task("sts", "pair", entry, split="val")},
                             tokenizer=bpe_tokenizer, eval_batch_size=500)
    dm.setup("validate")
    batches = list(dm.val_dataloader())
    assert sum(len(b["pair_rows"]) for b in batches) == 1500
    scores = torch.cat([b["sts.scores"] for b in batches])
    assert not scores.isnan().any() and scores.min() >= 0 and scores.max() <= 5
