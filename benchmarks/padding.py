"""Row 3: real-token share of training batches with and without length bucketing, and what it
does to epoch time, on CoNLL-2003 train alone.

The token shares cover every batch of one epoch (the sampler's own order). The epoch time is
estimated, not run in full: the same number of evenly spaced batches is drawn from each
epoch order and trained on alternately (bucketed, unbucketed, ...); epoch time = mean step
time x batches per epoch (both orders have the same number of batches).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import BENCH_OVERRIDES, Budget, compose, keep_tasks, median, scratch_dir
from benchmarks.data_pipeline import padded_share
from benchmarks.training import ReferenceLoop, build, optimizer_cfg
from mtst.data.batching import MultiTaskBatchSampler
from mtst.data.collate import Collator


def batch_shares(lengths: list[int], batches: list[list[int]]) -> np.ndarray:
    """Real tokens / padded tokens, per batch."""
    return np.asarray([sum(lengths[i] for i in b) / (len(b) * max(lengths[i] for i in b))
                       for b in batches])


def run(budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    with scratch_dir("padding") as tmp:
        cfg = compose(Path(tmp), BENCH_OVERRIDES)
        keep_tasks(cfg, ["ner"])  # CoNLL-2003 only
        datamodule, model = build(cfg)
        ds = datamodule.dataset("train")
        bs = int(cfg.data.batch_size)
        result: dict[str, Any] = {"examples": len(ds), "batch_size": bs, "target_share": 0.9}
        orders = {}
        for bucket in (True, False):
            key = "bucketed" if bucket else "unbucketed"
            sampler = MultiTaskBatchSampler(ds.lengths, ds.sources, bs, sampling="proportional",
                                            bucket_by_length=bucket, seed=int(cfg.seed))
            orders[key] = sampler.batches_for_epoch(0)
            per_batch = batch_shares(ds.lengths, orders[key])
            result[key] = {
                "real_token_share": 1 - padded_share(ds.lengths, ds.sources, bs, bucket, "proportional"),
                "median_batch_share": float(np.median(per_batch)),
                "p10_batch_share": float(np.percentile(per_batch, 10)),
                "batches": len(orders[key]),
            }
        collate = Collator(datamodule.pad_token_id, datamodule.task_kinds)  # the loaders' own
        result.update(_epoch_time(cfg, model, ds, orders, budget.padding_batches, collate))
        return result


def _epoch_time(cfg: Any, model: Any, ds: Any, orders: dict[str, list[list[int]]], count: int,
                collate: Collator) -> dict[str, Any]:
    n = len(orders["bucketed"])
    picks = np.linspace(0, n - 1, count).round().astype(int)
    loop = ReferenceLoop(model, optimizer_cfg(cfg), total_steps=10 * count)
    initial = copy.deepcopy(model.state_dict())
    model.train()
    times: dict[str, list[float]] = {"bucketed": [], "unbucketed": []}
    tokens: dict[str, int] = {"bucketed": 0, "unbucketed": 0}
    warm = collate([ds[i] for i in orders["bucketed"][0]])
    loop.step(warm)
    for p in picks:
        for key in ("bucketed", "unbucketed"):
            batch = collate([ds[i] for i in orders[key][p]])
            start = time.perf_counter()
            loop.step(batch)
            times[key].append(time.perf_counter() - start)
            tokens[key] += batch["input_ids"].numel()
    model.load_state_dict(initial)
    torch.manual_seed(0)
    est = {k: float(np.mean(v)) * n for k, v in times.items()}
    return {"timed_batches_per_order": int(count),
            "median_step_s": {k: median(v) for k, v in times.items()},
            "padded_tokens_timed": tokens,
            "epoch_s_estimate": est, "epoch_time_ratio": est["unbucketed"] / est["bucketed"]}
