"""`nash_mtl`: the Nash bargaining solution of the tasks, written on the Gram matrix."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from mtst.components import check_integer, check_number
from mtst.weighting.gradient import GradientWeighting

RIDGE = 1e-12  # on the unit-diagonal Gram matrix: keeps a solution when gradients are dependent
TOLERANCE = 1e-13  # stop when every alpha_i (G alpha)_i is within this of 1
CONVERGED = 1e-10  # or after a Newton step with a decrement below this (ill-conditioned G)
# a solution whose max_i |alpha_i (G alpha)_i - 1| is above this is no solution: G alpha = 1/alpha
# has none when the gradients cancel (g and -g; three tasks with g3 = -(g1 + g2)), and the solver
# then returns alpha ~ 1e6 with a residual of 1
RESIDUAL = 1e-6


def nash_residual(gram: torch.Tensor, alpha: torch.Tensor) -> float:
    """max_i |alpha_i (G alpha)_i - 1| over the tasks with a gradient (0 when none has one)."""
    alive = gram.diagonal() > 0
    if not alive.any():
        return 0.0
    return float((alpha * (gram @ alpha) - 1.0)[alive].abs().max())


def nash_alpha(gram: torch.Tensor, iterations: int) -> torch.Tensor:
    """alpha > 0 with G alpha = 1/alpha (element-wise), G [n, n] float64 positive semi-definite.

    With D = diag(G)^(-1/2) and C = D G D (unit diagonal: the gradients' cosines), alpha = D beta
    where C beta = 1/beta, so only the angles between the gradients matter and the magnitudes
    are exact rescalings. beta is the minimiser of f(beta) = beta·C·beta/2 - sum_i log beta_i
    (gradient C beta - 1/beta): strictly convex and self-concordant, so Newton with backtracking
    (never shorter than the damped step 1/(1 + lambda), lambda the Newton decrement, which keeps
    beta > 0 and decreases f) converges, quadratically near the solution, from beta = 1, the
    exact answer for orthogonal gradients. A
    task with a zero gradient gets alpha_i = 0 (it has nothing to add).
    """
    n = len(gram)
    alpha = torch.zeros(n, dtype=torch.float64)
    alive = gram.diagonal() > 0
    if not alive.any():
        return alpha
    scale = gram.diagonal()[alive].rsqrt()
    cosines = gram[alive][:, alive] * scale[:, None] * scale[None, :]
    cosines = cosines + RIDGE * torch.eye(len(cosines), dtype=torch.float64)
    beta = torch.ones(len(cosines), dtype=torch.float64)

    def objective(b: torch.Tensor) -> float:
        return float(b @ cosines @ b / 2 - b.log().sum())

    for _ in range(iterations):
        c_beta = cosines @ beta
        if (beta * c_beta - 1.0).abs().max() < TOLERANCE:
            break
        grad = c_beta - 1.0 / beta
        step = torch.linalg.solve(cosines + torch.diag(1.0 / beta ** 2), grad)
        decrement2 = float((grad @ step).clamp(min=0.0))
        # backtracking (Armijo) from the full step; 1/(1 + lambda) is always accepted
        size, value = 1.0, objective(beta)
        floor = 1.0 / (1.0 + decrement2 ** 0.5)
        while size > floor and (bool((beta - size * step <= 0).any())
                                or objective(beta - size * step) > value - size * decrement2 / 4):
            size /= 2
        beta = beta - max(size, floor) * step
        if decrement2 < CONVERGED ** 2:  # quadratic convergence: that was the last useful step
            break
    alpha[alive] = beta * scale
    return alpha


class NashMTL(GradientWeighting):
    """Navon et al. (2022), "Multi-task learning as a bargaining game" (Nash-MTL).

    The shared part receives sum_i alpha_i g_i with alpha > 0 solving G alpha = 1/alpha, G the
    Gram matrix of the present tasks (`nash_alpha`; the official code, AvivNavon/nash-mtl
    methods/weight_methods.py, approaches it by a sequence of convex problems with cvxpy; here
    Newton on the equivalent convex problem, up to `optim_iters` steps). alpha is recomputed
    every `update_every` steps (and whenever the set of present tasks changed); in between the
    last alpha, a persistent buffer, is reused. Where the system has no solution (the gradients
    cancel: residual above `RESIDUAL`), a warning is given once and alpha_i = 1/|g_i| is used,
    each task's unit gradient: Nash-MTL's own answer for orthogonal gradients, and a defined,
    finite one where the bargaining problem has none. As the official code clips the shared gradient
    to `max_norm` (0: off), the combination is scaled by min(1, max_norm / |sum_i alpha_i g_i|),
    the norm taken from the Gram matrix every step; note that at the exact solution
    |sum_i alpha_i g_i|^2 = alpha·G·alpha = n, so with max_norm 1.0 every update has norm 1.

    Args:
        weights: each task's fixed weight (`tasks.<name>.weight`).
        grad_on: where the gradients are taken (`GradientWeighting`).
        max_norm: the combination's largest norm (>= 0; 0: no limit).
        update_every: solve for alpha every this many steps (>= 1).
        optim_iters: the solver's most Newton steps (>= 1).
    """

    name = "nash_mtl"

    def __init__(self, weights: Sequence[float], *, grad_on: str, max_norm: float,
                 update_every: int, optim_iters: int) -> None:
        super().__init__(weights, grad_on=grad_on)
        self.max_norm = check_number("weighting.max_norm", max_norm, low=0)
        self.update_every = check_integer("weighting.update_every", update_every, low=1)
        self.optim_iters = check_integer("weighting.optim_iters", optim_iters, low=1)
        n = len(weights)
        self.register_buffer("alpha", torch.zeros(n, dtype=torch.float64))
        # which tasks were present when `alpha` was solved (none yet: solve at the first call)
        self.register_buffer("alpha_present", torch.zeros(n, dtype=torch.bool))
        self._warned = False  # the no-solution warning, once per run

    def combine(self, gram: torch.Tensor, losses: torch.Tensor, index: torch.Tensor,
                step: int) -> torch.Tensor:
        present = torch.zeros(self.num_tasks, dtype=torch.bool)
        present[index] = True
        if step % self.update_every == 0 or not torch.equal(
                self.alpha_present.cpu(), present):
            alpha = nash_alpha(gram, self.optim_iters)
            if nash_residual(gram, alpha) > RESIDUAL:
                alpha = self._fallback(gram)
            self.alpha.zero_()
            self.alpha[index.to(self.alpha.device)] = alpha.to(self.alpha)
            self.alpha_present.copy_(present)
        alpha = self.alpha.detach().cpu().to(torch.float64)[index]
        norm = float((alpha @ gram @ alpha).clamp(min=0.0).sqrt())
        if self.max_norm > 0 and norm > self.max_norm:
            alpha = alpha * (self.max_norm / norm)
        return alpha

    def _fallback(self, gram: torch.Tensor) -> torch.Tensor:
        if not self._warned:
            warnings.warn("nash_mtl: the task gradients cancel, so the bargaining problem has no "
                          "solution; using each task's unit gradient (alpha_i = 1/|g_i|) at "
                          "such steps", RuntimeWarning, stacklevel=2)
            self._warned = True
        norms = gram.diagonal().clamp(min=0.0).sqrt()
        return torch.where(norms > 0, 1.0 / norms.clamp(min=1e-300), torch.zeros_like(norms))
