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
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.starts: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        ends = [*self.starts[1:], time.perf_counter()]
        seconds = [end - start for start, end in zip(self.starts, ends, strict=True)]
        self.path.write_text(json.dumps({"epochs_s": seconds}))
