"""`fixed` weights and Kendall et al. (2018) `uncertainty` weighting: loss level."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mtst.weighting.base import Weighting


class Fixed(Weighting):
    """total = sum_i w_i·L_i over the tasks present in the batch (w_i: `tasks.<name>.weight`).

    Args:
        weights: each task's fixed weight.
    """

    name = "fixed"


class Uncertainty(Weighting):
    """Kendall, Gal & Cipolla (2018), "Multi-task learning using uncertainty to weigh losses":
    task i has a learned log-variance s_i and contributes exp(-s_i)·w_i·L_i + s_i. A task absent
    from the batch contributes nothing, so its s_i gets an exact zero gradient that step.

    Args:
        weights: each task's fixed weight (`tasks.<name>.weight`).
    """

    name = "uncertainty"

    def __init__(self, weights: Sequence[float]) -> None:
        super().__init__(weights)
        self.log_vars = nn.Parameter(torch.zeros(len(weights)))

    def forward(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        weighted = losses * self.weights.to(losses.dtype)
        weighted = torch.exp(-self.log_vars) * weighted + self.log_vars
        return torch.where(present, weighted, torch.zeros_like(weighted)).sum()
