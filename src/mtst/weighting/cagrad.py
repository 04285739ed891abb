"""`cagrad`: conflict-averse gradient descent, written on the Gram matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import minimize

from mtst.components import check_number
from mtst.weighting.gradient import GradientWeighting


def polish(gram: np.ndarray, linear: np.ndarray, radius: float, w: np.ndarray,
           steps: int = 3) -> np.ndarray:
    """Newton on the optimality conditions of min linear·w + radius·sqrt(w·G·w) restricted to
    the face of the simplex where w > 0: takes the solver's answer to full float64 precision.
    A step that leaves the face or raises the objective is not taken."""

    def value(v: np.ndarray) -> float:
        return float(linear @ v) + radius * np.sqrt(max(float(v @ gram @ v), 0.0))

    for _ in range(steps):
        face = w > 1e-12
        k = int(face.sum())
        g, v = gram[np.ix_(face, face)], w[face]
        gv = g @ v
        norm = np.sqrt(float(v @ gv))
        if k < 2 or norm == 0.0:
            return w
        hessian = radius * (g / norm - np.outer(gv, gv) / norm ** 3)
        system = np.block([[hessian, np.ones((k, 1))], [np.ones((1, k)), np.zeros((1, 1))]])
        rhs = np.concatenate([-(linear[face] + radius * gv / norm), [1.0 - v.sum()]])
        try:
            move = np.linalg.solve(system, rhs)[:k]
        except np.linalg.LinAlgError:
            return w
        candidate = w.copy()
        candidate[face] = v + move
        if (candidate < 0).any() or value(candidate) > value(w) + 1e-15 * abs(value(w)):
            return w
        w = candidate
    return w


class CAGrad(GradientWeighting):
    """Liu et al. (2021), "Conflict-averse gradient descent for multi-task learning" (CAGrad).

    With g0 the mean of the n present task gradients and sqrt(phi) = c·|g0|, find w on the
    simplex minimising  gw·g0 + sqrt(phi)·|gw|,  gw = sum_i w_i g_i, and move along
    d = g0 + sqrt(phi)/|gw| · gw. As in the official code (Cranial-XIX/CAGrad, nyuv2/utils.py,
    `rescale=1`, and LibMTL's default) d is divided by 1 + c^2, and (as its `overwrite_grad`
    does "to match the sum loss") multiplied by n, so the shared part receives

        n·d / (1 + c^2) = sum_i (1 + n·lambda·w_i) / (1 + c^2) · g_i,   lambda = c|g0| / |gw|,

    and c = 0 is plain summation. The simplex problem is convex; it is solved in float64 by
    SLSQP (as the official code) on the Gram matrix scaled to unit mean diagonal, with exact
    derivatives and a tight tolerance, then polished by Newton on the optimality conditions of
    the face it lands on (`polish`).

    Args:
        weights: each task's fixed weight (`tasks.<name>.weight`).
        grad_on: where the gradients are taken (`GradientWeighting`).
        c: the ball's radius relative to |g0| (>= 0; 0 is plain summation).
    """

    name = "cagrad"

    def __init__(self, weights: Sequence[float], *, grad_on: str, c: float) -> None:
        super().__init__(weights, grad_on=grad_on)
        self.c = check_number("weighting.c", c, low=0)

    def simplex_weights(self, gram: np.ndarray) -> np.ndarray:
        """w on the simplex minimising w·G·1/n + c·|g0|·sqrt(w·G·w) for a (scaled) Gram G."""
        n = len(gram)
        mean = np.full(n, 1.0 / n)
        toward_mean = gram @ mean
        radius = self.c * np.sqrt(max(float(mean @ toward_mean), 0.0))
        if n == 1 or radius == 0.0:
            return mean

        def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
            gw = gram @ w
            norm = np.sqrt(max(float(w @ gw), 1e-300))
            return float(w @ toward_mean) + radius * norm, toward_mean + radius * gw / norm

        result = minimize(objective, mean, jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * n,
                          constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                        "jac": lambda w: np.ones_like(w)}],
                          options={"ftol": 1e-15, "maxiter": 500})
        w = np.clip(result.x, 0.0, None)
        return polish(gram, toward_mean, radius, w / w.sum())

    def combine(self, gram: torch.Tensor, losses: torch.Tensor, index: torch.Tensor,
                step: int) -> torch.Tensor:
        n = len(gram)
        scale = float(gram.diagonal().mean())
        if not scale > 0:  # every present gradient is zero: nothing to avoid
            return torch.full((n,), 1.0 / (1.0 + self.c ** 2), dtype=torch.float64)
        scaled = gram.numpy() / scale
        w = self.simplex_weights(scaled)
        g0_norm = np.sqrt(max(float(scaled.mean()), 0.0))  # |g0|^2 = mean of all <g_i, g_j>
        gw_norm = np.sqrt(max(float(w @ scaled @ w), 0.0))
        lam = self.c * g0_norm / gw_norm if gw_norm > 0 else 0.0
        return torch.from_numpy((1.0 + n * lam * w) / (1.0 + self.c ** 2))
