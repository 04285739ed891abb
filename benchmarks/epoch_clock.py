"""A callback the frozen-epochs benchmark adds to its `train.py` runs: the wall time of every
training epoch, measured inside the run, written as JSON when training ends.

Whole-run times carry start-up noise of a few seconds into any difference of two runs; an
epoch timed inside one run does not. An epoch spans one `on_train_epoch_start` to the next (or
to `on_train_end` for the last), so it includes its validation and checkpoint writes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class EpochClock(Callback):
    """`epochs_s`: one epoch start to the next (to the end of training for the last), written to
    `path` as JSON when training ends. `epoch_s` / `train_s`: epoch start to `on_train_epoch_end`
    (its validation included) and to its last training batch, for callers in the same process."""

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.starts: list[float] = []
        self.epoch_s: list[float] = []
        self.train_s: list[float] = []
        self._train_end = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())
        self._train_end = self.starts[-1]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._train_end = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epoch_s.append(time.perf_counter() - self.starts[-1])
        self.train_s.append(self._train_end - self.starts[-1])

    def on_train_end(self, trainer, pl_module) -> None:
        if self.path is None:
            return
        ends = [*self.starts[1:], time.perf_counter()]
        seconds = [end - start for start, end in zip(self.starts, ends, strict=True)]
        self.path.write_text(json.dumps({"epochs_s": seconds}))
