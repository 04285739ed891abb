"""Row 3: real-token share of training batches with and without length bucketing, and what it
does to epoch time, on CoNLL-2003 train alone; the timing loop row 16 (b) shares.

The shares cover every batch of the sampler's epoch-0 order; the epoch time is estimated from
evenly spaced batches of each order trained on in turn.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    BENCH_OVERRIDES,
    Budget,
    compose,
    keep_tasks,
    median,
    scratch_dir,
    token_shares,
)
from benchmarks.training import ReferenceLoop, build, optimizer_cfg


def time_orders(cfg: Any, model: Any, datamodule: Any, orders: dict[str, list[list[int]]],
                count: int) -> dict[str, list[tuple[float, int, int]]]:
    """(seconds, sentences, padded tokens) of the plain loop's steps on `count` evenly spaced
    batches of each epoch order, the orders taking turns; the model's weights are restored after."""
    from mtst.data.collate import Collator

    collate = Collator(datamodule.pad_token_id, datamodule.task_kinds)  # the loaders' own
    ds = datamodule.dataset("train")
    loop = ReferenceLoop(model, optimizer_cfg(cfg), total_steps=10 * count)
    initial = copy.deepcopy(model.state_dict())
    model.train()
    loop.step(collate([ds[i] for i in next(iter(orders.values()))[0]]))
    steps: dict[str, list[tuple[float, int, int]]] = {key: [] for key in orders}
    for turn in range(count):
        for key in list(orders) if turn % 2 == 0 else list(reversed(orders)):
            picked = orders[key][round(turn * (len(orders[key]) - 1) / max(1, count - 1))]
            batch = collate([ds[i] for i in picked])
            start = time.perf_counter()
            loop.step(batch)
            steps[key].append((time.perf_counter() - start, len(picked), batch["input_ids"].numel()))
    model.load_state_dict(initial)
    torch.manual_seed(0)
    return steps


def time_conll_orders(prefix: str, samplers: dict[str, dict[str, Any]], count: int
                      ) -> tuple[Any, Any, dict[str, list[list[int]]], dict[str, list[tuple]]]:
    """Config, training split, epoch-0 orders and `time_orders` of MiniLM on CoNLL-2003 train
    alone, one `MultiTaskBatchSampler` order per entry of `samplers` (over the config's settings)."""
    from mtst.data.batching import MultiTaskBatchSampler

    with scratch_dir(prefix) as tmp:
        cfg = compose(Path(tmp), BENCH_OVERRIDES)
        keep_tasks(cfg, ["ner"])  # CoNLL-2003 only
        datamodule, model = build(cfg)
        ds = datamodule.dataset("train")
        config = {"batch_size": int(cfg.data.batch_size),
                  "bucket_by_length": bool(cfg.data.bucket_by_length)}
        orders = {key: MultiTaskBatchSampler(ds.lengths, ds.sources, sampling="proportional",
                                             seed=int(cfg.seed), **{**config, **settings}
                                             ).batches_for_epoch(0)
                  for key, settings in samplers.items()}
        return cfg, ds, orders, time_orders(cfg, model, datamodule, orders, count)


def run(budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    cfg, ds, orders, steps = time_conll_orders(
        "padding", {"bucketed": {"bucket_by_length": True},
                    "unbucketed": {"bucket_by_length": False}}, budget.padding_batches)
    est = {k: sum(s for s, _, _ in v) / len(v) * len(orders[k]) for k, v in steps.items()}
    return {"examples": len(ds), "batch_size": int(cfg.data.batch_size), "target_share": 0.9,
            **{k: token_shares(ds.lengths, v) for k, v in orders.items()},
            "timed_batches_per_order": budget.padding_batches,
            "median_step_s": {k: median([s for s, _, _ in v]) for k, v in steps.items()},
            "padded_tokens_timed": {k: sum(t for _, _, t in v) for k, v in steps.items()},
            "epoch_s_estimate": est, "epoch_time_ratio": est["unbucketed"] / est["bucketed"]}
