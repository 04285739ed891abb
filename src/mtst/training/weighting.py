"""How the tasks' losses add up: fixed weights, or Kendall et al. (2018) uncertainty weighting."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mtst.errors import MtstError, choices_text

WEIGHTINGS = ("fixed", "uncertainty")
LOSS_KEYS = ("weighting",)  # the keys of model.loss read here


class MultiTaskLoss(nn.Module):
    """total = sum_i w_i·L_i over the tasks present in the batch.

    With `uncertainty`, task i has a learned log-variance s_i and contributes exp(-s_i)·w_i·L_i
    + s_i. A task absent from the batch contributes exactly nothing (its loss is an exact zero
    and its term is masked out), so neither its weight nor its s_i moves on that step.
    """

    def __init__(self, weights: Sequence[float], weighting: str = "fixed") -> None:
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise MtstError(f"model.loss.weighting={weighting!r}: no such option; choose one of "
                            f"{choices_text(WEIGHTINGS)}")
        self.weighting = weighting
        self.register_buffer("weights", torch.tensor([float(w) for w in weights]), persistent=False)
        if weighting == "uncertainty":
            self.log_vars = nn.Parameter(torch.zeros(len(weights)))

    def forward(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """`losses` [N] (one per task, 0 where absent), `present` [N] bool."""
        weighted = losses * self.weights.to(losses.dtype)
        if self.weighting == "uncertainty":
            weighted = torch.exp(-self.log_vars) * weighted + self.log_vars
        return torch.where(present, weighted, torch.zeros_like(weighted)).sum()
