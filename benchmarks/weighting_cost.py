"""Row 13: what a gradient-level weighting method costs per training step, relative to `fixed`.

Batches mix NER and topic rows (proportional sampling, no bucketing), so every step has two tasks
to combine; the configurations take turns on the same batches.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import BENCH_OVERRIDES, Budget, compose, median, scratch_dir

GRADIENT_METHODS = ("pcgrad", "cagrad", "nash_mtl", "gradnorm")
CONFIGURATIONS = [("fixed", "representation")] + [(m, mode) for m in GRADIENT_METHODS
                                                  for mode in ("representation", "parameters")]


def run(budget: Budget, steps: int = 4, repeats: int = 3) -> dict[str, Any]:
    from benchmarks.training import build, optimizer_cfg
    from mtst.weighting import build_weighting

    steps, repeats = (1, 1) if budget.name == "quick" else (steps, repeats)
    with scratch_dir("weighting-cost") as tmp:
        cfg = compose(Path(tmp), [*BENCH_OVERRIDES, "data.sampling=proportional",
                                  "data.bucket_by_length=false"])
        datamodule, module = build(cfg)
        loader = iter(datamodule.train_dataloader())
        batches = [next(loader) for _ in range(steps)]
        module.freezer.apply(module, 0)
        module.log = lambda *args, **kwargs: None  # no Trainer here: nothing to log to
        weights = module.weighting.weights.tolist()
        optimizer = torch.optim.AdamW(module.parameters(), lr=optimizer_cfg(cfg).get("lr_head", 1e-3))
        times: dict[str, list[float]] = {f"{m}/{mode}": [] for m, mode in CONFIGURATIONS}
        for repeat in range(repeats + 1):  # repeat 0 warms every configuration up, untimed
            for method, mode in CONFIGURATIONS:
                module.weighting = build_weighting(compose(Path(tmp), [f"weighting={method}"]).weighting, weights, mode)
                for step, batch in enumerate(batches):
                    start = time.perf_counter()
                    optimizer.zero_grad(set_to_none=True)
                    module.training_step(batch, step).backward()
                    optimizer.step()
                    if repeat:
                        times[f"{method}/{mode}"].append(time.perf_counter() - start)
    base = median(times["fixed/representation"])
    return {"steps": steps, "repeats": repeats, "batch_size": int(cfg.data.batch_size),
            "tasks_per_batch": [sum(bool(b[f"{t}.has"].any()) for t in module.tasks) for b in batches],
            "rows": {k: {"ms_per_step": 1000 * median(v), "ratio": median(v) / base}
                     for k, v in times.items()}}
