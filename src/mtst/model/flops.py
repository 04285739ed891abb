"""The training cost of a `MultiTaskNetwork` in FLOPs, by the usual transformer count.

The benchmarks and the GPU device check both turn measured step times into achieved FLOP/s
with it, so the two report the same quantity.

References:
    Kaplan et al., "Scaling Laws for Neural Language Models" (2020), section 2.1: 6·N FLOPs per
    token for a training step, plus the attention term.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn


def flop_model(model: Any) -> dict[str, int]:
    """Per-token matmul parameters N (encoder Linear layers + token heads; embeddings are lookups
    and the pooler and sentence heads act once per sentence, so they are left out), layers L,
    width d.

    Args:
        model: a `MultiTaskNetwork`, or anything holding one as `.net` (the LightningModule).

    Returns:
        `{"matmul_params": N, "layers": L, "hidden": d}`.
    """
    net = getattr(model, "net", model)
    per_token = sum(m.weight.numel() for name, m in net.encoder.named_modules()
                    if isinstance(m, nn.Linear) and "pooler" not in name)
    per_token += sum(head.out.weight.numel() for head in net.heads.values()
                     if head.reads == "token_states")
    config = net.encoder.backbone.config
    return {"matmul_params": per_token, "layers": int(config.num_hidden_layers),
            "hidden": int(config.hidden_size)}


def step_flops(shapes: Iterable[tuple[int, int]], fm: dict[str, int]) -> float:
    """6·N·B·T + 12·L·d·B·T² summed over batches of B x T padded tokens (`fm`: `flop_model`)."""
    n, layers, d = fm["matmul_params"], fm["layers"], fm["hidden"]
    return float(sum(6 * n * b * t + 12 * layers * d * b * t * t for b, t in shapes))
