"""Multi-task loss: each task's cross-entropy masked to the examples that carry its labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100
WEIGHTINGS = ("fixed", "uncertainty")
LOSS_KEYS = ("weighting", "cls_weight", "ner_weight")  # MultiTaskLoss's arguments (model.loss)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean CE over labelled positions; exactly 0 (still in the graph) when nothing is labelled.

    Keeping the zero in the graph gives every head a gradient each step, so DDP never sees
    unused parameters on batches that lack one task.
    """
    flat_logits = logits.reshape(-1, logits.size(-1))
    if flat_logits.dtype in (torch.float16, torch.bfloat16):  # CE in fp32 under mixed precision
        flat_logits = flat_logits.float()
    flat_labels = labels.reshape(-1)
    if not bool((flat_labels != IGNORE).any()):
        return flat_logits.sum() * 0.0
    return F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE)


class MultiTaskLoss(nn.Module):
    """total = w_cls·L_cls + w_ner·L_ner, or Kendall et al. (2018) learned uncertainty weighting.

    With `uncertainty`, each task i has a learned log-variance s_i and contributes
    exp(-s_i)·w_i·L_i + s_i; a task absent from the batch contributes nothing.
    """

    def __init__(self, weighting: str = "fixed", cls_weight: float = 1.0, ner_weight: float = 1.0):
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise ValueError(f"loss weighting '{weighting}' unknown; choose one of {WEIGHTINGS}")
        self.weighting = weighting
        self.register_buffer("weights", torch.tensor([cls_weight, ner_weight]), persistent=False)
        if weighting == "uncertainty":
            self.log_vars = nn.Parameter(torch.zeros(2))

    def forward(
        self, loss_cls: torch.Tensor, loss_ner: torch.Tensor, present: torch.Tensor
    ) -> torch.Tensor:
        """`present` [2] bool: whether the batch holds labels for (cls, ner)."""
        losses = torch.stack([loss_cls, loss_ner]) * self.weights
        if self.weighting == "uncertainty":
            losses = torch.exp(-self.log_vars) * losses + self.log_vars
        return (losses * present.to(losses.dtype)).sum()
