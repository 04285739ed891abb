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
from mtst.errors import DataError, MtstError

BATCH_KEYS = {"input_ids", "attention_mask", "cls_labels", "ner_labels", "has_cls", "has_ner",
              "word_ids", "word_labels", "num_words", "example_index"}


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
    dm = MultiTaskDataModule(train_files=[write("train.jsonl", rows(20))],
                             val_files=[write("val.jsonl", rows(6))],
                             labels={"classes": None, "entity_types": None}, batch_size=4,
                             tokenizer=bpe_tokenizer)
    dm.setup("fit")
    assert dm.label_space.classes == ["art", "sport"] and dm.label_space.entity_types == ["LOC", "PER"]
    batches = list(dm.train_dataloader())
    assert all(set(b) == BATCH_KEYS for b in batches)
    seen = torch.cat([b["example_index"] for b in batches]).sort().values
    assert seen.tolist() == list(range(20))
    val = next(iter(dm.val_dataloader()))
    assert val["example_index"].tolist() == [0, 1, 2, 3]  # evaluation keeps file order


def test_default_label_space_when_labels_absent(write, bpe_tokenizer):
    data = [{"tokens": ["Ann"], "ner_tags": ["B-PERSON"], "label": "travel"}]
    dm = MultiTaskDataModule(train_files=[write("t.jsonl", data)], tokenizer=bpe_tokenizer)
    dm.setup("fit")
    assert dm.label_space.classes == ["travel", "technology", "politics", "other"]
    assert dm.val_dataloader() == [] and not dm.has_split("val") and dm.has_split("train")


def test_val_label_outside_inferred_space(write, bpe_tokenizer):
    val = rows(3) + [{"text": "a new film", "label": "film"}]
    dm = MultiTaskDataModule(train_files=[write("train.jsonl", rows(9))],
                             val_files=[write("val.jsonl", val)],
                             labels={"classes": None, "entity_types": None}, tokenizer=bpe_tokenizer)
    with pytest.raises(DataError, match=r"val.jsonl:line 4: label: 'film'.*art, sport.*inferred"):
        dm.setup("fit")


def test_setup_is_cached_and_tokenizer_required(write, bpe_tokenizer, wordpiece_tokenizer):
    dm = MultiTaskDataModule(train_files=[write("t.jsonl", rows(6))],
                             labels={"classes": ["sport", "art"], "entity_types": ["PER", "LOC"]})
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
    dm = MultiTaskDataModule(train_files=[path], labels={"classes": None, "entity_types": None},
                             tokenizer=bpe_tokenizer)
    dm.setup("fit")
    state = {"label_space": {"classes": ["sport", "art", "x"], "entity_types": ["PER", "LOC"]}}
    dm.load_state_dict(state)
    assert dm.state_dict() == state
    item = dm.dataset("train")[2]  # row 2: label "sport", NER B-PER first
    assert item.cls_label == 0 and item.word_labels[0] == dm.label_space.tag_to_id["B-PER"] == 1


def test_bad_config_values(write):
    with pytest.raises(MtstError, match="sampling"):
        MultiTaskDataModule(train_files=[write("t.jsonl", rows(3))], sampling="random")
    with pytest.raises(DataError, match="unknown file option"):
        MultiTaskDataModule(train_files=[{"path": "x.jsonl", "colums": 2}])


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
        return MultiTaskDataModule(train_files=[write("t.jsonl", rows(24))], batch_size=4,
                                   labels={"classes": None, "entity_types": None},
                                   tokenizer=bpe_tokenizer, seed=3)

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
LABELS = {"classes": ["sport", "art"], "entity_types": ["PER", "LOC"]}


def same_items(a: EncodedStore, b: EncodedStore) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        for name in ("input_ids", "word_ids", "ner_labels", "word_labels"):
            u, v = getattr(x, name), getattr(y, name)
            assert (u is None and v is None) or np.array_equal(u, v), name
        assert (x.cls_label, x.num_words, x.example_index, x.source) == (
            y.cls_label, y.num_words, y.example_index, y.source)


def module(path, tokenizer, store_dir=None, **kwargs):
    return MultiTaskDataModule(train_files=[path], labels=LABELS, batch_size=4, max_length=9,
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
    space = LabelSpace(**LABELS)
    base = module(path, bpe_tokenizer, tmp_path).store_folder("train", space)
    assert module(path, bpe_tokenizer, tmp_path).store_folder("train", space) == base
    assert module(path, wordpiece_tokenizer, tmp_path).store_folder("train", space) != base
    assert module(path, bpe_tokenizer, tmp_path, label_all_subtokens=True).store_folder(
        "train", space) != base
    write("t.jsonl", rows(9))
    os.utime(path, ns=(1, 1))
    assert module(path, bpe_tokenizer, tmp_path).store_folder("train", space) != base


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
    from mtst.data.validation import Example

    sentences = [["Zürich", "naïve", "😀", "x"], ["x", "Zürich"], ["O'Brien", "2021-03-04", "x"]]
    examples = [Example(words=s, tags=None, label=None, path="m", where="1") for s in sentences]
    cache = SubwordCache(any_tokenizer)
    store = encode_examples(examples, any_tokenizer, None, 512)
    oracle = any_tokenizer(sentences, is_split_into_words=True)
    for i, item in enumerate(store):
        assert item.input_ids.tolist() == oracle["input_ids"][i]
        assert item.word_ids.tolist() == [-1 if w is None else w for w in oracle.word_ids(i)]
    assert len(cache.prefix) + len(cache.suffix) == any_tokenizer.num_special_tokens_to_add()


def test_prepare_data_writes_every_split_once(write, tmp_path, bpe_tokenizer):
    files = {"train_files": [write("t.jsonl", rows(12))], "val_files": [write("v.jsonl", rows(4))]}
    store = tmp_path / "store"
    first = MultiTaskDataModule(labels=LABELS, store_dir=store, tokenizer=bpe_tokenizer, **files)
    first.prepare_data()
    assert sorted(p.name.split("-")[0] for p in store.iterdir()) == ["train", "val"]
    rank1 = MultiTaskDataModule(labels=LABELS, store_dir=store, tokenizer=bpe_tokenizer, **files)
    rank1.setup("fit")  # another rank: opens the folders
    assert rank1.dataset("val").folder == first.dataset("val").folder
    same_items(first.dataset("train"), rank1.dataset("train"))


def test_word_cache_bounded_and_growing_gives_the_same_ids(any_tokenizer):
    from mtst.data.validation import Example

    words = [f"w{i}x" for i in range(300)] + ["Zürich", "naïve"] * 5
    examples = [Example(words=words[i : i + 7], tags=None, label=None, path="m", where=str(i))
                for i in range(0, len(words), 7)]
    small = SubwordCache(any_tokenizer, max_words=20)
    large = SubwordCache(any_tokenizer)
    for chunk in (examples[:20], examples[20:]):
        a = encode_chunk(chunk, small, None, 64)
        b = encode_chunk(chunk, large, None, 64)
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert len(small.index) < len(large.index) == len(set(words))  # small was emptied
