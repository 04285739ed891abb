"""The DataModule end to end: label spaces, caching, batches, Lightning epochs and resume."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from mtst.data.datamodule import MultiTaskDataModule
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
    assert dm.dataset("train").items[0].input_ids[0] == wordpiece_tokenizer.cls_token_id


def test_checkpoint_label_space_wins(write, bpe_tokenizer):
    path = write("t.jsonl", rows(6))
    dm = MultiTaskDataModule(train_files=[path], labels={"classes": None, "entity_types": None},
                             tokenizer=bpe_tokenizer)
    dm.setup("fit")
    state = {"label_space": {"classes": ["sport", "art", "x"], "entity_types": ["PER", "LOC"]}}
    dm.load_state_dict(state)
    assert dm.state_dict() == state
    item = dm.dataset("train").items[2]  # row 2: label "sport", NER B-PER first
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
