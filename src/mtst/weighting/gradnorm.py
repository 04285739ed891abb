"""`gradnorm`: task weights learned so that the tasks' gradient norms track their training rates."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtst.components import check_number
from mtst.weighting.gradient import GradientWeighting

MIN_WEIGHT = 1e-4  # a weight the update would push to or below zero stops here


class GradNorm(GradientWeighting):
    """Chen et al. (2018), "GradNorm: gradient normalization for adaptive loss balancing in deep
    multitask networks", Algorithm 1, with the gradient norms read off the Gram diagonal.

    The task losses GradNorm balances are the fixed-weighted ones, lambda_i·L_i (lambda_i:
    `tasks.<name>.weight`), whose gradients g_i the Gram matrix holds; c_i = w_i multiplies
    them, so the shared part receives sum_i w_i·lambda_i·grad L_i. Hence
    G_i = |grad (w_i lambda_i L_i)| = w_i·sqrt(gram_ii), the norm of what task i adds to the
    update, and GradNorm's targets override the fixed weights (they only set the start).

    Per call, over the present tasks: L~_i = L_i(t)/L_i(0) (L_i(0): the first finite, positive
    loss of task i, a buffer; 1 until then), r_i = L~_i / mean L~, G_i* = mean(G)·r_i^alpha held
    constant, and w_i <- w_i - lr·sign(G_i - G_i*)·|g_i| / mean_j |g_j|: the gradient of the
    GradNorm loss sum_j |G_j - G_j*| with respect to w_i, divided by the tasks' mean gradient
    norm. The division makes the step scale-free, as the paper's optimizer on the weights is: the
    raw gradient moved the weights by lr·|g_i|, hardly at all on a representation's gradients
    (norms ~0.05) and by swings past the other task on a parameter gradient (norms 15–30).
    Multiplying every task gradient by a constant leaves the trajectory unchanged. The weights are
    kept >= MIN_WEIGHT and renormalised so the present tasks' weights keep their sum (the
    weights start at 1 and so always sum to N; an absent task's weight is left alone). The
    update is for the next step: this step's combination uses the weights before it, as in the
    paper. A step with a non-finite loss leaves the weights as they are. Under gradient
    accumulation the weights move once per optimizer step (on its first micro-batch), not once
    per micro-batch: `step` repeats within an accumulation window.

    Args:
        weights: each task's fixed weight lambda_i (`tasks.<name>.weight`).
        grad_on: where the gradients are taken (`GradientWeighting`).
        alpha: the restoring force towards the slower tasks (>= 0).
        lr: the task weights' learning rate (>= 0).
    """

    name = "gradnorm"

    def __init__(self, weights: Sequence[float], *, grad_on: str, alpha: float, lr: float) -> None:
        super().__init__(weights, grad_on=grad_on)
        self.alpha = check_number("weighting.alpha", alpha, low=0)
        self.lr = check_number("weighting.lr", lr, low=0)
        n = len(weights)
        self.register_buffer("task_weights", torch.ones(n, dtype=torch.float64))
        self.register_buffer("initial_losses", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("has_initial", torch.zeros(n, dtype=torch.bool))
        # the optimizer step of the last update (-1: none yet)
        self.register_buffer("updated_at", torch.tensor(-1, dtype=torch.long))

    def combine(self, gram: torch.Tensor, losses: torch.Tensor, index: torch.Tensor,
                step: int) -> torch.Tensor:
        at = index.to(self.task_weights.device)
        weights = self.task_weights.detach().cpu().to(torch.float64)[index]
        if not torch.isfinite(losses).all() or int(self.updated_at) == step:
            return weights
        initial = self.initial_losses.detach().cpu().to(torch.float64)[index]
        known = self.has_initial.detach().cpu()[index]
        first = ~known & (losses > 0)
        initial = torch.where(first, losses, initial)
        known = known | first
        self.initial_losses[at] = initial.to(self.initial_losses)
        self.has_initial[at] = known.to(self.has_initial.device)

        norms = gram.diagonal().clamp(min=0.0).sqrt()
        grad_norms = weights * norms
        rates = torch.where(known, losses / torch.where(known, initial, 1.0), 1.0)
        mean_rate = rates.mean()
        relative = rates / mean_rate if mean_rate > 0 else torch.ones_like(rates)
        targets = grad_norms.mean() * relative ** self.alpha
        scale = norms.mean()
        if scale > 0:
            step_sizes = self.lr * torch.sign(grad_norms - targets) * norms / scale
            updated = (weights - step_sizes).clamp(min=MIN_WEIGHT)
            updated = updated * (weights.sum() / updated.sum())
            self.task_weights[at] = updated.to(self.task_weights)
        self.updated_at.fill_(step)
        return weights
