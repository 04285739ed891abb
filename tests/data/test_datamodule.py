"""The DataModule end to end: label spaces, caching, batches, Lightning epochs and resume, and
encoded splits stored on disk."""

from __future__ import annotations

import logging
import os
import pickle

import lightning as L
import numpy as np
import pytest
import torch

from mtst.data.alignment import SubwordCache, encode_chunk, encode_examples
from mtst.data.datamodule import MultiTaskDataModule
from mtst.data.labels import LabelSpace
from mtst.data.store import EncodedStore
from mtst.data.tasks import TaskData
from mtst.data.validation import Example
from mtst.errors import DataError, MtstError
from tests.data.conftest import two_tasks

BATCH_KEYS = {"input_ids", "attention_mask", "word_ids", "num_words", "example_index",
              "pair_rows", "input_ids_b", "attention_mask_b", "topic.has", "topic.labels",
              "ner.has", "ner.labels", "ner.word_labels"}
INFER = {"classes": None, "entity_types": None}


def rows(n, offset=0):
    out = []
    for i in range(offset, offset + n):
        words = ["Ann", "flew", "to", "Rome"] + ["today"] * (i % 7)
        kind = i % 3
        row = {"tokens": words}
        if kind != 1:
            row["ner_tags"] = ["B-PER", "O", "O", "B-LOC"] + ["O"] * (i % 7)
        if kind != 0:
            row["label"] = ["sport", "art"][i % 2]
        out.append(row)
    return out


def test_inferred_labels_and_batches(write, bpe_tokenizer):
    tasks = two_tasks(train=write("train.jsonl", rows(20)), val=write("val.jsonl", rows(6)), **INFER)
    dm = MultiTaskDataModule(tasks=tasks, batch_size=4, tokenizer=bpe_tokenizer)
    dm.setup("fit")
    assert dm.label_spaces["topic"].names == ["art", "sport"]
    assert dm.label_spaces["ner"].names == ["LOC", "PER"]
    batches = list(dm.train_dataloader())
    assert all(set(b) == BATCH_KEYS for b in batches)
    seen = torch.cat([b["example_index"] for b in batches]).sort().values
    assert seen.tolist() == list(range(20))
    val = next(iter(dm.val_dataloader()))
    assert val["example_index"].tolist() == [0, 1, 2, 3]  # evaluation keeps file order


def test_given_labels_kept_in_order_and_no_val_split(write, bpe_tokenizer):
    data = [{"tokens": ["Ann"], "ner_tags": ["B-PERSON"], "label": "travel"}]
    dm = MultiTaskDataModule(tasks=two_tasks(train=write("t.jsonl", data)), tokenizer=bpe_tokenizer)
    dm.setup("fit")
    assert dm.label_spaces["topic"].names == ["travel", "technology", "politics", "other"]
    assert dm.val_dataloader() == [] and not dm.has_split("val") and dm.has_split("train")
    assert dm.test_dataloader() == []


def test_val_label_outside_inferred_space(write, bpe_tokenizer):
    val = rows(3) + [{"text": "a new film", "label": "film"}]
    tasks = two_tasks(train=write("train.jsonl", rows(9)), val=write("val.jsonl", val), **INFER)
    dm = MultiTaskDataModule(tasks=tasks, tokenizer=bpe_tokenizer)
    with pytest.raises(DataError, match=r"val.jsonl:line 4: label: 'film' is not a class of task "
                                        r"topic; allowed: art, sport \(label space inferred"):
        dm.setup("fit")


def test_setup_is_cached_and_tokenizer_required(write, bpe_tokenizer, wordpiece_tokenizer):
    dm = MultiTaskDataModule(tasks=two_tasks(train=write("t.jsonl", rows(6)), **LABELS))
    with pytest.raises(MtstError, match="set_tokenizer"):
        dm.setup("fit")
    dm.set_tokenizer(bpe_tokenizer)
    dm.setup("fit")
    first = dm.dataset("train")
    dm.setup("fit")
    assert dm.dataset("train") is first
    dm.set_tokenizer(wordpiece_tokenizer)
    assert dm.dataset("train") is not first
    assert dm.dataset("train")[0].input_ids[0] == wordpiece_tokenizer.cls_token_id


def test_checkpoint_label_space_wins(write, bpe_tokenizer):
    path = write("t.jsonl", rows(6))
    dm = MultiTaskDataModule(tasks=two_tasks(train=path, **INFER), tokenizer=bpe_tokenizer)
    dm.setup("fit")
    assert dm.state_dict() == {"label_spaces": {"topic": {"kind": "label", "names": ["art", "sport"]},
                                                "ner": {"kind": "tags", "names": ["LOC", "PER"]}}}
    state = {"label_spaces": {"topic": {"kind": "label", "names": ["sport", "art", "x"]},
                              "ner": {"kind": "tags", "names": ["PER", "LOC"]}}}
    dm.load_state_dict(state)
    assert dm.state_dict() == state
    item = dm.dataset("train")[2]  # row 2: label "sport", NER B-PER first
    assert item.labels["topic"] == 0 and item.word_labels["ner"][0] == dm.label_spaces["ner"].to_id["B-PER"] == 1
    fresh = MultiTaskDataModule(tasks=two_tasks(train=path, **INFER), tokenizer=bpe_tokenizer)
    fresh.load_state_dict(state)  # before setup (evaluation of a checkpoint): nothing is read
    assert fresh.resolve_label_spaces()["topic"].names == ["sport", "art", "x"]


def test_given_label_spaces_win(write, bpe_tokenizer):
    tasks = two_tasks(train=write("t.jsonl", rows(6)), **INFER)
    given = {"topic": LabelSpace("label", ["art", "sport", "film"], "topic"),
             "ner": {"kind": "tags", "names": ["PER", "LOC", "ORG"]}}
    dm = MultiTaskDataModule(tasks=tasks, tokenizer=bpe_tokenizer, label_spaces=given)
    assert dm.resolve_label_spaces()["topic"].names == ["art", "sport", "film"]
    assert dm.label_spaces["ner"].names == ["PER", "LOC", "ORG"]
    with pytest.raises(MtstError, match="tasks.ner: the label space given .* of kind 'label'"):
        MultiTaskDataModule(tasks=tasks, label_spaces={"ner": given["topic"]})


def test_null_labels_without_train_files(write):
    tasks = two_tasks(val=write("v.jsonl", rows(3)), classes=None)
    with pytest.raises(MtstError, match="tasks.topic.labels is null but the task has no train_files"):
        MultiTaskDataModule(tasks=tasks).resolve_label_spaces()


def test_bad_config_values(write):
    with pytest.raises(MtstError, match="sampling"):
        MultiTaskDataModule(tasks=two_tasks(train=write("t.jsonl", rows(3))), sampling="random")
    with pytest.raises(DataError, match="unknown file option"):
        TaskData.parse("topic", "label", {"train_files": [{"path": "x.jsonl", "colums": 2}]})
    with pytest.raises(MtstError, match="at least one task"):
        MultiTaskDataModule(tasks={})
    with pytest.raises(MtstError, match="tasks.a b: a task name"):
        TaskData("a b", "label")


LABELS = {"classes": ["sport", "art"], "entity_types": ["PER", "LOC"]}


class _Recorder(L.LightningModule):
    """A tiny model that records the example order it is trained on."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, 4)
        self.order: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.order.append(batch["example_index"].tolist())
        return self.emb(batch["input_ids"]).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(dm, tmp_path, epochs, ckpt=None):
    model = _Recorder(len(dm.tokenizer))
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path,
                        num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
    return model, trainer


def test_lightning_epochs_and_resume_follow_seed_and_epoch(write, bpe_tokenizer, tmp_path):
    def make():
        return MultiTaskDataModule(tasks=two_tasks(train=write("t.jsonl", rows(24)), **INFER),
                                   batch_size=4, tokenizer=bpe_tokenizer, seed=3)

    dm = make()
    model, trainer = _fit(dm, tmp_path, 2)
    expect = dm.train_sampler.batches_for_epoch(0) + dm.train_sampler.batches_for_epoch(1)
    assert model.order == expect and expect[:6] != expect[6:]
    trainer.save_checkpoint(tmp_path / "e2.ckpt")
    dm2 = make()
    resumed, _ = _fit(dm2, tmp_path, 3, ckpt=str(tmp_path / "e2.ckpt"))
    assert resumed.order == dm2.train_sampler.batches_for_epoch(2)


# -- encoded splits on disk: same items as in memory, reused while nothing changed, never
# half-written ---------------------------------------------------------------------------
def same_items(a: EncodedStore, b: EncodedStore) -> None:
    assert len(a) == len(b) > 0
    assert np.array_equal(a.lengths, b.lengths) and np.array_equal(a.sources, b.sources)
    for x, y in zip(a, b, strict=True):
        for name in ("input_ids", "word_ids", "input_ids_b"):
            u, v = getattr(x, name), getattr(y, name)
            assert (u is None and v is None) or np.array_equal(u, v), name
        for name in ("tags", "word_labels"):
            u, v = getattr(x, name), getattr(y, name)
            assert u.keys() == v.keys() and all(np.array_equal(u[k], v[k]) for k in u), name
        assert (x.labels, x.num_words, x.example_index, x.source) == (
            y.labels, y.num_words, y.example_index, y.source)
        assert x.scores.keys() == y.scores.keys()
        assert np.allclose(list(x.scores.values()), list(y.scores.values()), equal_nan=True)


def module(path, tokenizer, store_dir=None, **kwargs):
    return MultiTaskDataModule(tasks=two_tasks(train=path, **LABELS), batch_size=4, max_length=9,
                               store_dir=store_dir, tokenizer=tokenizer, **kwargs)


def test_disk_store_matches_memory_and_is_reused(write, tmp_path, any_tokenizer, caplog):
    path = write("t.jsonl", rows(40))
    in_memory = module(path, any_tokenizer).dataset("train")
    first = module(path, any_tokenizer, tmp_path / "store")
    on_disk = first.dataset("train")
    assert on_disk.folder is not None and on_disk.folder.parent == tmp_path / "store"
    assert isinstance(on_disk.columns["input_ids"], np.memmap)
    same_items(in_memory, on_disk)
    assert first.stats["train"].truncated_examples > 0  # max_length=9 cuts the long rows

    again = module(path, any_tokenizer, tmp_path / "store")
    with caplog.at_level(logging.INFO, logger="mtst.data"):
        reused = again.dataset("train")
    assert "reusing" in caplog.text and reused.folder == on_disk.folder
    assert again.stats["train"] == first.stats["train"]  # warnings survive reuse
    same_items(on_disk, reused)
    batch = next(iter(again.train_dataloader()))
    assert batch["input_ids"].shape[0] == 4


def test_store_folder_changes_with_files_and_options(write, tmp_path, bpe_tokenizer,
                                                     wordpiece_tokenizer):
    path = write("t.jsonl", rows(8))
    base = module(path, bpe_tokenizer, tmp_path).store_folder("train")
    assert module(path, bpe_tokenizer, tmp_path).store_folder("train") == base
    assert module(path, wordpiece_tokenizer, tmp_path).store_folder("train") != base
    assert module(path, bpe_tokenizer, tmp_path, label_all_subtokens=True).store_folder(
        "train") != base
    other_space = {"topic": LabelSpace("label", ["art", "sport"], "topic")}
    assert module(path, bpe_tokenizer, tmp_path, label_spaces=other_space).store_folder(
        "train") != base
    tasks = two_tasks(train=path, **LABELS)
    renamed = {"topic": TaskData("topic", "label", ("sport", "art"), "topic2", tasks["topic"].files),
               "ner": tasks["ner"]}
    assert MultiTaskDataModule(tasks=renamed, store_dir=tmp_path, max_length=9,
                               tokenizer=bpe_tokenizer).store_folder("train") != base
    write("t.jsonl", rows(9))
    os.utime(path, ns=(1, 1))
    assert module(path, bpe_tokenizer, tmp_path).store_folder("train") != base


def test_damaged_store_is_encoded_again(write, tmp_path, bpe_tokenizer):
    path = write("t.jsonl", rows(30))
    folder = module(path, bpe_tokenizer, tmp_path / "store").dataset("train").folder
    with open(folder / "input_ids.bin", "r+b") as handle:  # a copy cut short
        handle.truncate(40)
    again = module(path, bpe_tokenizer, tmp_path / "store").dataset("train")
    same_items(module(path, bpe_tokenizer).dataset("train"), again)
    (folder / "word_ids.bin").unlink()
    same_items(module(path, bpe_tokenizer).dataset("train"),
               module(path, bpe_tokenizer, tmp_path / "store").dataset("train"))


def test_bad_record_leaves_no_store_behind(write, tmp_path, bpe_tokenizer):
    data = rows(5000) + [{"tokens": ["Ann"], "ner_tags": ["B-XYZ"]}]  # past the first chunk
    dm = module(write("t.jsonl", data), bpe_tokenizer, tmp_path / "store")
    with pytest.raises(DataError, match=r"t.jsonl:line 5001: ner_tags\[0\]: 'B-XYZ'"):
        dm.dataset("train")
    assert list((tmp_path / "store").iterdir()) == []


def test_memory_mapped_store_pickles_as_its_folder(write, tmp_path, bpe_tokenizer):
    store = module(write("t.jsonl", rows(300)), bpe_tokenizer, tmp_path).dataset("train")
    blob = pickle.dumps(store)
    assert len(blob) < 1000 < store.nbytes()  # a spawned worker reopens the folder
    same_items(store, pickle.loads(blob))


def test_word_cache_equals_tokenising_whole_sentences(any_tokenizer):
    sentences = [["Zürich", "naïve", "😀", "x"], ["x", "Zürich"], ["O'Brien", "2021-03-04", "x"]]
    examples = [Example(words=s, path="m", where="1") for s in sentences]
    cache = SubwordCache(any_tokenizer)
    store = encode_examples(examples, any_tokenizer, {}, {}, 512)
    oracle = any_tokenizer(sentences, is_split_into_words=True)
    for i, item in enumerate(store):
        assert item.input_ids.tolist() == oracle["input_ids"][i]
        assert item.word_ids.tolist() == [-1 if w is None else w for w in oracle.word_ids(i)]
    assert len(cache.prefix) + len(cache.suffix) == any_tokenizer.num_special_tokens_to_add()


def test_prepare_data_writes_every_split_once(write, tmp_path, bpe_tokenizer):
    tasks = two_tasks(train=write("t.jsonl", rows(12)), val=write("v.jsonl", rows(4)), **LABELS)
    store = tmp_path / "store"
    first = MultiTaskDataModule(tasks=tasks, store_dir=store, tokenizer=bpe_tokenizer)
    first.prepare_data()
    assert sorted(p.name.split("-")[0] for p in store.iterdir()) == ["train", "val"]
    rank1 = MultiTaskDataModule(tasks=tasks, store_dir=store, tokenizer=bpe_tokenizer)
    rank1.setup("fit")  # another rank: opens the folders
    assert rank1.dataset("val").folder == first.dataset("val").folder
    same_items(first.dataset("train"), rank1.dataset("train"))


def test_word_cache_bounded_and_growing_gives_the_same_ids(any_tokenizer):
    words = [f"w{i}x" for i in range(300)] + ["Zürich", "naïve"] * 5
    examples = [Example(words=words[i : i + 7], path="m", where=str(i))
                for i in range(0, len(words), 7)]
    small = SubwordCache(any_tokenizer, max_words=20)
    large = SubwordCache(any_tokenizer)
    for chunk in (examples[:20], examples[20:]):
        a = encode_chunk(chunk, small, {}, {}, 64)
        b = encode_chunk(chunk, large, {}, {}, 64)
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert len(small.index) < len(large.index) == len(set(words))  # small was emptied
