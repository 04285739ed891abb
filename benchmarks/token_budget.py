"""Row 16 (b): token-budget batches (`data.max_tokens`) against a fixed batch size, on CoNLL-2003
train alone with MiniLM.

Both orders are the training batch sampler's own for epoch 0 (length bucketing on, as
conf/data/conll_agnews.yaml has it): a fixed 32 sentences a batch, and batches filled up to
`max_tokens` padded tokens (longest sentence x sentences). The real-token share covers every
batch of the epoch. Throughput is measured on evenly spaced batches of each order, trained on in
turn (fixed, budget, budget, fixed, ...) with benchmarks.training's plain loop from the same
weights; samples/s = sentences trained on / seconds, per side.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import BENCH_OVERRIDES, Budget, compose, keep_tasks, scratch_dir

MAX_TOKENS, BATCH_SIZE = 4096, 32


def shares(lengths: np.ndarray, batches: list[list[int]]) -> dict[str, float]:
    """Real tokens over padded tokens (longest x count per batch), whole epoch and per batch."""
    real = np.asarray([lengths[b].sum() for b in batches], dtype=np.float64)
    padded = np.asarray([lengths[b].max() * len(b) for b in batches], dtype=np.float64)
    per_batch = real / padded
    return {"real_token_share": float(real.sum() / padded.sum()),
            "median_batch_share": float(np.median(per_batch)), "batches": len(batches),
            "mean_sentences_per_batch": float(np.mean([len(b) for b in batches])),
            "max_padded_tokens": int(padded.max()), "mean_padded_tokens": float(padded.mean())}


def run(budget: Budget, timed: int = 12) -> dict[str, Any]:
    from benchmarks.training import ReferenceLoop, build, optimizer_cfg
    from mtst.data.batching import MultiTaskBatchSampler
    from mtst.data.collate import Collator

    if budget.name == "quick":
        timed = 2
    with scratch_dir("token-budget") as tmp:
        cfg = compose(Path(tmp), BENCH_OVERRIDES)
        keep_tasks(cfg, ["ner"])  # CoNLL-2003 only
        datamodule, model = build(cfg)
        ds = datamodule.dataset("train")
        lengths = np.asarray(ds.lengths)
        orders = {}
        for key, max_tokens in (("fixed", None), ("budget", MAX_TOKENS)):
            sampler = MultiTaskBatchSampler(ds.lengths, ds.sources, BATCH_SIZE,
                                            sampling="proportional",
                                            bucket_by_length=bool(cfg.data.bucket_by_length),
                                            seed=int(cfg.seed), max_tokens=max_tokens)
            orders[key] = sampler.batches_for_epoch(0)
        result: dict[str, Any] = {"examples": len(ds), "batch_size": BATCH_SIZE,
                                  "max_tokens": MAX_TOKENS,
                                  **{k: shares(lengths, v) for k, v in orders.items()}}
        collate = Collator(datamodule.pad_token_id, datamodule.task_kinds)
        loop = ReferenceLoop(model, optimizer_cfg(cfg), total_steps=10 * timed)
        initial = copy.deepcopy(model.state_dict())
        model.train()
        loop.step(collate([ds[i] for i in orders["budget"][0]]))  # warm-up, untimed
        seconds = {k: 0.0 for k in orders}
        samples = {k: 0 for k in orders}
        for turn in range(timed):
            pair = ("fixed", "budget") if turn % 2 == 0 else ("budget", "fixed")
            for key in pair:
                order = orders[key]
                picked = order[int(round(turn * (len(order) - 1) / max(1, timed - 1)))]
                batch = collate([ds[i] for i in picked])
                start = time.perf_counter()
                loop.step(batch)
                seconds[key] += time.perf_counter() - start
                samples[key] += len(picked)
        model.load_state_dict(initial)
        torch.manual_seed(0)
    rates = {k: samples[k] / seconds[k] for k in orders}
    epoch_s = {k: seconds[k] / timed * len(orders[k]) for k in orders}
    result.update({"timed_batches_per_order": timed, "samples_timed": samples,
                   "samples_per_s": rates, "samples_per_s_ratio": rates["budget"] / rates["fixed"],
                   "epoch_s_estimate": epoch_s,
                   "epoch_time_ratio": epoch_s["fixed"] / epoch_s["budget"]})
    return result


def summary_rows(section: dict[str, Any]) -> list[list[Any]]:
    b, f = section["budget"], section["fixed"]
    return [["16", f"token-budget batches (data.max_tokens={section['max_tokens']}) vs batch "
             f"{section['batch_size']}: real-token share; samples/s ratio",
             f"{b['real_token_share']:.1%} vs {f['real_token_share']:.1%}; "
             f"{section['samples_per_s_ratio']:.2f}× ({section['samples_per_s']['budget']:.0f} vs "
             f"{section['samples_per_s']['fixed']:.0f})", "—", "—"]]


def render(section: dict[str, Any], table: Any = None) -> str:
    lines = [
        f"MiniLM, NER head, CoNLL-2003 train ({section['examples']:,} sentences), length "
        f"bucketing on for both; {section['timed_batches_per_order']} evenly spaced batches of "
        "each order trained on in turn; forward + loss + backward + clipping + AdamW.", "",
        "| batches | batches per epoch | sentences per batch (mean) | padded tokens per batch "
        "(mean / max) | real-token share (epoch / median batch) | samples/s | epoch estimate, s |",
        "|---|---:|---:|---:|---:|---:|---:|"]
    for key, what in (("fixed", f"fixed, {section['batch_size']} sentences"),
                      ("budget", f"data.max_tokens={section['max_tokens']}")):
        s = section[key]
        lines.append(f"| {what} | {s['batches']:,} | {s['mean_sentences_per_batch']:.1f} | "
                     f"{s['mean_padded_tokens']:,.0f} / {s['max_padded_tokens']:,} | "
                     f"{s['real_token_share']:.1%} / {s['median_batch_share']:.1%} | "
                     f"{section['samples_per_s'][key]:.0f} | {section['epoch_s_estimate'][key]:.0f} |")
    lines += ["", f"Token budget / fixed: {section['samples_per_s_ratio']:.2f}× the samples/s; "
              f"estimated epoch time {section['epoch_time_ratio']:.2f}× faster (mean timed step "
              "× batches per epoch). Larger batches also mean fewer optimizer steps per epoch, "
              "which changes training itself: the learning rate and schedule tuned for batch "
              f"{section['batch_size']} may need retuning."]
    return "\n".join(lines)
