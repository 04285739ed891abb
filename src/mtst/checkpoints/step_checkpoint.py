"""`last.ckpt` every N optimizer steps and at every epoch end, through Lightning's public
checkpoint API (`callbacks.step_checkpoint` in conf/callbacks/default.yaml)."""

from __future__ import annotations

import time
import weakref
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from mtst.errors import MtstError


class StepCheckpoint(ModelCheckpoint):
    """`last.ckpt` every N optimizer steps and at every epoch end, so a killed run loses little.

    Lightning's monitoring ModelCheckpoint refreshes `last.ckpt` only when it also saves a best
    checkpoint, so without this `last.ckpt` can lag behind. The last batch of an epoch is skipped:
    validation follows it, and a checkpoint taken before validation would make a resumed run skip
    that validation; the epoch-end save (after validation) covers it.

    `min_interval_s`: a step save also waits until that long has passed since the previous save,
    so a killed run loses at most `every_n_train_steps` steps or `min_interval_s` seconds of
    training, whichever is more: 100 steps served from the frozen-backbone feature cache take
    under a second, and a save (~15 ms) every 100 would be a tenth of the epoch. Steps count from
    the previous save (an epoch end's included), not at multiples of N. Without
    `every_n_train_steps`, or with `train_time_interval`, step saves are Lightning's.

    Writes go through `trainer.save_checkpoint` and are named as Lightning's `save_last` names
    them; this callback keeps its own record of them, Lightning's being private.

    Args:
        *args, **kwargs: Lightning's `ModelCheckpoint` arguments.
        min_interval_s: the least time between two step saves.
        every_n_train_steps: save `last.ckpt` every this many optimizer steps.
        train_time_interval, enable_version_counter: as Lightning's `ModelCheckpoint`.
    """

    def __init__(self, *args: Any, min_interval_s: float = 0.0, every_n_train_steps: int | None = None,
                 train_time_interval: timedelta | None = None, enable_version_counter: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(*args, every_n_train_steps=every_n_train_steps,
                         train_time_interval=train_time_interval,
                         enable_version_counter=enable_version_counter, **kwargs)
        if min_interval_s < 0:
            raise MtstError(f"callbacks.step_checkpoint.min_interval_s={min_interval_s}: expected >= 0")
        self.min_interval_s = float(min_interval_s)
        self.every_n_steps = int(every_n_train_steps or 0)
        self.by_time, self.versioned = train_time_interval is not None, bool(enable_version_counter)
        self._saved_step, self._saved_at = 0, time.monotonic()  # where step counting starts
        self._written_step, self._written = 0, False  # as Lightning's: no save at step 0

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self._saved_step, self._saved_at = trainer.global_step, time.monotonic()  # a resume too

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        if self.by_time or not self.every_n_steps:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        if trainer.global_step - self._saved_step < self.every_n_steps:
            return
        early = time.monotonic() - self._saved_at < self.min_interval_s
        # every rank must take the same decision (a save has collectives): rank 0's clock rules
        if not trainer.strategy.broadcast(early) and not self._skip(trainer):
            self._write_last(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._skip(trainer):
            self._write_last(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if not self._written:  # Lightning's writes `last.ckpt` once when no save came before
            super().on_train_end(trainer, pl_module)

    def _skip(self, trainer: L.Trainer) -> bool:
        """No write in a fast dev run, outside `fit`, in the sanity check, or twice at a step."""
        return (bool(trainer.fast_dev_run) or trainer.state.fn != "fit" or trainer.sanity_checking
                or self._written_step == trainer.global_step)

    def _write_last(self, trainer: L.Trainer) -> None:
        self._saved_step, self._saved_at = trainer.global_step, time.monotonic()
        if not self.save_last:
            return
        metrics = {**trainer.callback_metrics, "epoch": torch.tensor(trainer.current_epoch),
                   "step": torch.tensor(trainer.global_step)}
        path, version = self.format_checkpoint_name(metrics, self.CHECKPOINT_NAME_LAST), self.STARTING_VERSION
        while self.versioned and self.file_exists(path, trainer) and path != self.last_model_path:
            path, version = self.format_checkpoint_name(metrics, self.CHECKPOINT_NAME_LAST, ver=version), version + 1
        previous, self.last_model_path = self.last_model_path, path  # part of the saved state
        trainer.save_checkpoint(path, self.save_weights_only)
        self._written_step, self._written = trainer.global_step, True
        for logger in trainer.loggers if trainer.is_global_zero else []:
            logger.after_save_checkpoint(weakref.proxy(self))
        # a renamed `last` (templated or versioned) replaces the previous one in this folder,
        # unless the run resumed from that one (as Lightning's does)
        old, resumed = Path(previous).absolute(), Path(trainer.ckpt_path or path).absolute()
        if previous and previous != path and old != resumed and self.dirpath and (
                Path(self.dirpath).absolute() in old.parents):
            trainer.strategy.remove_checkpoint(previous)
