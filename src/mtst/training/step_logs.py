"""What the training step logs, at the cost it needs: per-step values only on the steps Lightning
hands to the loggers, written to them directly; epoch means summed as tensors without a device
sync per step."""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
import torch


class EpochMeans:
    """Batch-size-weighted means of per-step values over an epoch, summed as tensors (no device
    sync per step): what `self.log(..., on_epoch=True, batch_size=n)` would compute, with one
    `self.log` per name and epoch instead of one per step."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.sizes: dict[str, int] = {}

    def add(self, values: dict[str, torch.Tensor], size: int) -> None:
        for name, value in values.items():
            total = self.sums.get(name)
            if total is None:
                self.sums[name] = value.float() * size  # a tensor of its own, added to in place
            else:
                total.add_(value, alpha=size)  # one tensor operation a step
            self.sizes[name] = self.sizes.get(name, 0) + size

    def pop(self) -> dict[str, torch.Tensor]:
        """The means so far; starts over."""
        means = {name: total / self.sizes[name] for name, total in self.sums.items()}
        self.sums, self.sizes = {}, {}
        return means


def step_logs_needed(trainer: L.Trainer) -> bool:
    """Whether Lightning hands this step's values to the loggers (every `log_every_n_steps`
    steps, and before a stop); logged on other steps they would cost a `self.log` each, unread.
    The progress bar shows the values of the logging steps."""
    try:  # private: Lightning has no public hook that says so (pinned in tests/test_step_logs.py)
        return bool(trainer._logger_connector.should_update_logs or trainer.fast_dev_run)
    except AttributeError:  # Lightning's internals changed: log every step, as before
        return True


def log_step_values(trainer: L.Trainer, values: Mapping[str, torch.Tensor | float]) -> None:
    """`values` straight to the loggers, as Lightning writes this batch's step values: under
    its step number (the optimizer steps taken before this batch) with `epoch`, on global rank
    zero.

    Why not `self.log`: each call moves Lightning's whole result collection to the value's
    device, about 1 ms on a 2-core CPU, which is more than a training step served from the
    feature cache spends in its heads. Step values are for the loggers and the progress bar
    (`ProgressBar` shows the step's `train/loss`); callbacks monitor the epoch values
    (`train/loss_epoch`, `val/score`), which still go through `self.log`."""
    if not values or not trainer.is_global_zero or not trainer.loggers:
        return
    metrics = {name: float(value) for name, value in values.items()}
    metrics["epoch"] = trainer.current_epoch
    try:  # private, as Lightning's own logging reads it (pinned in tests/test_step_logs.py)
        step = int(trainer.fit_loop.epoch_loop._batches_that_stepped)
    except AttributeError:  # Lightning's internals changed: the optimizer steps so far
        step = trainer.global_step
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=step)
