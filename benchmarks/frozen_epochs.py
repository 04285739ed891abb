"""Row 16: what a later `freeze=backbone` epoch costs next to the first, in whole `train.py` runs.

Black-box: each figure is the wall time of `python train.py experiment=minilm freeze=backbone`
(the command a user types; the feature cache is on in `freeze=backbone`), training NER alone on
CoNLL-2003 valid (3,250 sentences, batch 16: 204 steps an epoch), validation and test limited to
2 batches, with `trainer.max_epochs` = 0, 1 and 13. The 0-epoch run does everything but train
(start-up, data, model, the test pass), so within each repeat

    first epoch = t1 - t0,    later epoch = (t13 - t1) / 12,

and each figure is the median over the repeats of these paired differences (runs take turns
within a repeat). A whole run varies by seconds (start-up, the cache fill, fsync), which any
difference of two runs carries into the later-epoch figure. Twelve later epochs (rather than the
three of a 4-epoch run) divide that noise by 12, five repeats give a median that one slow run
does not move, and the ratio of each repeat is shown beside it. The longest runs also time every
epoch inside the run (`benchmarks/epoch_clock.py`, one epoch start to the next, validation and
checkpoint writes included): first = epoch 1, later = the median of epochs 2-13. The 1- and
13-epoch runs load `best.ckpt` for the test pass, which the 0-epoch run has not written: that load
counts in the black-box first epoch, not in the in-run one.

Three set-ups of the 13-epoch run: the default callbacks (every epoch writes `best.ckpt` when it
improves and `last.ckpt`, plus `last.ckpt` every 100 steps); no checkpoint written; and bare (no
checkpoint, progress bar, learning-rate monitor or step logging), which is what Lightning's loop
and the training step alone cost.
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

from benchmarks.common import ROOT, Budget, scratch_dir

LAST = 13  # epochs of the longest run
EPOCHS = (0, 1, LAST)  # black-box run lengths, default callbacks
TARGET = 25.0
NO_CHECKPOINTS = ["~callbacks.model_checkpoint", "~callbacks.step_checkpoint",
                  "++trainer.enable_checkpointing=false"]
VARIANTS = {
    "default": [],
    "no_checkpoints": NO_CHECKPOINTS,
    "bare": [*NO_CHECKPOINTS, "~callbacks.lr_monitor", "~callbacks.rich_progress_bar",
             "~callbacks.model_summary", "trainer.enable_progress_bar=false",
             "trainer.log_every_n_steps=100000"],
}


def command(conll: Path, epochs: int, log_dir: Path, extra: list[str], stop: int | None = None
            ) -> list[str]:
    """The `train.py` command line (without the interpreter) of one run."""
    train = f"{conll / 'valid.txt'}" if stop is None else f"{{path:'{conll / 'valid.txt'}',stop:{stop}}}"
    # min_epochs (default 1) would otherwise make the 0-epoch run train one
    zero = ["trainer.min_epochs=0"] if epochs == 0 else []
    return ["train.py", "experiment=minilm", "freeze=backbone", "data=conll_agnews",
            "~tasks.topic", f"tasks.ner.train_files=[{train}]",
            "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
            f"trainer.max_epochs={epochs}", *zero, f"paths.log_dir={log_dir}", *extra]


def clocked(cmd: list[str], clock: Path) -> list[str]:
    """`cmd` with the epoch clock added as one more callback."""
    return [*cmd, "+callbacks.epoch_clock._target_=benchmarks.epoch_clock.EpochClock",
            f"+callbacks.epoch_clock.path={clock}"]


def timed_run(cmd: list[str], conll: Path, timeout: float = 900) -> float:
    env = {**os.environ, "MTST_CONLL_DIR": str(conll), "HF_HUB_OFFLINE": "1",
           "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-2:]
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}): "
                           f"{' | '.join(tail)}")
    return seconds


def black_box(times: dict[int, list[float]]) -> dict[str, float]:
    """First and later epoch: medians over the repeats of each repeat's paired differences."""
    first = statistics.median(t1 - t0 for t0, t1 in zip(times[0], times[1], strict=True))
    later = statistics.median((tl - t1) / (LAST - 1) for t1, tl in zip(times[1], times[LAST], strict=True))
    each = [(t1 - t0) / ((tl - t1) / (LAST - 1)) if tl > t1 else float("inf")
            for t0, t1, tl in zip(times[0], times[1], times[LAST], strict=True)]
    return {"first_epoch_s": first, "later_epoch_s": later,
            "ratio": first / later if later > 0 else float("inf"), "repeat_ratios": each}


def in_run(clocks: list[list[float]]) -> dict[str, float]:
    """First epoch and the median later epoch inside each run, medians over the runs."""
    first = statistics.median(c[0] for c in clocks)
    later = statistics.median(statistics.median(c[1:]) for c in clocks)
    return {"first_epoch_s": first, "later_epoch_s": later, "ratio": first / later,
            "epochs_s": clocks}


def run(budget: Budget, data: dict[str, Path], repeats: int = 5) -> dict[str, Any]:
    conll = data.get("conll2003")
    if conll is None:
        return {"skipped": "CoNLL-2003 not found"}
    stop = None
    if budget.name == "quick":
        repeats, stop = 1, 256
    times: dict[int, list[float]] = {n: [] for n in EPOCHS}
    clocks: dict[str, list[list[float]]] = {v: [] for v in VARIANTS}
    load = [os.getloadavg()[0]]
    with scratch_dir("frozen-epochs") as tmp:
        for _ in range(repeats):
            for variant, extra in VARIANTS.items():
                for epochs in EPOCHS if variant == "default" else (LAST,):
                    cmd = command(conll, epochs, Path(tmp) / variant, extra, stop)
                    clock = Path(tmp) / f"{variant}-{epochs}.json"
                    seconds = timed_run(clocked(cmd, clock) if epochs == LAST else cmd, conll)
                    if variant == "default":
                        times[epochs].append(seconds)
                    if epochs == LAST:
                        clocks[variant].append(json.loads(clock.read_text())["epochs_s"])
            load.append(os.getloadavg()[0])
    shown = command(Path("$CONLL"), LAST, Path("$LOGS"), [], stop)[:-2]
    return {"command": "python " + " ".join(shown).replace(f"trainer.max_epochs={LAST}", "trainer.max_epochs=N"),
            "examples": stop or 3250, "repeats": repeats, "last_epochs": LAST,
            "cpu": cpu_model(), "load_1min": load, "target": TARGET,
            "black_box": {"runs_s": {str(n): times[n] for n in EPOCHS}, **black_box(times)},
            "in_run": {v: in_run(c) for v, c in clocks.items()}}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return "unknown"


def summary_rows(section: dict[str, Any]) -> list[list[Any]]:
    box, clock = section["black_box"], section["in_run"]["default"]
    worst = min(box["ratio"], clock["ratio"])
    return [["16", "freeze=backbone, whole train.py runs: first epoch / later epoch",
             f"black-box {box['ratio']:.1f}× ({box['first_epoch_s']:.1f} s / {box['later_epoch_s']:.2f} s); "
             f"in-run {clock['ratio']:.1f}× ({clock['first_epoch_s']:.1f} s / {clock['later_epoch_s']:.2f} s); "
             f"bare loop {section['in_run']['bare']['ratio']:.1f}×", f"≥ {section['target']:g}×",
             "yes" if worst >= section["target"] else "**no**"]]


NAMES = {"default": "default callbacks", "no_checkpoints": "no checkpoint written",
         "bare": "bare: no checkpoint, progress bar, lr monitor or step logs"}


def render(section: dict[str, Any], table: Any = None) -> str:
    last, box = section["last_epochs"], section["black_box"]
    lines = [f"`{section['command']}` with `trainer.max_epochs` = 0, 1, {last} (`$CONLL` = the CoNLL-2003 "
             f"folder; {section['examples']:,} training sentences, {-(-section['examples'] // 16)} steps an epoch), "
             f"{section['repeats']} "
             f"repeats, interleaved; medians. CPU: {section['cpu']}; 1-minute load average "
             + ", ".join(f"{x:.2f}" for x in section["load_1min"]) + " (start, after each repeat).", "",
             f"Black-box, default callbacks: first epoch = t1 − t0, later epoch = (t{last} − t1) / {last - 1}, "
             f"paired within each repeat: **{box['first_epoch_s']:.2f} s / {box['later_epoch_s']:.3f} s = "
             f"{box['ratio']:.1f}×**. Every run (s): " + "; ".join(
                 f"{n} epochs {' / '.join(f'{x:.2f}' for x in xs)}" for n, xs in box["runs_s"].items()) + "."
             + ("" if "repeat_ratios" not in box else " First / later of each repeat: "
                + ", ".join(f"{r:.1f}×" for r in box["repeat_ratios"]) + "."),
             "", f"In-run (epoch clock in the {last}-epoch runs; an epoch includes its validation and "
             "checkpoint writes):", "",
             "| set-up | first epoch (s) | later epoch, median (s) | first / later | later epochs of each run (s) |",
             "|---|---:|---:|---:|---|"]
    for name, v in section["in_run"].items():
        each = "; ".join(" ".join(f"{x:.2f}" for x in c[1:]) for c in v["epochs_s"])
        lines.append(f"| {NAMES.get(name, name)} | {v['first_epoch_s']:.2f} | {v['later_epoch_s']:.3f} | "
                     f"{v['ratio']:.1f}× | {each} |")
    return "\n".join(lines)
