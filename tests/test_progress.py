"""The training progress bar takes at most N updates a second, and always the epoch's last."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import RichProgressBar

from mtst.training.progress import ProgressBar


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(bar: ProgressBar, monkeypatch, epochs: int = 2, batches: int = 12) -> list[tuple[int, int]]:
    """(epoch, batch index) of every update that reached Lightning's bar."""
    seen: list[tuple[int, int]] = []
    original = RichProgressBar.on_train_batch_end

    def counting(self, trainer, pl_module, outputs, batch, batch_idx):
        seen.append((trainer.current_epoch, batch_idx))
        original(self, trainer, pl_module, outputs, batch, batch_idx)

    monkeypatch.setattr(RichProgressBar, "on_train_batch_end", counting)
    data = torch.utils.data.DataLoader(torch.randn(batches * 2, 4), batch_size=2)
    trainer = L.Trainer(max_epochs=epochs, callbacks=[bar], logger=False, accelerator="cpu",
                        enable_checkpointing=False, enable_model_summary=False)
    assert trainer.progress_bar_callback is bar
    trainer.fit(Tiny(), data)
    task = bar.progress.tasks[bar.train_progress_bar_id] if bar.progress else None
    assert task is None or task.completed == batches  # the bar ends on the last batch
    return seen


def test_a_slow_rate_updates_on_each_epochs_first_and_last_batch_only(monkeypatch) -> None:
    seen = fit(ProgressBar(updates_per_second=1e-6), monkeypatch)
    assert seen == [(0, 0), (0, 11), (1, 0), (1, 11)]


def test_rate_zero_updates_after_every_batch_as_lightning_does(monkeypatch) -> None:
    seen = fit(ProgressBar(updates_per_second=0), monkeypatch)
    assert seen == [(e, i) for e in range(2) for i in range(12)]


def test_a_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError, match=r"updates_per_second=-1: expected a rate >= 0"):
        ProgressBar(updates_per_second=-1)


def test_the_bar_shows_the_latest_step_loss_the_module_keeps() -> None:
    bar, module = ProgressBar(), Tiny()
    trainer = L.Trainer(callbacks=[bar], logger=False, accelerator="cpu")
    assert "train/loss" not in bar.get_metrics(trainer, module)
    module.step_values = {"train/loss": torch.tensor(0.25), "train/ner/loss": torch.tensor(0.5)}
    metrics = bar.get_metrics(trainer, module)
    assert metrics["train/loss"] == 0.25 and "train/ner/loss" not in metrics
