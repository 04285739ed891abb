"""What every gradient-level method shares: restricting the Gram matrix to the present tasks.

A method sees only the tasks present in the batch, as a dense float64 sub-problem of size n
(`combine`); the coefficients of absent tasks are exact zeros. So an absent task can neither
enter a projection or a solver nor shift the others' coefficients, and a method on N tasks with
some absent gives the present ones what it would give on those tasks alone.
"""

from __future__ import annotations

import torch

from mtst.errors import MtstError
from mtst.weighting.base import Weighting, present_mask


class GradientWeighting(Weighting):
    level = "gradient"

    def coefficients(self, gram: torch.Tensor, losses: torch.Tensor, present: torch.Tensor,
                     step: int) -> torch.Tensor:
        n = self.num_tasks
        if tuple(gram.shape) != (n, n):
            raise MtstError(f"{self.name}: expected a {n}x{n} Gram matrix, got {tuple(gram.shape)}")
        mask = present_mask(present).to(device="cpu", dtype=torch.bool)
        coefficients = torch.zeros(n, dtype=torch.float64)
        index = mask.nonzero().flatten()
        if len(index):
            sub = gram.detach().to(device="cpu", dtype=torch.float64)[index][:, index]
            sub = (sub + sub.T) / 2  # exact symmetry for the solvers (reductions may round)
            sub_losses = losses.detach().to(device="cpu", dtype=torch.float64).reshape(n)[index]
            coefficients[index] = self.combine(sub, sub_losses, index, int(step))
        return coefficients.to(gram.device)

    def combine(self, gram: torch.Tensor, losses: torch.Tensor, index: torch.Tensor,
                step: int) -> torch.Tensor:
        """The method on the present tasks only: `gram` [n, n] and `losses` [n] float64 on the
        CPU, `index` [n] their positions among all tasks (for per-task state) -> c [n]."""
        raise NotImplementedError
