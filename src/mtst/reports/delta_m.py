"""Δm% of `mtst report`: how much better (or worse) each multi-task job does than single-task
training of its tasks, in one number (Maninis et al. 2019, "Attentive single-tasking of multiple
tasks"):

    Δm = 1/T Σ_t (-1)^l_t (M_mt,t - M_st,t) / M_st,t × 100,  l_t = 1 when lower is better,

M being task t's main metric (its `main_metric` setting, else its type's first metric: f1 for
classification, spearman for similarity) in one split. A job's tasks come from its composed
config (`.hydra/config.yaml`: `tasks`, narrowed by `tasks_only`): a job with one task is that
task's baseline, matched by task name; several (seeds) are averaged. A task without a baseline
is left out of its job's mean (and said so); a sweep without any baseline has no Δm% column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from mtst.errors import MtstError, first_line

if TYPE_CHECKING:
    from mtst.reports.sweep import Job

DELTA_M = "delta_m"
HEADER = "Δm%"
# main metrics where lower is better: their relative change counts with the opposite sign
LOWER_IS_BETTER = frozenset({"loss"})


def job_tasks(folder: Path) -> dict[str, str]:
    """Task name -> main metric of the job in `folder`, from its composed config ({} without
    one, or for entries that name no known task type)."""
    from mtst.tasks import TASK_TYPES

    path = folder / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    try:
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as err:  # YAML or OmegaConf syntax: its first line says where
        raise MtstError(f"{path}: cannot read the job's config ({first_line(err)})") from None
    tasks = config.get("tasks") if isinstance(config, dict) else None
    only = config.get("tasks_only") if isinstance(config, dict) else None
    if only is not None:
        only = [only] if isinstance(only, str) else [str(name) for name in only]
    out = {}
    for name, settings in (tasks if isinstance(tasks, dict) else {}).items():
        if not isinstance(settings, dict) or (only is not None and name not in only):
            continue
        kind = TASK_TYPES.get(str(settings.get("type")))
        if kind is not None:
            out[str(name)] = str(settings.get("main_metric") or kind.metric_names[0])
    return out


def delta_m(multi: Mapping[str, float], single: Mapping[str, float],
            metrics: Mapping[str, str], lower_is_better: frozenset[str] = LOWER_IS_BETTER) -> float:
    """The formula over the tasks of `multi` (task -> M_mt) that `single` (task -> M_st) has;
    `metrics` names each task's metric, for its sign."""
    terms = [(-1 if metrics[t] in lower_is_better else 1) * (multi[t] - single[t]) / single[t]
             for t in multi if t in single]
    if not terms:
        raise ValueError("delta_m: no task has a baseline")
    return 100.0 * sum(terms) / len(terms)


@dataclass
class DeltaM:
    """What the Δm% column was computed from: said above the table and in the notes."""

    split: str
    baselines: dict[str, list[str]]  # "task metric" -> the baseline jobs averaged
    single: set[str]  # names of the single-task jobs (their Δm% cell says so)
    left_out: dict[str, list[str]] = field(default_factory=dict)  # job -> tasks not compared

    def summary(self) -> str:
        used = "; ".join(f"{what} vs job{'s' if len(jobs) > 1 else ''} {', '.join(jobs)}"
                         + (f" (mean of {len(jobs)})" if len(jobs) > 1 else "")
                         for what, jobs in self.baselines.items())
        return (f"{HEADER}: mean relative change of each task's main metric ({self.split}) "
                f"against its single-task jobs (Maninis et al. 2019): {used}.")

    def notes(self) -> list[str]:
        return [f"Job {job}: no single-task {self.split} figure of {', '.join(tasks)} to compare "
                f"with; its {HEADER} is over its other tasks." for job, tasks in self.left_out.items()]


def add_delta_m(jobs: list[Job], split: str) -> DeltaM | None:
    """Set `values["delta_m"]` of every multi-task job that shares a task with a single-task
    job; None when no such pair exists (no column then). The split falls back to val when no
    single-task job logged `split`."""
    single = [j for j in jobs if len(j.tasks) == 1 and not j.error]
    multi = [j for j in jobs if len(j.tasks) > 1 and not j.error]
    if not any(f"{split}/{t}/{m}" in j.values for j in single for t, m in j.tasks.items()):
        split = "val"
    means: dict[tuple[str, str], float] = {}
    used: dict[str, list[str]] = {}
    for task, metric in sorted({(t, m) for j in multi for t, m in j.tasks.items()}):
        key = f"{split}/{task}/{metric}"
        found = [j for j in single if task in j.tasks and j.values.get(key) is not None]
        mean = sum(float(j.values[key]) for j in found) / len(found) if found else 0.0
        if mean:  # a zero baseline has no relative change
            means[task, metric], used[f"{task} {metric}"] = mean, [j.name for j in found]
    if not means:
        return None
    info = DeltaM(split, used, {j.name for j in single})
    for job in multi:
        compared = {t: float(job.values[f"{split}/{t}/{m}"]) for t, m in job.tasks.items()
                    if (t, m) in means and job.values.get(f"{split}/{t}/{m}") is not None}
        if compared:
            job.values[DELTA_M] = delta_m(
                compared, {t: means[t, job.tasks[t]] for t in compared}, job.tasks)
        if len(compared) < len(job.tasks):
            info.left_out[job.name] = [t for t in job.tasks if t not in compared]
    return info
