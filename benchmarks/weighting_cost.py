"""Row 13: what a gradient-level weighting method costs per training step, relative to `fixed`.

MiniLM on `data=conll_agnews` with `data.sampling=proportional` and no length bucketing (batches
of 32 that mix NER and topic rows, so every step has two tasks to combine), fp32 on CPU, one process. Each measured
step is forward, the method's combination, backward and the AdamW step; the configurations
take turns within each repeat (interleaved) on the same batches, and the figure is the median
step time per configuration over the repeats.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import BENCH_OVERRIDES, Budget, compose, scratch_dir

GRADIENT_METHODS = ("pcgrad", "cagrad", "nash_mtl", "gradnorm")


def configurations() -> list[tuple[str, str]]:
    return [("fixed", "representation")] + [(m, mode) for m in GRADIENT_METHODS
                                           for mode in ("representation", "parameters")]


def run(budget: Budget, steps: int = 4, repeats: int = 3) -> dict[str, Any]:
    from benchmarks.training import build, optimizer_cfg
    from mtst.weighting import build_weighting

    if budget.name == "quick":
        steps, repeats = 1, 1
    with scratch_dir("weighting-cost") as tmp:
        cfg = compose(Path(tmp), [*BENCH_OVERRIDES, "data.sampling=proportional",
                                  "data.bucket_by_length=false"])
        datamodule, module = build(cfg)
        loader = iter(datamodule.train_dataloader())
        batches = [next(loader) for _ in range(steps)]
        module.freezer.apply(module, 0)
        module.log = lambda *args, **kwargs: None  # no Trainer here: nothing to log to
        weights = module.loss_fn.weights.tolist()
        lr = optimizer_cfg(cfg).get("lr_head", 1e-3)
        optimizer = torch.optim.AdamW(module.parameters(), lr=lr)
        times: dict[str, list[float]] = {f"{m}/{mode}": [] for m, mode in configurations()}
        present = [sum(bool(b[f"{t}.has"].any()) for t in module.tasks) for b in batches]
        for repeat in range(repeats + 1):  # repeat 0 warms every configuration up, untimed
            for method, mode in configurations():
                module.loss_fn = build_weighting({"weighting": method}, weights)
                module.grad_on = mode
                for step, batch in enumerate(batches):
                    start = time.perf_counter()
                    optimizer.zero_grad(set_to_none=True)
                    module.training_step(batch, step).backward()
                    optimizer.step()
                    if repeat:
                        times[f"{method}/{mode}"].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in times.items()}
    base = medians["fixed/representation"]
    rows = {k: {"ms_per_step": 1000 * v, "ratio": v / base} for k, v in medians.items()}
    return {"steps": steps, "repeats": repeats, "batch_size": int(cfg.data.batch_size),
            "tasks_per_batch": present, "rows": rows}


def summary_rows(section: dict[str, Any]) -> list[list[Any]]:
    rows = section["rows"]
    shown = "; ".join(f"{m} {rows[f'{m}/representation']['ratio']:.2f}× / "
                      f"{rows[f'{m}/parameters']['ratio']:.2f}×" for m in GRADIENT_METHODS)
    return [["13", "per-step cost of gradient weighting / fixed (grad_on=representation / "
             "parameters)", shown, "—", "—"]]


def render(section: dict[str, Any], table: Any = None) -> str:
    rows = section["rows"]
    lines = [f"MiniLM, batch {section['batch_size']} (tasks present per batch: "
             f"{section['tasks_per_batch']}), {section['steps']} steps × {section['repeats']} "
             "repeats per configuration, interleaved; forward + combination + backward + AdamW.", "",
             "| method | `grad_on` | ms per step (median) | / fixed |", "|---|---|---:|---:|"]
    for key, row in rows.items():
        method, mode = key.split("/")
        shown_mode = "—" if method == "fixed" else mode
        lines.append(f"| {method} | {shown_mode} | {row['ms_per_step']:.0f} | {row['ratio']:.2f}× |")
    return "\n".join(lines)
