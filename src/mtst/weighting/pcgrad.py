"""`pcgrad`: projecting conflicting gradients, written on the Gram matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mtst.components import check_integer
from mtst.weighting.gradient import GradientWeighting


class PCGrad(GradientWeighting):
    """Yu et al. (2020), "Gradient surgery for multi-task learning" (PCGrad), Algorithm 1.

    For each task i, visiting the other tasks j in a random order: if <g_i^PC, g_j> < 0,
    g_i^PC <- g_i^PC - <g_i^PC, g_j> / |g_j|^2 * g_j (always onto the original g_j); the shared
    part receives sum_i g_i^PC (the paper's sum, so without conflicts this is plain summation).

    Each g_i^PC is kept as coefficients over the task gradients, g_i^PC = sum_k A_ik g_k, A
    starting as the identity; <g_i^PC, g_j> = (A G)_ij comes from the Gram matrix G, and the
    result is c = sum_i A_i. The orders come from a generator seeded with (`seed`, step): the
    same on every rank and reproducible on a resumed run.

    Args:
        weights: each task's fixed weight (`tasks.<name>.weight`).
        grad_on: where the gradients are taken (`GradientWeighting`).
        seed: the orders' seed, an integer >= 0.
    """

    name = "pcgrad"

    def __init__(self, weights: Sequence[float], *, grad_on: str, seed: int) -> None:
        super().__init__(weights, grad_on=grad_on)
        self.seed = check_integer("weighting.seed", seed, low=0)

    def orders(self, n: int, step: int) -> list[list[int]]:
        """For each of n present tasks, the order in which the others are visited at `step`."""
        rng = np.random.default_rng([self.seed, step])
        return [[int(j) for j in rng.permutation([j for j in range(n) if j != i])]
                for i in range(n)]

    def combine(self, gram: torch.Tensor, losses: torch.Tensor, index: torch.Tensor,
                step: int) -> torch.Tensor:
        n = len(gram)
        projected = torch.eye(n, dtype=torch.float64)  # row i: g_i^PC over the g_k
        for i, order in enumerate(self.orders(n, step)):
            for j in order:
                dot = projected[i] @ gram[:, j]
                if dot < 0 and gram[j, j] > 0:
                    projected[i, j] -= dot / gram[j, j]
        return projected.sum(0)
