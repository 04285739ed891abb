"""Row 16 (b): token-budget batches (`data.max_tokens`) against a fixed batch size, on CoNLL-2003
train alone with MiniLM: real-token share over the whole epoch-0 order, throughput from evenly
spaced batches of each order trained on in turn.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import Budget, token_shares
from benchmarks.padding import time_conll_orders

MAX_TOKENS, BATCH_SIZE = 4096, 32


def run(budget: Budget, timed: int = 12) -> dict[str, Any]:
    timed = 2 if budget.name == "quick" else timed
    _, ds, orders, steps = time_conll_orders(
        "token-budget", {"budget": {"batch_size": BATCH_SIZE, "max_tokens": MAX_TOKENS},
                         "fixed": {"batch_size": BATCH_SIZE}}, timed)
    seconds = {k: sum(s for s, _, _ in v) for k, v in steps.items()}
    samples = {k: sum(n for _, n, _ in v) for k, v in steps.items()}
    rates = {k: samples[k] / seconds[k] for k in orders}
    epoch_s = {k: seconds[k] / timed * len(orders[k]) for k in orders}
    return {"examples": len(ds), "batch_size": BATCH_SIZE, "max_tokens": MAX_TOKENS,
            **{k: token_shares(ds.lengths, v) for k, v in orders.items()},
            "timed_batches_per_order": timed, "samples_timed": samples, "samples_per_s": rates,
            "samples_per_s_ratio": rates["budget"] / rates["fixed"], "epoch_s_estimate": epoch_s,
            "epoch_time_ratio": epoch_s["fixed"] / epoch_s["budget"]}
