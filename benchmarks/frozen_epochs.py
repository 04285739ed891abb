"""Row 16: what a later `freeze=backbone` epoch costs next to the first, in whole `train.py` runs.

Black-box: the wall time of `python train.py experiment=minilm freeze=backbone` (NER alone on
CoNLL-2003 valid, validation and test limited to 2 batches) with `trainer.max_epochs` = 0, 1 and
13; within each repeat first epoch = t1 - t0 and later epoch = (t13 - t1) / 12, and each figure
is the median over the repeats (runs take turns within a repeat). Twelve later epochs divide a
whole run's start-up noise by 12. The 13-epoch runs also time every epoch inside the run
(`training.EpochClock`), under three set-ups: the default callbacks, no checkpoint written, and
bare (no checkpoint, progress bar, learning-rate monitor or step logging).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Budget, cpu_model, scratch_dir

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
    train = f"{conll / 'valid.txt'}" if stop is None else f"{{path:'{conll / 'valid.txt'}',stop:{stop}}}"
    zero = ["trainer.min_epochs=0"] if epochs == 0 else []  # else min_epochs=1 trains one
    return ["train.py", "experiment=minilm", "freeze=backbone", "data=conll_agnews",
            "~tasks.topic", f"tasks.ner.train_files=[{train}]",
            "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
            f"trainer.max_epochs={epochs}", *zero, f"paths.log_dir={log_dir}", *extra]


def timed_run(cmd: list[str], conll: Path, timeout: float = 900) -> float:
    env = {**os.environ, "MTST_CONLL_DIR": str(conll), "HF_HUB_OFFLINE": "1",
           "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return time.perf_counter() - start


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
                    seconds = timed_run(cmd, conll)
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
