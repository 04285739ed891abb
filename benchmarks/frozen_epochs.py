"""Row 16: what a later `freeze=backbone` epoch costs next to the first, in whole `train.py` runs.

Black-box: each figure is the wall time of `python train.py experiment=minilm freeze=backbone`
(the command a user types; the feature cache is on in `freeze=backbone`), training NER alone on
CoNLL-2003 valid (3,250 sentences, batch 16: 204 steps an epoch), validation and test limited to
2 batches, with `trainer.max_epochs` = 0, 1 and 7. The 0-epoch run does everything but train
(start-up, data, model, the test pass), so

    first epoch = t1 - t0,    later epoch = (t7 - t1) / 6.

Six later epochs, not three: a whole run varies by a few seconds (start-up, fsync), which the
difference of two runs carries into the later-epoch figure divided by the epochs between them.
The 1- and 7-epoch runs also load `best.ckpt` for the test pass, which the 0-epoch run has not
written: that load counts in the first epoch. Runs take turns within each repeat (interleaved),
and each figure is the median over the repeats. Two variants: the default callbacks (every
epoch writes `best.ckpt` and `last.ckpt`, plus `last.ckpt` every 100 steps), and no checkpoint
written at all, which shows what the checkpoint writes cost a later epoch.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, Budget, scratch_dir

LAST = 7  # epochs of the longest run
EPOCHS = (0, 1, LAST)
TARGET = 25.0
VARIANTS = {
    "default": [],
    "no_checkpoints": ["~callbacks.model_checkpoint", "~callbacks.step_checkpoint",
                       "++trainer.enable_checkpointing=false"],
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


def epoch_costs(times: dict[int, list[float]]) -> dict[str, float]:
    """First and later epoch from the median run time of each epoch count."""
    t = {n: statistics.median(v) for n, v in times.items()}
    first = t[1] - t[0]
    later = (t[LAST] - t[1]) / (LAST - 1)
    return {"t0_s": t[0], "t1_s": t[1], "t_last_s": t[LAST], "last_epochs": LAST, "first_epoch_s": first,
            "later_epoch_s": later, "ratio": first / later if later > 0 else float("inf")}


def run(budget: Budget, data: dict[str, Path], repeats: int = 3) -> dict[str, Any]:
    conll = data.get("conll2003")
    if conll is None:
        return {"skipped": "CoNLL-2003 not found"}
    stop = None
    if budget.name == "quick":
        repeats, stop = 1, 256
    times = {v: {n: [] for n in EPOCHS} for v in VARIANTS}
    load = [os.getloadavg()[0]]
    with scratch_dir("frozen-epochs") as tmp:
        for _ in range(repeats):
            for variant, extra in VARIANTS.items():
                for epochs in EPOCHS:
                    cmd = command(conll, epochs, Path(tmp) / variant, extra, stop)
                    times[variant][epochs].append(timed_run(cmd, conll))
            load.append(os.getloadavg()[0])
    shown = command(Path("$CONLL"), LAST, Path("$LOGS"), [], stop)[:-2]
    return {"command": "python " + " ".join(shown).replace(f"trainer.max_epochs={LAST}", "trainer.max_epochs=N"), "examples": stop or 3250, "repeats": repeats,
            "cpu": cpu_model(), "load_1min": load, "target": TARGET,
            "variants": {v: {"runs_s": {str(n): times[v][n] for n in EPOCHS}, **epoch_costs(times[v])}
                         for v in VARIANTS}}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        pass
    return "unknown"


def summary_rows(section: dict[str, Any]) -> list[list[Any]]:
    d, n = section["variants"]["default"], section["variants"]["no_checkpoints"]
    return [["16", "freeze=backbone, whole train.py runs: first epoch / later epoch",
             f"{d['ratio']:.1f}× ({d['first_epoch_s']:.1f} s / {d['later_epoch_s']:.2f} s); "
             f"no checkpoint writes {n['ratio']:.1f}×", f"≥ {section['target']:g}×",
             "yes" if d["ratio"] >= section["target"] else "**no**"]]


NAMES = {"default": "default callbacks", "no_checkpoints": "no checkpoint written"}


def render(section: dict[str, Any], table: Any = None) -> str:
    last = next(iter(section["variants"].values()))["last_epochs"]
    lines = [f"`{section['command']}` with `trainer.max_epochs` = 0, 1, {last} (`$CONLL` = the CoNLL-2003 "
             f"folder; {section['examples']:,} training sentences), {section['repeats']} repeats, "
             f"interleaved; medians. CPU: {section['cpu']}; 1-minute load average "
             + ", ".join(f"{x:.2f}" for x in section["load_1min"]) + " (start, after each repeat).",
             f"First epoch = t1 − t0, later epoch = (t{last} − t1) / {last - 1}; t0 is the 0-epoch run "
             "(start-up, data, model, test pass; no checkpoint to load for the test).", "",
             f"| callbacks | t0 (s) | t1 (s) | t{last} (s) | first epoch (s) | later epoch (s) | first / later |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, v in section["variants"].items():
        lines.append(f"| {NAMES.get(name, name)} | {v['t0_s']:.2f} | {v['t1_s']:.2f} | {v['t_last_s']:.2f} | "
                     f"{v['first_epoch_s']:.2f} | {v['later_epoch_s']:.3f} | {v['ratio']:.1f}× |")
    lines += ["", "Every run (s): " + "; ".join(
        f"{NAMES.get(name, name)}: " + ", ".join(f"{n} epochs {' / '.join(f'{x:.2f}' for x in xs)}"
                                                 for n, xs in v["runs_s"].items())
        for name, v in section["variants"].items()) + "."]
    return "\n".join(lines)
