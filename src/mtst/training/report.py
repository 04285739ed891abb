"""Compare the runs of a multirun (e.g. a sweep over `freeze=...`): Markdown, CSV, bar chart.

Each job folder holds `.hydra/config.yaml` (its strategy), `.hydra/overrides.yaml` and, once
finished, `metrics.json` (metrics plus `trainable_params` and `train_seconds`). A `freeze=all`
run reports its linear probes (`probe/...`): the untrained heads' figures are meaningless.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mtst.errors import MtstError

log = logging.getLogger("mtst")

METRICS = ("cls_f1", "ner_f1", "score")
SPLITS = ("val", "test")
COLUMNS = ("strategy", "trainable_params", "train_seconds") + tuple(
    f"{s}_{m}" for s in SPLITS for m in METRICS)


@dataclass
class Run:
    folder: Path
    strategy: str
    values: dict[str, Any]


def _job_number(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (10**9, path.name)


def _strategy(job: Path, payload: dict[str, Any]) -> tuple[str, str]:
    """(freeze name, the job's other overrides) from metrics.json and .hydra."""
    name = payload.get("freeze")
    config, overrides = job / ".hydra" / "config.yaml", job / ".hydra" / "overrides.yaml"
    if name is None and config.is_file():
        name = OmegaConf.select(OmegaConf.load(config), "freeze.name")
    others = []
    if overrides.is_file():
        others = [str(o) for o in OmegaConf.to_container(OmegaConf.load(overrides))
                  if not str(o).startswith(("freeze=", "+freeze=", "freeze.name="))]
    return str(name or "?"), " ".join(others)


def _load(job: Path) -> Run:
    path = job / "metrics.json"
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise MtstError(f"{path}: cannot read run metrics ({err})") from None
    metrics = payload.get("metrics")
    if not isinstance(metrics, dict):
        raise MtstError(f"{path}: field 'metrics' missing or not an object")
    strategy, others = _strategy(job, payload)
    probe = any(k.startswith("probe/") for k in metrics)
    prefix = "probe/" if probe else ""
    values: dict[str, Any] = {
        "trainable_params": payload.get("trainable_params"),
        "train_seconds": payload.get("train_seconds"),
    }
    for split in SPLITS:
        for metric in METRICS:
            values[f"{split}_{metric}"] = metrics.get(f"{prefix}{split}/{metric}")
    label = strategy + (" (probe)" if probe else "")
    return Run(job, label, values | {"_others": others})


def collect_runs(folder: str | Path) -> tuple[list[Run], list[Path]]:
    """Finished runs (sorted by job number) and job folders without metrics.json."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MtstError(f"{folder}: no such multirun folder")
    if (folder / "metrics.json").is_file():
        return [_load(folder)], []
    jobs = sorted((p for p in folder.iterdir()
                   if p.is_dir() and ((p / ".hydra").is_dir() or (p / "metrics.json").is_file())),
                  key=_job_number)
    runs = [_load(j) for j in jobs if (j / "metrics.json").is_file()]
    unfinished = [j for j in jobs if not (j / "metrics.json").is_file()]
    if not runs:
        raise MtstError(f"{folder}: no finished run (no <job>/metrics.json) in this folder")
    labels = [r.strategy for r in runs]
    for run in runs:  # same strategy twice: tell the rows apart by their other overrides
        if labels.count(run.strategy) > 1 and run.values["_others"]:
            run.strategy = f"{run.strategy} [{run.values['_others']}]"
    return runs, unfinished


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if key == "trainable_params":
        return f"{int(value):,}"
    if key == "train_seconds":
        return f"{float(value):.1f}"
    return f"{float(value):.4f}"


HEADERS = {"strategy": "strategy", "trainable_params": "trainable params",
           "train_seconds": "train time (s)"} | {
    f"{s}_{m}": f"{s} {m}" for s in SPLITS for m in METRICS}


def markdown_table(runs: list[Run]) -> str:
    lines = ["| " + " | ".join(HEADERS[c] for c in COLUMNS) + " |",
             "|" + "|".join("---" if c == "strategy" else "---:" for c in COLUMNS) + "|"]
    for run in runs:
        cells = [run.strategy] + [_cell(c, run.values[c]) for c in COLUMNS[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def csv_text(runs: list[Run]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS + ("run_dir",))
    for run in runs:
        writer.writerow([run.strategy] + ["" if run.values[c] is None else run.values[c]
                                          for c in COLUMNS[1:]] + [str(run.folder)])
    return out.getvalue()


def bar_chart(runs: list[Run], path: Path, split: str) -> None:
    """Grouped bars of cls_f1 / ner_f1 / score per strategy, and train time beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [r.strategy for r in runs]
    x = np.arange(len(runs))
    fig, (ax, ax_time) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(runs) + 5), 4.5),
                                      gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(METRICS)
    for i, metric in enumerate(METRICS):
        heights = [r.values[f"{split}_{metric}"] or 0.0 for r in runs]
        ax.bar(x + (i - 1) * width, heights, width, label=metric)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"{split} metric")
    ax.set_title(f"{split} metrics per strategy")
    ax.legend(fontsize="small")
    ax_time.bar(x, [r.values["train_seconds"] or 0.0 for r in runs], color="tab:gray")
    ax_time.set_xticks(x, names, rotation=30, ha="right")
    ax_time.set_ylabel("train time (s)")
    ax_time.set_title("train time")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def write_report(folder: str | Path, out_dir: str | Path | None = None,
                 split: str = "test") -> dict[str, Path]:
    """Write report.md, report.csv and report.png; every file appears whole or not at all."""
    if split not in SPLITS:
        raise MtstError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    runs, unfinished = collect_runs(folder)
    out = Path(out_dir or folder)
    out.mkdir(parents=True, exist_ok=True)
    note = ""
    if any(r.strategy.endswith("(probe)") for r in runs):
        note += ("\n\n(probe): `freeze=all` trains nothing in the network; its figures are "
                 "logistic-regression probes on the frozen encoder's features.")
    if unfinished:
        note += "\n\nUnfinished jobs (no metrics.json): " + ", ".join(p.name for p in unfinished)
        log.warning("skipped unfinished jobs: %s", ", ".join(str(p) for p in unfinished))
    texts = {"report.md": f"# Runs in {Path(folder).name}\n\n{markdown_table(runs)}{note}\n",
             "report.csv": csv_text(runs)}
    temps = {name: out / f".{name}.tmp" for name in (*texts, "report.png")}
    try:  # render everything first, then move into place
        for name, text in texts.items():
            temps[name].write_text(text, encoding="utf-8")
        bar_chart(runs, temps["report.png"], split)
        paths = {name: out / name for name in temps}
        for name, tmp in temps.items():
            os.replace(tmp, paths[name])
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    return paths
