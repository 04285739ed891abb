"""The gradient-conflict part of `mtst report`: what the conflict monitor logged, per job.

Jobs trained with `model.loss.monitor_every=N` log `train/grad_cos/<a>__<b>` (the cosine of two
tasks' gradients on the trainable encoder parameters) and `train/grad_norm/<task>` every N steps
to TensorBoard. Summarised per job: the mean cosine of each task pair, the share of monitored
steps where it was negative (the tasks pulled the encoder apart), and the ratio of the two
tasks' mean gradient norms (a task with a far larger gradient dominates a plain sum); and drawn
as one line per job over the training steps. Jobs without such scalars are left out; a sweep
without any gets no conflict section.
"""

from __future__ import annotations

from pathlib import Path
from statistics import mean

from mtst.reports.sweep import Sweep

COSINE, NORM = "train/grad_cos/", "train/grad_norm/"


def read_monitor(job_folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Tag -> [(step, value)] of the monitor's scalars in the job's TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(job_folder.glob("tensorboard/**/events.out.tfevents.*")):
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags().get("scalars", []):
            if tag.startswith((COSINE, NORM)):
                out.setdefault(tag, []).extend((e.step, float(e.value)) for e in events.Scalars(tag))
    return {tag: _one_per_measurement(sorted(points)) for tag, points in out.items()}


def _one_per_measurement(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Drop exact repeats of the previous value: runs that logged the monitor through
    `self.log` wrote each measurement again at every logging step until the next one."""
    return [p for i, p in enumerate(points) if i == 0 or p[1] != points[i - 1][1]]


def monitored(sweep: Sweep) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Job name -> its monitor scalars, for the jobs that logged task-pair cosines."""
    out = {}
    for job in sweep.jobs:
        scalars = read_monitor(job.folder)
        if any(tag.startswith(COSINE) for tag in scalars):
            out[job.name] = scalars
    return out


def pair_rows(scalars: dict[str, list[tuple[int, float]]]
              ) -> list[tuple[str, float, float, float, int]]:
    """Per task pair: (`a / b`, mean cosine, share of steps with a negative cosine,
    mean |g_a| / mean |g_b|, monitored steps)."""
    rows = []
    for tag in sorted(t for t in scalars if t.startswith(COSINE)):
        a, _, b = tag[len(COSINE):].partition("__")
        cosines = [v for _, v in scalars[tag]]
        norms = [mean(v for _, v in scalars.get(NORM + t, [])) if scalars.get(NORM + t) else None
                 for t in (a, b)]
        ratio = norms[0] / norms[1] if norms[0] is not None and norms[1] else float("nan")
        rows.append((f"{a} / {b}", mean(cosines), sum(c < 0 for c in cosines) / len(cosines), ratio,
                     len(cosines)))
    return rows


def conflict_table(sweep: Sweep, jobs: dict[str, dict[str, list[tuple[int, float]]]]) -> str:
    """The Markdown section: one row per job and task pair."""
    from mtst.reports.table import cell

    varying = list(sweep.varying)
    header = ["job", *varying, "tasks", "mean cosine", "negative steps", "gradient norm ratio",
              "steps"]
    lines = ["## Gradient conflict", "",
             "Cosine of the two tasks' gradients on the trainable encoder parameters, as the "
             "conflict monitor logged it (`model.loss.monitor_every`); gradient norm ratio = "
             "mean |g_a| / mean |g_b|.", "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" if i <= len(varying) + 1
                                                           else "---:" for i in range(len(header))) + "|"]
    by_name = {job.name: job for job in sweep.jobs}
    for name, scalars in jobs.items():
        job = by_name[name]
        for pair, cosine, negative, ratio, steps in pair_rows(scalars):
            lines.append("| " + " | ".join([name, *(cell(sweep, job, k) for k in varying), pair,
                                            f"{cosine:+.3f}", f"{negative:.0%}", f"{ratio:.2f}",
                                            str(steps)]) + " |")
    return "\n".join(lines)


def conflict_figure(sweep: Sweep, jobs: dict[str, dict[str, list[tuple[int, float]]]],
                    path: Path) -> None:
    """Cosine over training steps, one line per job and task pair, written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtst.reports.chart import job_label

    by_name = {job.name: job for job in sweep.jobs}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, scalars in jobs.items():
        label = job_label(sweep, by_name[name]).replace("\n", " ")
        pairs = sorted(t for t in scalars if t.startswith(COSINE))
        for tag in pairs:
            steps, values = zip(*scalars[tag], strict=True)
            pair = tag[len(COSINE):].replace("__", " / ")
            ax.plot(steps, values, marker=".", linewidth=1,
                    label=label if len(pairs) == 1 else f"{label}: {pair}")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cosine of task gradients")
    ax.set_title("Gradient conflict on the shared encoder")
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)  # below: the lines stay visible
    fig.savefig(path, dpi=120, format="png", bbox_inches="tight")
    plt.close(fig)
