"""The progress bar, redrawn at a rate a reader can follow rather than once per batch, showing
the training step's loss."""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch.callbacks import RichProgressBar


class ProgressBar(RichProgressBar):
    """Lightning's `RichProgressBar`, whose training bar takes at most `updates_per_second`
    updates a second (and always the epoch's last batch).

    Why: the stock bar updates its count and metrics after every training batch, about 0.25 ms
    each on a 2-core CPU. That is nothing next to a batch through the encoder, but a
    `freeze=backbone` epoch served from the feature cache runs some 200 batches a second, where
    it is a tenth of the step. Rich repaints on its own schedule anyway, so updates beyond a few
    a second are never seen. `updates_per_second: 0` updates after every batch, as Lightning does.

    `train/loss` is the latest step's loss (`MultiTaskModule.step_values`): step values reach
    the loggers on logging steps only, not through `self.log(prog_bar=True)` at every step.
    """

    def __init__(self, *args: Any, updates_per_second: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if updates_per_second < 0:
            raise ValueError(f"updates_per_second={updates_per_second!r}: expected a rate >= 0")
        self.min_interval = 1.0 / updates_per_second if updates_per_second else 0.0
        self._updated_at = float("-inf")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._updated_at = float("-inf")  # a new epoch's bar shows its first batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.monotonic()
        last = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if now - self._updated_at < self.min_interval and not last:
            return
        self._updated_at = now
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        loss = (getattr(pl_module, "step_values", None) or {}).get("train/loss")
        if loss is not None:
            metrics["train/loss"] = float(loss)
        return metrics
