"""Pooling: token states + attention mask -> one fixed-length sentence embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

POOLING_MODES = ("mean", "weighted_mean", "last_token", "first", "max")


class Pooling(nn.Module):
    """Masked pooling that gives the same answer whatever side the padding is on.

    `weighted_mean` (SGPT) weights the i-th real token by i: with causal attention later tokens
    have seen more of the sentence. `last_token` takes the last real token, the only one that has
    seen every other token under causal attention.

    Args:
        mode: one of `POOLING_MODES`.
        normalize: L2-normalise the pooled vector.
    """

    def __init__(self, mode: str = "mean", normalize: bool = False) -> None:
        super().__init__()
        if mode not in POOLING_MODES:
            raise ValueError(f"pooling mode '{mode}' unknown; choose one of {', '.join(POOLING_MODES)}")
        self.mode, self.normalize = mode, normalize

    def forward(self, token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.to(token_states.dtype).unsqueeze(-1)  # [B, T, 1]
        if self.mode == "mean":
            pooled = (token_states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        elif self.mode == "weighted_mean":
            weights = torch.cumsum(mask, dim=1) * mask  # 1..n over real tokens only
            pooled = (token_states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        elif self.mode == "max":
            neg = torch.finfo(token_states.dtype).min
            pooled = token_states.masked_fill(mask == 0, neg).max(dim=1).values
        else:
            index = _first_or_last_real(attention_mask, last=self.mode == "last_token")
            pooled = token_states[torch.arange(token_states.size(0), device=index.device), index]
        return F.normalize(pooled, p=2, dim=-1) if self.normalize else pooled

    def extra_repr(self) -> str:
        return f"mode={self.mode}, normalize={self.normalize}"


def _first_or_last_real(attention_mask: torch.Tensor, last: bool) -> torch.Tensor:
    real = attention_mask.bool()
    length = real.size(1)
    if last:
        return length - 1 - real.flip(1).int().argmax(dim=1)
    return real.int().argmax(dim=1)
