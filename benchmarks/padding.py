"""Row 3: real-token share of training batches with and without length bucketing, and what it
does to epoch time, on CoNLL-2003 train alone.

The shares cover every batch of the sampler's epoch-0 order; the epoch time is estimated from
evenly spaced batches of each order trained on in turn: mean step time x batches per epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import (
    BENCH_OVERRIDES,
    Budget,
    compose,
    keep_tasks,
    median,
    scratch_dir,
    token_shares,
)
from benchmarks.training import build, time_orders


def run(budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    from mtst.data.batching import MultiTaskBatchSampler

    with scratch_dir("padding") as tmp:
        cfg = compose(Path(tmp), BENCH_OVERRIDES)
        keep_tasks(cfg, ["ner"])  # CoNLL-2003 only
        datamodule, model = build(cfg)
        ds = datamodule.dataset("train")
        bs = int(cfg.data.batch_size)
        orders = {key: MultiTaskBatchSampler(ds.lengths, ds.sources, bs, sampling="proportional",
                                             bucket_by_length=key == "bucketed",
                                             seed=int(cfg.seed)).batches_for_epoch(0)
                  for key in ("bucketed", "unbucketed")}
        steps = time_orders(cfg, model, datamodule, orders, budget.padding_batches)
    est = {k: sum(s for s, _, _ in v) / len(v) * len(orders[k]) for k, v in steps.items()}
    return {"examples": len(ds), "batch_size": bs, "target_share": 0.9,
            **{k: token_shares(ds.lengths, v) for k, v in orders.items()},
            "timed_batches_per_order": budget.padding_batches,
            "median_step_s": {k: median([s for s, _, _ in v]) for k, v in steps.items()},
            "padded_tokens_timed": {k: sum(t for _, _, t in v) for k, v in steps.items()},
            "epoch_s_estimate": est, "epoch_time_ratio": est["unbucketed"] / est["bucketed"]}
