"""Gradual unfreezing: the trainable blocks and every group's learning rate follow the schedule
epoch by epoch (and reach TensorBoard). Resume: tests/reliability/test_resume_freezing.py."""

from __future__ import annotations

import re

import pytest
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from transformers import BertConfig, BertModel

from mtst.errors import MtstError
from mtst.freezing.blocks import encoder_units
from mtst.freezing.strategies import build_freeze_strategy
from mtst.model.encoder import SentenceEncoder
from mtst.model.network import MultiTaskNetwork
from mtst.tasks import build_tasks
from mtst.training.module import MultiTaskModule
from tests.conftest import freeze_config, optimizer_config
from tests.test_freezing import (
    make_datamodule,
    make_model,
    make_trainer,
    three_tasks,
)

LR_HEAD, LR_BACKBONE, DECAY, WARMUP = 1e-2, 1e-3, 0.5, 2
GRADUAL = freeze_config("gradual", stage1_epochs=1, top_blocks=1, every_epochs=1, layer_decay=DECAY)
OPTIMIZER = {"lr_head": LR_HEAD, "lr_backbone": LR_BACKBONE, "warmup_steps": WARMUP}


@pytest.fixture(scope="module")
def dm():
    return make_datamodule()


def unit_of(name: str) -> str:
    """Tiny GPT-Neo layout: h.0 / h.1 blocks, wte/wpe embeddings, ln_f above the blocks; every
    task head (topic, ner, mood) is in `heads`."""
    match = re.match(r"net\.encoder\.backbone\.h\.(\d+)\.", name)
    if match:
        return f"block_{match.group(1)}"
    if re.match(r"net\.encoder\.backbone\.(wte|wpe)\.", name):
        return "embeddings"
    if name.startswith("net.encoder."):
        return "final"
    assert name.startswith("net.heads."), name
    return "heads"


# epoch -> units that train; unit -> base learning rate (block k from the top: LR_BACKBONE*DECAY**k)
SCHEDULE = {0: {"heads"}, 1: {"heads", "final", "block_1"},
            2: {"heads", "final", "block_1", "block_0"},
            3: {"heads", "final", "block_1", "block_0", "embeddings"}}
BASE_LR = {"heads": LR_HEAD, "final": LR_BACKBONE, "block_1": LR_BACKBONE,
           "block_0": LR_BACKBONE * DECAY, "embeddings": LR_BACKBONE * DECAY**2}


class Recorder(Callback):
    """At each epoch's first batch (after the model's epoch-start hook): trainable units, lrs."""

    def __init__(self) -> None:
        self.seen: dict[int, dict] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            units = {unit_of(n) for n, p in pl_module.named_parameters() if p.requires_grad}
            groups = {g["name"]: (g["lr"], g["initial_lr"])
                      for g in trainer.optimizers[0].param_groups}
            self.seen[trainer.current_epoch] = {"units": units, "groups": groups,
                                                "step": trainer.global_step}


def expected_factor(step: int, total: int) -> float:
    return (step + 1) / WARMUP if step < WARMUP else (total - step) / (total - WARMUP)


def test_schedule_blocks_and_group_lrs_per_epoch_logged_to_tensorboard(dm, tmp_path) -> None:
    model = make_model(dm, GRADUAL, optimizer=OPTIMIZER)
    recorder = Recorder()
    trainer = make_trainer(4, callbacks=[recorder, LearningRateMonitor("step")], log_every_n_steps=1,
                           logger=TensorBoardLogger(tmp_path, name="tb", version=""))
    trainer.fit(model, train_dataloaders=dm.train_dataloader())
    total = 4 * 3
    for epoch, units in SCHEDULE.items():
        seen = recorder.seen[epoch]
        assert seen["units"] == units, f"epoch {epoch}"
        factor = expected_factor(seen["step"], total)
        for group, (lr, base) in seen["groups"].items():
            unit = group.removeprefix("backbone.").removesuffix("_no_decay")
            assert base == pytest.approx(BASE_LR[unit]), group
            assert lr == pytest.approx(BASE_LR[unit] * factor), f"epoch {epoch} {group}"
    # TensorBoard: trainable parameter count every epoch, learning rate of every group
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        counts[unit_of(name)] = counts.get(unit_of(name), 0) + p.numel()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    logged = [e.value for e in acc.Scalars("train/trainable_params")]
    assert logged == [sum(counts[u] for u in SCHEDULE[e]) for e in range(4)]
    group_names = {g["name"] for g in trainer.optimizers[0].param_groups}
    assert {g.removesuffix("_no_decay") for g in group_names} == {
        "heads", "backbone.final", "backbone.block_1", "backbone.block_0", "backbone.embeddings"}
    for group in group_names:
        assert len(acc.Scalars(f"lr-AdamW/{group}")) == total


def test_unfrozen_count_follows_stage_top_blocks_and_every() -> None:
    strategy = build_freeze_strategy(freeze_config("gradual", stage1_epochs=2, top_blocks=2, every_epochs=3))
    assert [strategy.unfrozen_count(e) for e in range(9)] == [0, 0, 2, 2, 2, 3, 3, 3, 4]


def tiny_bert() -> BertModel:
    return BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=3,
                                num_attention_heads=2, intermediate_size=32))


def test_bert_blocks_and_discriminative_groups(dm) -> None:
    encoder = SentenceEncoder(tiny_bert(), dm.tokenizer, pooling="mean")
    units = encoder_units(encoder)
    assert [(u.name, u.depth) for u in units] == [
        ("final", 0), ("block_2", 0), ("block_1", 1), ("block_0", 2), ("embeddings", 3)]
    assert all(".encoder.layer.1." in n for n, _ in units[2].params)
    tasks = three_tasks()
    specs = {n: t.network_spec(dm.label_spaces[n]) for n, t in build_tasks(tasks).items()}
    model = MultiTaskModule(MultiTaskNetwork(encoder, specs), tasks, freeze=GRADUAL)
    groups = model.freezer.param_groups(model, optimizer_config(**OPTIMIZER))
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs["backbone.block_2"] == LR_BACKBONE
    assert lrs["backbone.block_0"] == pytest.approx(LR_BACKBONE * DECAY**2)
    assert lrs["backbone.embeddings"] == pytest.approx(LR_BACKBONE * DECAY**3)
    assert lrs["heads"] == LR_HEAD
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each exactly once
    model.freezer.apply(model, 1)  # stage 2: pooler ('final') and the top block
    trainable = {n for n, p in model.named_parameters()
                 if p.requires_grad and n.startswith("net.encoder.")}
    assert trainable and all(".layer.2." in n or ".pooler." in n for n in trainable)


class Custom(nn.Module):
    """An architecture no known layout matches."""

    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(10, 4)
        self.stack = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))
        self.norm = nn.LayerNorm(4)


def test_unknown_architecture_names_the_hook_and_the_hook_works() -> None:
    with pytest.raises(MtstError, match=r"Custom.*freeze\.blocks_pattern"):
        encoder_units(Custom())
    units = encoder_units(Custom(), blocks_pattern=r"^stack\.(\d+)\.", embeddings_pattern=r"^tok\.")
    assert [u.name for u in units] == ["final", "block_1", "block_0", "embeddings"]
    with pytest.raises(MtstError, match="one group"):
        encoder_units(Custom(), blocks_pattern=r"^stack\.\d+\.", embeddings_pattern=r"^tok\.")
    with pytest.raises(MtstError, match="not a valid regular expression"):
        encoder_units(Custom(), blocks_pattern=r"^stack\.(\d+", embeddings_pattern=r"^tok\.")
