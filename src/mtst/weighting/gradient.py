"""What every gradient-level method shares: its training step, and restricting the Gram matrix
to the present tasks.

A method sees only the tasks present in the batch, as a dense float64 sub-problem of size n
(`combine`); the coefficients of absent tasks are exact zeros. So an absent task can neither
enter a projection or a solver nor shift the others' coefficients, and a method on N tasks with
some absent gives the present ones what it would give on those tasks alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from mtst.errors import MtstError, choices_text
from mtst.weighting.base import Weighting, present_mask
from mtst.weighting.combination import MixCheck, combined_loss
from mtst.weighting.step import Forward, Objective

log = logging.getLogger("mtst")
GRAD_ON = ("representation", "parameters")


class GradientWeighting(Weighting):
    """A method on the tasks' gradients: `step` takes each present task's gradient on the shared
    part (`grad_on`), asks `coefficients` for c, and back-propagates a surrogate whose gradient
    is sum_i c_i g_i on the shared part and each task's own weighted loss on its head.

    Args:
        weights: each task's fixed weight (`tasks.<name>.weight`).
        grad_on: ``representation`` (the encoder's token states: one backward through the
            encoder) or ``parameters`` (the trainable encoder parameters: one backward per task):
            `model.loss.grad_on`, passed by `build_weighting`; the subclasses' own settings
            follow it as keyword-only arguments.
    """

    level = "gradient"

    def __init__(self, weights: Sequence[float], *, grad_on: str) -> None:
        super().__init__(weights)
        if grad_on not in GRAD_ON:
            raise MtstError(f"model.loss.grad_on={grad_on!r}: no such option; choose one of "
                            f"{choices_text(GRAD_ON)}")
        self.grad_on = grad_on
        self.mix_check = MixCheck(self.name, grad_on)
        self._warned_no_shared = False

    def step(self, forward: Forward, step: int) -> Objective:
        """The combination above; where no encoder parameter trains (a frozen encoder) there is
        nothing to combine, each head being its own task's: the heads train on the weighted sum
        (`Weighting.step`), with a warning the first time."""
        shared = forward.cut()
        if shared is None:
            if not self._warned_no_shared:
                self._warned_no_shared = True
                log.warning("weighting=%s: no encoder parameter trains in this epoch "
                            "(freeze=%s), so there is no shared gradient to combine; the heads "
                            "train on the weighted sum of their losses", self.name, forward.freeze)
            return super().step(forward, step)
        self.mix_check(shared.rows, step)
        mean_losses, seen = shared.losses.rank_mean()
        surrogate, heads_total = combined_loss(
            shared, self.weights, lambda gram: self.coefficients(gram, mean_losses, seen, step),
            on_parameters=self.grad_on == "parameters")
        self.after_step(mean_losses, seen, step)
        return Objective(surrogate, heads_total, shared.losses)

    def coefficients(self, gram: torch.Tensor, losses: torch.Tensor, present: torch.Tensor,
                     step: int) -> torch.Tensor:
        """c [N] (0 for absent tasks) such that the shared part receives sum_i c_i g_i. `gram`
        [N, N] float64 holds <g_i, g_j> of the weighted task gradients (rows/columns of absent
        tasks are 0), `losses` [N] the rank-averaged losses."""
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
