"""Row 16: what a later `freeze=backbone` epoch costs next to the first, in whole `train.py` runs.

Timed from outside, the way a user meets it: runs of 0, 1 and 13 epochs taking turns, first epoch
= t1 - t0, later epoch = (t13 - t1) / 12 (twelve epochs divide a run's start-up noise by 12).
The 13-epoch runs also time each epoch inside the run (`training.EpochClock`) under three
callback set-ups, to tell the loop's cost from the checkpoints' and the logging's.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

from benchmarks.common import Budget, frozen_conll_valid, scratch_dir, timed_run
from benchmarks.machine import cpu_model

LAST = 13  # epochs of the longest run
EPOCHS = (0, 1, LAST)  # black-box run lengths, default callbacks
TARGET = 25.0
NO_CHECKPOINTS = ["~callbacks.model_checkpoint", "~callbacks.step_checkpoint",
                  "++trainer.enable_checkpointing=false"]
VARIANTS = {"default": [], "no_checkpoints": NO_CHECKPOINTS,
            "bare": [*NO_CHECKPOINTS, "~callbacks.lr_monitor", "~callbacks.rich_progress_bar",
                     "~callbacks.model_summary", "trainer.enable_progress_bar=false",
                     "trainer.log_every_n_steps=100000"]}


def command(conll: Path, epochs: int, log_dir: Path, extra: list[str], stop: int | None = None
            ) -> list[str]:
    """The `train.py` command line (without the interpreter) of one run."""
    zero = ["trainer.min_epochs=0"] if epochs == 0 else []  # else min_epochs=1 trains one
    return ["train.py", *frozen_conll_valid(conll, stop), "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2", f"trainer.max_epochs={epochs}", *zero,
            f"paths.log_dir={log_dir}", *extra]


def black_box(times: dict[int, list[float]]) -> dict[str, Any]:
    """First and later epoch: medians over the repeats of each repeat's paired differences."""
    runs = list(zip(times[0], times[1], times[LAST], strict=True))
    first = statistics.median(t1 - t0 for t0, t1, _ in runs)
    later = statistics.median((tl - t1) / (LAST - 1) for _, t1, tl in runs)
    each = [(t1 - t0) / ((tl - t1) / (LAST - 1)) if tl > t1 else float("inf") for t0, t1, tl in runs]
    return {"first_epoch_s": first, "later_epoch_s": later,
            "ratio": first / later if later > 0 else float("inf"), "repeat_ratios": each}


def in_run(clocks: list[list[float]]) -> dict[str, Any]:
    """First epoch and the median later epoch inside each run, medians over the runs."""
    first = statistics.median(c[0] for c in clocks)
    later = statistics.median(statistics.median(c[1:]) for c in clocks)
    return {"first_epoch_s": first, "later_epoch_s": later, "ratio": first / later,
            "epochs_s": clocks}


def run(budget: Budget, data: dict[str, Path], repeats: int = 5) -> dict[str, Any]:
    conll = data.get("conll2003")
    if conll is None:
        return {"skipped": "CoNLL-2003 not found"}
    repeats, stop = (1, 256) if budget.name == "quick" else (repeats, None)
    times: dict[int, list[float]] = {n: [] for n in EPOCHS}
    clocks: dict[str, list[list[float]]] = {v: [] for v in VARIANTS}
    load = [os.getloadavg()[0]]
    with scratch_dir("frozen-epochs") as tmp:
        for _ in range(repeats):
            for variant, extra in VARIANTS.items():
                for epochs in EPOCHS if variant == "default" else (LAST,):
                    cmd = command(conll, epochs, Path(tmp) / variant, extra, stop)
                    clock = Path(tmp) / f"{variant}-{epochs}.json"
                    if epochs == LAST:  # the epoch clock as one more callback
                        cmd += ["+callbacks.epoch_clock._target_=benchmarks.training.EpochClock",
                                f"+callbacks.epoch_clock.path={clock}"]
                    seconds = timed_run(cmd, env={"MTST_CONLL_DIR": str(conll)}, timeout=900)
                    if variant == "default":
                        times[epochs].append(seconds)
                    if epochs == LAST:
                        clocks[variant].append(json.loads(clock.read_text())["epochs_s"])
            load.append(os.getloadavg()[0])
    shown = " ".join(command(Path("$CONLL"), LAST, Path("$LOGS"), [], stop)[:-2])
    return {"command": "python " + shown.replace(f"trainer.max_epochs={LAST}", "trainer.max_epochs=N"),
            "examples": stop or 3250, "repeats": repeats, "last_epochs": LAST,
            "cpu": cpu_model(), "load_1min": load, "target": TARGET,
            "black_box": {"runs_s": {str(n): times[n] for n in EPOCHS}, **black_box(times)},
            "in_run": {v: in_run(c) for v, c in clocks.items()}}
