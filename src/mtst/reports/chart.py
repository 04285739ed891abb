"""The bar chart of `mtst report`: one row of bars per job, labelled by its varying overrides.

Horizontal bars, because sweep labels are long (`model.optimizer.lr_head=0.003 ...`): they are
wrapped, the figure grows with the number of jobs and label lines, and the canvas is fitted to
its contents when saved (`bbox_inches="tight"`) instead of squeezing the axes with
`tight_layout`, which gives up (with a warning) when labels are longer than the figure.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from mtst.reports.sweep import Job, Sweep, split_task_metric
from mtst.reports.table import cell

LABEL_WIDTH = 36  # characters per label line
# per task, the first of these it logged is its bar (F1 for classification, Spearman for
# similarity); then the run's score
TASK_METRICS = ("f1", "spearman", "acc", "pearson")


def chart_metrics(logged: set[str] | list[str], split: str) -> list[str]:
    """The split's bars: one metric of every task logged (in column order), then `score`."""
    tasks: dict[str, list[str]] = {}
    for name in logged:
        stage, task, metric = split_task_metric(name)
        if stage == split and task:
            tasks.setdefault(task, []).append(metric)
    bars = []
    for task, metrics in sorted(tasks.items()):
        chosen = next((m for m in TASK_METRICS if m in metrics), None)
        if chosen:
            bars.append(f"{split}/{task}/{chosen}")
    return bars + ([f"{split}/score"] if f"{split}/score" in logged else [])


def _middle(text: str, limit: int = 48) -> str:
    """A long value (a list of files) keeps its two ends: they tell such values apart."""
    return text if len(text) <= limit else f"{text[:limit // 2 - 2]}...{text[-(limit // 2 - 1):]}"


def job_label(sweep: Sweep, job: Job) -> str:
    parts = [f"{key}={_middle(cell(sweep, job, key))}" for key in sweep.varying]
    status = " (best)" if job is sweep.best else " (failed)" if job.error else ""
    lines = [f"job {job.name}{status}"]
    for part in parts:  # one override a line, wrapped
        lines += textwrap.wrap(part, LABEL_WIDTH, break_on_hyphens=False)
    return "\n".join(lines)


def bar_chart(sweep: Sweep, path: Path, split: str) -> None:
    """Write the chart as PNG, the canvas fitted to the labels."""
    import matplotlib.pyplot as plt

    fig = chart_figure(sweep, split)
    fig.savefig(path, dpi=120, format="png", bbox_inches="tight")
    plt.close(fig)


def chart_figure(sweep: Sweep, split: str):
    """Grouped bars of the split's per-task metric (`chart_metrics`) and score per job, train
    time beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    logged = set(sweep.metrics)
    metrics = chart_metrics(logged, split)
    if not metrics and sweep.sort_metric in logged:
        metrics = [sweep.sort_metric]
    timed = "train_seconds" in sweep.extras
    labels = [job_label(sweep, job) for job in sweep.jobs]
    lines = [label.count("\n") + 1 for label in labels]
    row = [max(0.22 * max(len(metrics), 1) + 0.25, 0.17 * n + 0.1) for n in lines]
    height = max(2.5, sum(row) + 1.2)
    panels = 1 + int(timed and bool(metrics))
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels + 1, height), sharey=True,
                             squeeze=False, gridspec_kw={"width_ratios": [3, 2][:panels]})
    centres = np.cumsum(row) - np.asarray(row) / 2  # rows as tall as their labels need
    ax = axes[0][0]
    if metrics:
        width = 0.8 * min(row) / len(metrics)
        top = 1.0
        for i, metric in enumerate(metrics):
            values = [job.values.get(metric) for job in sweep.jobs]
            heights = [0.0 if v is None else float(v) for v in values]
            top = max(top, *heights)
            offset = (i - (len(metrics) - 1) / 2) * width
            ax.barh(centres + offset, heights, width, label=metric)
        ax.set_xlim(0, top * 1.05)
        ax.set_xlabel(f"{split} metrics")
        ax.legend(fontsize="small", loc="lower left", bbox_to_anchor=(0, 1.01),
                  ncol=len(metrics), frameon=False)
    if timed:
        ax_time = axes[0][-1]
        seconds = [float(job.values.get("train_seconds") or 0.0) for job in sweep.jobs]
        ax_time.barh(centres, seconds, 0.6 * min(row), color="tab:gray")
        ax_time.set_xlabel("train time (s)")
    ax.set_yticks(centres, labels, fontsize=8)
    ax.set_ylim(sum(row), 0)  # the best job on top
    return fig
