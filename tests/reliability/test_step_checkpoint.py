"""When `StepCheckpoint` writes `last.ckpt`: every N steps counted from the previous save, no
sooner than `min_interval_s` after it, never on an epoch's last batch, always at an epoch end."""

from __future__ import annotations

import types

import lightning as L
import pytest
import torch

from mtst.checkpoints import step_checkpoint
from mtst.checkpoints.step_checkpoint import StepCheckpoint
from mtst.errors import MtstError

SECONDS_A_STEP = 3.0


class Clocked(L.LightningModule):
    """Each training step moves the fake clock on by SECONDS_A_STEP."""

    def __init__(self, clock: dict[str, float]) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.clock = clock

    def training_step(self, batch, batch_idx):
        self.clock["now"] += SECONDS_A_STEP
        return self.layer(batch[0]).pow(2).mean()

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 2)), batch_size=2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def saved_steps(tmp_path, monkeypatch, every: int, min_interval_s: float, epochs: int = 1) -> list[int]:
    clock = {"now": 100.0}
    monkeypatch.setattr(step_checkpoint, "time", types.SimpleNamespace(monotonic=lambda: clock["now"]))
    checkpoint = StepCheckpoint(dirpath=tmp_path, every_n_train_steps=every, min_interval_s=min_interval_s,
                                save_top_k=0, save_last=True)
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[checkpoint], default_root_dir=tmp_path)
    steps: list[int] = []
    save = trainer.save_checkpoint

    def recorded(*args, **kwargs):
        steps.append(trainer.global_step)
        return save(*args, **kwargs)

    trainer.save_checkpoint = recorded
    trainer.fit(Clocked(clock))
    return steps


def test_without_an_interval_every_n_steps_and_each_epoch_end(tmp_path, monkeypatch) -> None:
    # 8 steps an epoch; the last batch is left to the epoch end; counting restarts at each save
    assert saved_steps(tmp_path, monkeypatch, every=3, min_interval_s=0, epochs=2) == [3, 6, 8, 11, 14, 16]


def test_a_step_save_waits_for_the_interval_since_the_previous_save(tmp_path, monkeypatch) -> None:
    # 3 s a step, 5 s apart at least: every second step, then the epoch end
    assert saved_steps(tmp_path, monkeypatch, every=1, min_interval_s=5) == [2, 4, 6, 8]
    # an interval longer than the epoch leaves the epoch-end save alone
    assert saved_steps(tmp_path, monkeypatch, every=1, min_interval_s=1000) == [8]


def test_a_negative_interval_is_one_line_naming_the_key() -> None:
    with pytest.raises(MtstError, match="callbacks.step_checkpoint.min_interval_s=-1"):
        StepCheckpoint(every_n_train_steps=1, min_interval_s=-1)
