"""Weighting under Lightning's DDP on CPU: 2 gloo processes take, for 3 optimizer steps, the same
steps as 1 process on the same global batches, and a method's state ends the same on every rank.

Both sides run the whole Lightning loop (AdamW with warm-up, gradient clipping at 1.0) in float64
(`precision="64-true"`) on a tiny BERT: GPT-Neo takes its attention scores in float32, and at
AdamW's first steps an element whose gradient is float32 noise moves by a whole step either way. The global batches hold 8 examples labelled for two sentence tasks, so
the mean of the two ranks' per-example means is the global batch's mean (a token-level task's
mean over tokens would differ between halves with different token counts). The strategy is
`trainer=ddp_cpu`'s (DDPStrategy, gloo) started by spawning: pytest cannot re-run its command
line, which is how `train.py` starts the other ranks.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from tests.conftest import TINY, make_datamodule, make_module, sample_tasks

STEPS, GLOBAL_BATCH = 3, 8
LOSS = {"grad_on": "representation"}  # where cagrad combines (conf/model/multitask.yaml's value)


def two_sentence_tasks() -> dict:
    tasks = sample_tasks()
    del tasks["ner"]
    tasks["mood"] = {**tasks["topic"], "labels": None, "weight": 0.5}
    return tasks


class GlobalBatches(L.LightningDataModule):
    """Fixed global batches; each rank reads its contiguous share of every one."""

    def __init__(self, examples: list[list[dict]], collate) -> None:
        super().__init__()
        self.examples, self.collate = examples, collate

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        share = GLOBAL_BATCH // world
        batches = [self.collate(batch[rank * share:(rank + 1) * share]) for batch in self.examples]
        return torch.utils.data.DataLoader(batches, batch_size=None)  # each item is one batch


class SaveState(L.Callback):
    """Each rank writes its module's state (parameters and the method's buffers) at the end."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        state = {n: t.detach().clone() for n, t in module.state_dict().items()}
        torch.save(state, Path(self.folder) / f"rank{trainer.global_rank}.pt")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A random 2-layer BERT (no dropout) with the tiny GPT-Neo's tokenizer, saved as a folder."""
    from transformers import BertConfig, BertModel

    from mtst.model.backbone import load_tokenizer

    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = load_tokenizer(TINY)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=256,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def global_batches(dm) -> tuple[list[list[dict]], object]:
    from mtst.data.collate import Collator

    ds = dm.dataset("train")
    labelled = [ds[i] for i in range(len(ds)) if min(ds[i].labels.values(), default=-1) >= 0
                and len(ds[i].labels) == 2]
    assert len(labelled) >= STEPS * GLOBAL_BATCH
    batches = [labelled[k * GLOBAL_BATCH:(k + 1) * GLOBAL_BATCH] for k in range(STEPS)]
    return batches, Collator(dm.pad_token_id, dm.task_kinds)


def fit(dm, weighting: str, folder: Path, devices: int, backbone: str) -> None:
    from lightning.pytorch.strategies import DDPStrategy

    folder.mkdir()
    tasks = two_sentence_tasks()
    module = make_module(dm, tasks=tasks, weighting=weighting, loss=LOSS, dropout=0.0,
                         backbone=backbone)
    strategy = (DDPStrategy(start_method="spawn", process_group_backend="gloo",
                            find_unused_parameters=False, broadcast_buffers=False)
                if devices > 1 else "auto")
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=strategy, precision="64-true",
                        max_steps=STEPS, max_epochs=1, gradient_clip_val=1.0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        use_distributed_sampler=False, callbacks=[SaveState(str(folder))],
                        default_root_dir=str(folder))
    trainer.fit(module, datamodule=GlobalBatches(*global_batches(dm)))


@pytest.mark.slow
@pytest.mark.parametrize("weighting", ["famo", "cagrad"])
def test_two_ddp_processes_take_the_steps_of_one_process(tmp_path, tiny_bert, weighting: str) -> None:
    dm = make_datamodule(two_sentence_tasks(), tokenizer=tiny_bert, batch_size=GLOBAL_BATCH)
    fit(dm, weighting, tmp_path / "one", devices=1, backbone=tiny_bert)
    fit(dm, weighting, tmp_path / "two", devices=2, backbone=tiny_bert)
    one = torch.load(tmp_path / "one" / "rank0.pt", weights_only=True)
    initial = make_module(dm, tasks=two_sentence_tasks(), weighting=weighting, loss=LOSS,
                          dropout=0.0, backbone=tiny_bert).double().state_dict()
    moved = [n for n in one if one[n].is_floating_point() and not torch.equal(one[n], initial[n])]
    assert any(n.startswith("net.encoder.") for n in moved) and any(n.startswith("net.heads.mood") for n in moved)
    for rank in (0, 1):
        two = torch.load(tmp_path / "two" / f"rank{rank}.pt", weights_only=True)
        assert two.keys() == one.keys()
        for name, expected in one.items():
            # float64 throughout: 1e-9 is far below one AdamW step (lr 5e-5) on any element
            torch.testing.assert_close(two[name].double(), expected.double(), rtol=0, atol=1e-9,
                                       msg=f"rank {rank}: {name}")
    if weighting == "famo":  # its task logits moved, and equally on both ranks (checked above)
        logits = [n for n in one if n.startswith("weighting.")]
        assert logits and any(not torch.equal(one[n], initial[n]) for n in logits)


def test_a_pooler_the_embedding_never_reads_does_not_train(tiny_bert) -> None:
    """BERT-style backbones carry a pooler mtst's pooling replaces: it gets no gradient, and DDP
    (find_unused_parameters=False) refuses a trainable parameter without one."""
    dm = make_datamodule(two_sentence_tasks(), tokenizer=tiny_bert, batch_size=GLOBAL_BATCH)
    module = make_module(dm, tasks=two_sentence_tasks(), backbone=tiny_bert)
    pooler = {n for n, _ in module.net.named_parameters() if ".pooler." in n}
    assert pooler and {f"encoder.{n}" for n in module.net.encoder.unused_parameter_names()} == pooler
    module.freezer.apply(module, 0)
    trains = {n for n, p in module.net.named_parameters() if p.requires_grad}
    assert not trains & pooler and trains == {n for n, _ in module.net.named_parameters()} - pooler


@pytest.mark.parametrize("weighting", ["famo", "cagrad"])
def test_gradient_accumulation_combines_each_micro_batch_and_steps_once(tmp_path, tiny_bert,
                                                                       weighting: str) -> None:
    """accumulate_grad_batches=2 over the 3 batches' 6 halves: 3 optimizer steps; FAMO's update
    after the step (the extra forward) runs once per optimizer step, not per micro-batch."""
    dm = make_datamodule(two_sentence_tasks(), tokenizer=tiny_bert, batch_size=GLOBAL_BATCH)
    examples, collate = global_batches(dm)
    halves = [half for batch in examples for half in (batch[:4], batch[4:])]
    module = make_module(dm, tasks=two_sentence_tasks(), weighting=weighting, loss=LOSS,
                         dropout=0.0, backbone=tiny_bert)
    loader = torch.utils.data.DataLoader([collate(h) for h in halves], batch_size=None)
    trainer = L.Trainer(accelerator="cpu", devices=1, precision="64-true", max_epochs=1,
                        accumulate_grad_batches=2, gradient_clip_val=1.0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=str(tmp_path))
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == STEPS
    assert all(bool(torch.isfinite(p).all()) for p in module.parameters())
    if weighting == "famo":
        assert module.weighting.adam_steps.tolist() == [STEPS, STEPS]
