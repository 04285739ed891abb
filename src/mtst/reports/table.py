"""The text of a sweep report: its table cells, the lines above the table, the notes below it,
and the CSV. Markdown cells are rounded for reading; CSV cells keep every digit, for analysis."""

from __future__ import annotations

import csv
import io

from mtst.reports.delta_m import DELTA_M, HEADER
from mtst.reports.sweep import HEADERS, Job, Sweep


def cell(sweep: Sweep, job: Job, column: str, markdown: bool = True) -> str:
    """One table cell; Markdown cells are rounded and escaped, CSV cells stay exact."""
    if column == "job":
        return f"{job.name} (best)" if markdown and job is sweep.best else job.name
    if column == "error":
        text = job.error or ""
        if markdown and len(text) > 120:
            text = text[:117] + "..."
        return text.replace("|", "\\|") if markdown else text
    if column in sweep.varying:
        value = job.overrides.get(column, "(default)")
        return _short_number(value).replace("|", "\\|") if markdown else value
    value = job.values.get(column)
    if value is None and column == DELTA_M and sweep.delta and job.name in sweep.delta.single:
        return "(single-task)" if markdown else ""
    if value is None:
        return ("n/a" if not job.error else "") if markdown else ""
    if not markdown:
        return str(value)
    if column == DELTA_M:
        return f"{float(value):+.2f}"
    if column == "trainable_params":
        return f"{int(value):,}"
    if column == "train_seconds":
        return f"{float(value):.1f}"
    return f"{float(value):.4f}"


def _short_number(value: str) -> str:
    """Optuna's floats (0.0012345678901) as 0.001235; anything else unchanged."""
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if len(value) > 8 and any(c in value for c in ".eE") else value


def markdown_table(sweep: Sweep) -> str:
    columns = sweep.columns()
    left = {"job", "error", *sweep.varying}
    lines = ["| " + " | ".join(HEADERS.get(c, c) for c in columns) + " |",
             "|" + "|".join("---" if c in left else "---:" for c in columns) + "|"]
    for job in sweep.jobs:
        lines.append("| " + " | ".join(cell(sweep, job, c) for c in columns) + " |")
    return "\n".join(lines)


def summary(sweep: Sweep) -> str:
    """The lines above the table: what every job shares, what the rows are sorted by."""
    lines = [f"{len(sweep.jobs)} job{'s' if len(sweep.jobs) != 1 else ''}."]
    if sweep.constant:
        lines[0] += " Same in every job: " + " ".join(f"`{t}`" for t in sweep.constant) + "."
    if sweep.sort_metric:
        order = "higher" if sweep.maximize else "lower"
        name = HEADER if sweep.sort_metric == DELTA_M else sweep.sort_metric
        lines.append(f"Sorted by {name} ({order} is better)"
                     + (f"; best: job {sweep.best.name}." if sweep.best else "."))
    else:
        lines.append("No job logged the sweep's optimized metric: rows in job order.")
    if sweep.delta:
        lines.append(sweep.delta.summary())
    return "\n".join(lines)


def notes(sweep: Sweep) -> str:
    out = []
    if any(job.probe for job in sweep.jobs):
        probes = ", ".join(job.name for job in sweep.jobs if job.probe)
        out.append(f"Job {probes}: `freeze=all` trains nothing in the network; its figures are "
                   "logistic-regression probes on the frozen encoder's features.")
    out += sweep.delta.notes() if sweep.delta else []
    return "\n\n".join(out)


def report_text(sweep: Sweep) -> str:
    """summary, table and notes: what `mtst report` prints and report.md holds."""
    return "\n\n".join(part for part in (summary(sweep), markdown_table(sweep), notes(sweep)) if part)


def csv_text(sweep: Sweep) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = sweep.columns()
    writer.writerow(columns + ["best", "run_dir"])
    for job in sweep.jobs:
        writer.writerow([cell(sweep, job, c, markdown=False) for c in columns]
                        + [int(job is sweep.best), str(job.folder)])
    return out.getvalue()
