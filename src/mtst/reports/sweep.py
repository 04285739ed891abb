"""Compare the jobs of a multirun or Optuna sweep: Markdown, CSV and a bar chart.

Each job folder holds `.hydra/overrides.yaml` (what the job changed) and, once it has ended,
`metrics.json`: the metrics plus `trainable_params` and `train_seconds`, or `"error"` for a
failed job. A sweep changes a few keys and repeats the rest, so a row is labelled by the
overrides that vary across the jobs only (one column each); the constant ones are said once
above the table. Rows are sorted by the sweep's `optimized_metric` (Optuna's direction when the
sweep has one), best first. A `freeze=all` job reports its linear probes (`probe/...`): the
untrained heads' figures are meaningless.

Metrics are named `<split>/<task>/<metric>` (`val/topic/f1`, `test/sts/spearman`) plus the run's
own `<split>/score` and `<split>/loss`; every task a job logged gets its columns, whatever its
name, so a sweep over different task sets shows each job's tasks. Single-task jobs beside
multi-task ones (`hparams_search=weighting`) add a Δm% column (`mtst.reports.delta_m`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from mtst.errors import MtstError
from mtst.reports.delta_m import DELTA_M, HEADER, DeltaM, add_delta_m, job_tasks

SPLITS = ("val", "test")
# within a task (and then the run's own figures): the order columns appear in
METRIC_ORDER = ("acc", "precision", "recall", "f1", "spearman", "pearson", "score", "loss")
EXTRAS = ("train_seconds", "trainable_params")  # run facts beside the metrics
HEADERS = {"job": "job", "train_seconds": "train time (s)", "trainable_params": "trainable params",
           "error": "error", DELTA_M: HEADER}
DEFAULT_METRIC = "val/score"
UNFINISHED = "unfinished: no metrics.json (still running, or killed)"


@dataclass
class Job:
    """One job folder: its overrides, its figures, or why it has none."""

    folder: Path
    name: str
    overrides: dict[str, str]  # key -> value as Hydra wrote it (`+key=v` and `key=v` alike)
    texts: dict[str, str]  # key -> the override as typed, for the "same in every job" line
    values: dict[str, float | None] = field(default_factory=dict)  # metrics and EXTRAS
    error: str | None = None
    probe: bool = False
    tasks: dict[str, str] = field(default_factory=dict)  # task -> main metric, from its config


@dataclass
class Sweep:
    """The jobs of one folder, sorted best first, and what tells them apart."""

    folder: Path
    jobs: list[Job]
    varying: list[str]  # override keys whose value differs between jobs
    constant: list[str]  # overrides shared by every job, as typed
    metrics: list[str]  # metric columns, the sort metric first
    extras: list[str]  # EXTRAS that some job recorded
    sort_metric: str | None
    maximize: bool
    best: Job | None
    delta: DeltaM | None = None

    def columns(self) -> list[str]:
        failed = any(job.error for job in self.jobs)
        return ["job", *self.varying, *self.metrics, *self.extras] + (["error"] if failed else [])


def _job_order(path: Path) -> tuple[int, str]:
    return (int(path.name), "") if path.name.isdigit() else (10**9, path.name)


def _overrides(job: Path) -> tuple[dict[str, str], dict[str, str]]:
    path = job / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}, {}
    values, texts = {}, {}
    for item in OmegaConf.to_container(OmegaConf.load(path)) or []:
        text = str(item)
        key, has_value, value = text.partition("=")
        key = key.lstrip("+")  # `+key=v` / `++key=v` set the same key as `key=v`
        values[key], texts[key] = (value if has_value else "(deleted)"), text
    return values, texts


def _load(job: Path, name: str) -> Job:
    values, texts = _overrides(job)
    record = Job(job, name, values, texts, tasks=job_tasks(job))
    path = job / "metrics.json"
    if not path.is_file():
        record.error = UNFINISHED
        return record
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise MtstError(f"{path}: cannot read run metrics ({err})") from None
    metrics = payload.get("metrics") if isinstance(payload, dict) else None
    if not isinstance(metrics, dict):
        raise MtstError(f"{path}: field 'metrics' missing or not an object")
    if payload.get("error"):
        record.error = str(payload["error"]).splitlines()[0]
    record.probe = any(k.startswith("probe/") for k in metrics)
    if record.probe:  # the probes replace the untrained heads' figures
        metrics = {k[len("probe/"):]: v for k, v in metrics.items() if k.startswith("probe/")}
    record.values = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) or v is None}
    for key in EXTRAS:
        if payload.get(key) is not None:
            record.values[key] = payload[key]
    return record


def split_task_metric(name: str) -> tuple[str, str, str]:
    """`val/topic/f1` -> (`val`, `topic`, `f1`); `val/score` -> (`val`, ``, `score`)."""
    split, _, rest = name.partition("/")
    task, _, metric = rest.rpartition("/")
    return split, task, metric


def _metric_rank(name: str) -> tuple[int, str, int, str, int, str]:
    """Split (val, test, others), then each task's metrics (tasks by name), then score and loss."""
    split, task, metric = split_task_metric(name)
    order = METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER)
    return (SPLITS.index(split) if split in SPLITS else len(SPLITS), split, 0 if task else 1,
            task, order, metric)


def _sweep_settings(folder: Path, jobs: list[Job]) -> tuple[str, str | None]:
    """(optimized_metric, sweeper direction) from multirun.yaml, else from a job's .hydra."""
    candidates = [(folder / "multirun.yaml", folder / "multirun.yaml")] + [
        (j.folder / ".hydra" / "config.yaml", j.folder / ".hydra" / "hydra.yaml") for j in jobs]
    for config, hydra in candidates:
        if not config.is_file():
            continue
        metric = OmegaConf.to_container(OmegaConf.load(config)).get("optimized_metric")
        hydra_cfg = OmegaConf.to_container(OmegaConf.load(hydra)) if hydra.is_file() else {}
        direction = ((hydra_cfg.get("hydra") or {}).get("sweeper") or {}).get("direction")
        if isinstance(direction, list):  # multi-objective: the first objective
            direction = direction[0] if direction else None
        if metric:
            return str(metric), str(direction).lower() if direction else None
    return DEFAULT_METRIC, None


def _higher_is_better(metric: str, optimized: str, direction: str | None) -> bool:
    if metric == optimized and direction:
        return "max" in direction
    return not (metric.endswith("loss") or metric in EXTRAS)


def collect_sweep(folder: str | Path, metric: str | None = None, split: str = "test") -> Sweep:
    """Every job of a multirun folder (or the one run of a run folder), sorted best first by
    `metric` (default: the sweep's optimized metric); Δm% on `split`'s figures."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MtstError(f"{folder}: no such multirun folder")
    if (folder / "metrics.json").is_file():  # a single run folder
        jobs = [_load(folder, folder.name)]
    else:
        found = sorted((p for p in folder.iterdir() if p.is_dir() and (
            (p / ".hydra").is_dir() or (p / "metrics.json").is_file())), key=_job_order)
        jobs = [_load(p, p.name) for p in found]
    if not any(job.error != UNFINISHED for job in jobs):
        raise MtstError(f"{folder}: no job has ended yet (no <job>/metrics.json in this folder)")
    delta = add_delta_m(jobs, split)
    if metric == DELTA_M and delta is None:
        raise MtstError(f"--metric {DELTA_M}: needs single-task jobs (one task in their "
                        ".hydra/config.yaml) beside multi-task jobs of the same tasks")
    keys = list(dict.fromkeys(k for job in jobs for k in job.overrides))
    varying = [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]
    constant = [jobs[0].texts[k] for k in keys if k not in varying]
    logged = {k for job in jobs for k in job.values}
    metrics = sorted((k for k in logged if k not in (*EXTRAS, DELTA_M)), key=_metric_rank)
    optimized, direction = _sweep_settings(folder, jobs)
    if metric is not None and metric not in logged:
        choices = ", ".join(metrics + [k for k in (*EXTRAS, DELTA_M) if k in logged]) or "none"
        raise MtstError(f"--metric {metric!r}: no job logged it; choose one of: {choices}")
    sort_metric = metric or (optimized if optimized in logged else None)
    maximize = _higher_is_better(sort_metric or "", optimized, direction)
    best = None
    if sort_metric:
        if sort_metric in metrics:
            metrics.insert(0, metrics.pop(metrics.index(sort_metric)))

        def key(job: Job) -> tuple[int, float]:
            value = job.values.get(sort_metric)
            return (1, 0.0) if value is None else (0, -value if maximize else value)

        jobs.sort(key=key)  # stable: ties and jobs without the metric keep job order
        if jobs[0].values.get(sort_metric) is not None:
            best = jobs[0]
    if delta is not None:  # right after the sort metric, or first
        metrics.insert(int(sort_metric in metrics), DELTA_M)
    extras = [k for k in EXTRAS if k in logged]
    return Sweep(folder, jobs, varying, constant, metrics, extras, sort_metric, maximize, best,
                 delta)


def write_report(folder: str | Path, out_dir: str | Path | None = None, split: str = "test",
                 metric: str | None = None, mean_over: list[str] | None = None,
                 ) -> tuple[Sweep, dict[str, Path]]:
    """Write report.md, report.csv and report.png (and conflict.png with its section when jobs
    ran the gradient-conflict monitor, seeds.png with its section under `mean_over`: the keys
    averaged over, `mtst.reports.seeds`); every file appears whole or not at all."""
    from mtst.reports.chart import bar_chart
    from mtst.reports.conflict import conflict_figure, conflict_table, monitored
    from mtst.reports.seeds import seeds_figure, seeds_text
    from mtst.reports.table import csv_text, report_text

    if split not in SPLITS:
        raise MtstError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    sweep = collect_sweep(folder, metric, split)
    out = Path(out_dir or folder)
    out.mkdir(parents=True, exist_ok=True)
    conflict = monitored(sweep)  # jobs that ran the gradient-conflict monitor
    body = report_text(sweep) + (f"\n\n{conflict_table(sweep, conflict)}" if conflict else "")
    if mean_over:
        body += f"\n\n{seeds_text(sweep, mean_over, split)}"
    texts = {"report.md": f"# Jobs in {Path(folder).name}\n\n{body}\n", "report.csv": csv_text(sweep)}
    images = ("report.png", *(["conflict.png"] if conflict else []),
              *(["seeds.png"] if mean_over else []))
    temps = {name: out / f".{name}.tmp" for name in (*texts, *images)}
    try:  # render everything first, then move into place
        for name, text in texts.items():
            temps[name].write_text(text, encoding="utf-8")
        bar_chart(sweep, temps["report.png"], split)
        if conflict:
            conflict_figure(sweep, conflict, temps["conflict.png"])
        if mean_over:
            seeds_figure(sweep, mean_over, split, temps["seeds.png"])
        paths = {name: out / name for name in temps}
        for name, tmp in temps.items():
            os.replace(tmp, paths[name])
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    return sweep, paths
