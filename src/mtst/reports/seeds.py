"""`mtst report FOLDER --mean-over seed`: one row per configuration, each figure the mean ± the
standard deviation over the jobs that differ only in the averaged keys (the seeds).

One seed is an anecdote: two seeds of one run can differ by more than two weighting methods do.
Jobs are grouped by their overrides outside the averaged keys (glob patterns, `seed` or
`tasks.*.weight`) and by which averaged keys they set, so `fixed` jobs and `fixed` jobs with
per-seed task weights stay two rows. A multi-task job's Δm% is taken against the single-task
jobs that share its values of the averaged keys they set (its own seed's baselines), then
averaged like any other figure: pairing by seed removes the seed-to-seed drift both sides share.
The standard deviation is the sample one (n - 1); a group of one job shows its value alone.

Example:
    mtst report logs/weighting_study/wnut_agnews_50 --mean-over seed,tasks.*.weight
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev

from mtst.reports.delta_m import DELTA_M, HEADER, delta_m
from mtst.reports.sweep import HEADERS, Job, Sweep


@dataclass
class Group:
    """The jobs of one configuration: what names it, and the values it was averaged over."""

    label: dict[str, str]  # the varying overrides outside the averaged keys
    jobs: list[Job]
    averaged: dict[str, list[str]] = field(default_factory=dict)  # key -> each job's value
    values: dict[str, list[float]] = field(default_factory=dict)  # column -> each job's figure

    @property
    def single_task(self) -> bool:
        return all(len(job.tasks) == 1 for job in self.jobs)


def _averaged(key: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)


def group_jobs(sweep: Sweep, patterns: list[str]) -> list[Group]:
    """The finished jobs of `sweep` in groups, in the order their first job appears."""
    groups: dict[tuple, Group] = {}
    for job in (j for j in sweep.jobs if not j.error):
        kept = {k: v for k, v in job.overrides.items() if not _averaged(k, patterns)}
        averaged = sorted(k for k in job.overrides if _averaged(k, patterns))
        key = (tuple(sorted(kept.items())), tuple(averaged))
        group = groups.setdefault(key, Group({k: kept.get(k, "(default)") for k in sweep.varying
                                              if not _averaged(k, patterns)}, []))
        group.jobs.append(job)
        for name in averaged:
            group.averaged.setdefault(name, []).append(job.overrides[name])
    return list(groups.values())


def paired_delta_m(jobs: list[Job], patterns: list[str], split: str) -> dict[str, float]:
    """Job name -> Δm% of each multi-task job against the single-task jobs of each of its tasks
    that carry the same values of the averaged keys they set (mean over those that match)."""
    single = [j for j in jobs if len(j.tasks) == 1 and not j.error]
    out = {}
    for job in (j for j in jobs if len(j.tasks) > 1 and not j.error):
        baselines = {}
        for task, metric in job.tasks.items():
            name = f"{split}/{task}/{metric}"
            found = [float(b.values[name]) for b in single if task in b.tasks
                     and b.values.get(name) is not None
                     and all(job.overrides.get(k) == v for k, v in b.overrides.items()
                             if _averaged(k, patterns))]
            if found and job.values.get(name) is not None and mean(found):
                baselines[task] = mean(found)
        if baselines:
            multi = {t: float(job.values[f"{split}/{t}/{job.tasks[t]}"]) for t in baselines}
            out[job.name] = delta_m(multi, baselines, job.tasks)
    return out


def seed_columns(sweep: Sweep, split: str) -> list[str]:
    """Each task's main metric on `split`, then Δm% and the train time."""
    tasks = sorted({(t, m) for job in sweep.jobs for t, m in job.tasks.items()})
    return ([f"{split}/{t}/{m}" for t, m in tasks] + [DELTA_M]
            + (["train_seconds"] if "train_seconds" in sweep.extras else []))


def grouped(sweep: Sweep, patterns: list[str], split: str) -> tuple[list[Group], list[str]]:
    """The groups with their figures, the Δm% groups best first (baselines on top)."""
    deltas = paired_delta_m(sweep.jobs, patterns, split)
    columns = seed_columns(sweep, split)
    groups = group_jobs(sweep, patterns)
    for group in groups:
        for column in columns:
            figures = [deltas.get(j.name) if column == DELTA_M else j.values.get(column)
                       for j in group.jobs]
            if all(f is not None for f in figures):
                group.values[column] = [float(f) for f in figures]
    groups.sort(key=lambda g: (not g.single_task, -mean(g.values.get(DELTA_M, [0.0]))))
    return groups, columns


def mean_std(figures: list[float], digits: int) -> str:
    if len(figures) == 1:
        return f"{figures[0]:.{digits}f}"
    return f"{mean(figures):.{digits}f} ± {stdev(figures):.{digits}f}"


def _seed_like(values: list[str]) -> bool:
    """Distinct whole numbers (seeds 1,2,3), or not numbers at all: listed, not averaged."""
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return True
    return len(set(values)) == len(values) and all(n.is_integer() for n in numbers)


def _averaged_cell(values: list[str]) -> str:
    """Seeds listed; numbers that differ per job (task weights) as their mean ± std."""
    return ",".join(values) if _seed_like(values) else mean_std([float(v) for v in values], 3)


def seeds_text(sweep: Sweep, patterns: list[str], split: str) -> str:
    """The heading, what was averaged, and the table of means ± standard deviations."""
    groups, columns = grouped(sweep, patterns, split)
    keys = list(dict.fromkeys(k for g in groups for k in g.label))
    averaged = list(dict.fromkeys(k for g in groups for k in g.averaged))
    header = ["jobs", *keys, *averaged, *(HEADERS.get(c, c) for c in columns)]
    lines = [f"## Mean ± standard deviation over {', '.join(patterns)}",
             f"{len(groups)} configurations. {HEADER} is each job's against the single-task jobs "
             f"of its own {', '.join(patterns)} ({split}), then averaged; ± is the sample "
             "standard deviation over the jobs of the row.", "",
             "| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < 1 + len(keys) + len(averaged) else "---:"
                            for i in range(len(header))) + "|"]
    for group in groups:
        cells = [str(len(group.jobs)), *(group.label.get(k, "") for k in keys),
                 *(_averaged_cell(group.averaged[k]) if k in group.averaged else "" for k in averaged)]
        for column in columns:
            figures = group.values.get(column)
            digits = 2 if column == DELTA_M else 1 if column == "train_seconds" else 4
            cells.append(mean_std(figures, digits) if figures else
                         ("(single-task)" if column == DELTA_M and group.single_task else "n/a"))
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def seeds_figure(sweep: Sweep, patterns: list[str], split: str, path: Path) -> None:
    """One panel per task's main metric and one for Δm%: a bar per configuration with its
    standard deviation as the error bar, the task's single-task mean as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups, columns = grouped(sweep, patterns, split)
    panels = [c for c in columns if c != "train_seconds"]
    labels = [" ".join([f"{k.rsplit('.', 1)[-1]}={v}" for k, v in g.label.items()]
                       + [f"{'.'.join(k.split('.')[-2:])}={_averaged_cell(v)}"
                          for k, v in g.averaged.items() if not _seed_like(v)]) or "(all)"
              for g in groups]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 0.45 * len(groups) + 1.4),
                             sharey=True, squeeze=False)
    for ax, column in zip(axes[0], panels, strict=True):
        shown = [(i, g) for i, g in enumerate(groups) if column in g.values]
        ax.barh([i for i, _ in shown], [mean(g.values[column]) for _, g in shown],
                xerr=[stdev(g.values[column]) if len(g.values[column]) > 1 else 0.0
                      for _, g in shown], color="#4c72b0", capsize=3)
        for _, g in shown:
            if g.single_task and column != DELTA_M:
                ax.axvline(mean(g.values[column]), color="#c44e52", linestyle="--", linewidth=1)
        ax.set_title(HEADER if column == DELTA_M else column, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        values = [v for _, g in shown for v in g.values[column]]
        if values and column != DELTA_M:
            low, high = min(values), max(values)
            ax.set_xlim(max(0.0, low - (high - low) * 0.6 - 0.01), high + (high - low) * 0.3 + 0.01)
    axes[0][0].set_yticks(range(len(groups)), labels, fontsize=8)
    axes[0][0].invert_yaxis()
    fig.suptitle(f"{Path(sweep.folder).name}: mean ± std over {', '.join(patterns)}", fontsize=10)
    fig.savefig(path, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
