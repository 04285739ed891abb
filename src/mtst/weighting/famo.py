"""`famo`: Fast Adaptive Multitask Optimization (loss level), learned task logits that favour the
tasks whose log-loss falls slowest."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mtst.components import check_number
from mtst.errors import MtstError
from mtst.weighting.base import Weighting, present_softmax
from mtst.weighting.step import TaskLosses

# FAMO's offset inside the logarithms, and its logits' optimizer: torch.optim.Adam defaults
EPS = 1e-8
BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class FAMO(Weighting):
    """Liu, Liu, Jin, Stone & Liu (2023), "FAMO: Fast Adaptive Multitask Optimization" (NeurIPS),
    as in the official code (github.com/Cranial-XIX/FAMO, `FAMO.get_weighted_loss`/`update`).

    Forward, with z = softmax(xi) over the present tasks and D_i = L_i - min_i + 1e-8:

        total = sum_i w_i·z_i·log(D_i) / c,   c = sum_i z_i / D_i   (c not differentiated)

    so d total / d L_i = w_i·z_i / (c·D_i): with fixed weights w_i = 1 (`tasks.<name>.weight`)
    the step is a convex combination of the task gradients.

    After the optimizer step (`after_batch`: one more forward of the same batch, without
    gradients, then `after_update` with its losses before and after, rank-averaged):
    delta_i = log(D_i before) - log(D_i after); the logits' gradient is the softmax Jacobian
    applied to delta, g_i = z_i·(delta_i - sum_j z_j·delta_j), and xi takes one Adam step (lr,
    betas (0.9, 0.999), eps 1e-8) on g + gamma·xi (Adam's coupled weight decay gamma), as the
    official code's `torch.optim.Adam([xi], lr, weight_decay=gamma)` does. xi and Adam's moments
    are buffers: the main optimizer never sees them and checkpoints carry them.

    Absent tasks stay out of the softmax of that step, and their logits and moments do not move
    (each task counts its own Adam steps for the bias correction; with every task in every
    batch this is exactly the official update). `min_losses` (a number, or one per task) must lie
    below the losses, as log(L_i - min_i) needs.

    Args:
        weights: each task's fixed weight (`tasks.<name>.weight`).
        lr: the Adam learning rate of the task logits (> 0).
        gamma: the logits' (coupled) weight decay (>= 0).
        min_losses: a lower bound of the task losses: one number, or one per task.
    """

    name = "famo"

    def __init__(self, weights: Sequence[float], *, lr: float, gamma: float,
                 min_losses: float | Sequence[float]) -> None:
        super().__init__(weights)
        self.lr = check_number("weighting.lr", lr, low=0, open_low=True)
        self.gamma = check_number("weighting.gamma", gamma, low=0)
        n = self.num_tasks
        floors = (list(min_losses) if isinstance(min_losses, Sequence) and not isinstance(min_losses, str)
                  else [min_losses] * n)
        if len(floors) != n:
            raise MtstError(f"weighting.min_losses: {len(floors)} values for {n} tasks; "
                            f"give one number or one per task")
        floors = [check_number("weighting.min_losses", v) for v in floors]
        self.register_buffer("min_losses", torch.tensor(floors), persistent=False)
        self.register_buffer("logits", torch.zeros(n))
        self.register_buffer("exp_avg", torch.zeros(n))
        self.register_buffer("exp_avg_sq", torch.zeros(n))
        self.register_buffer("adam_steps", torch.zeros(n))
        # the last training batch's (rank-averaged losses, present, step), until `after_batch`
        # compares them with the losses after the update: not state to checkpoint
        self._before: tuple[torch.Tensor, torch.Tensor, int] | None = None

    def task_weights(self, present: torch.Tensor) -> torch.Tensor:
        """z = softmax(xi) over the present tasks [N], 0 for absent ones."""
        return present_softmax(self.logits, present)

    def _shifted(self, losses: torch.Tensor, present: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """D = L - min + 1e-8; an absent task's (possibly non-finite) loss is replaced by 1."""
        floor = self.min_losses.to(dtype)
        safe = torch.where(present, losses.to(dtype), floor + 1)
        return safe - floor + EPS

    def forward(self, losses: torch.Tensor, present: torch.Tensor,
                reference: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The total above. `reference` (the rank-averaged losses and which tasks any rank
        holds) fixes z, c and D under DDP: the objective is not linear in the losses, so each
        rank's d total / d L_i must come from the global batch's losses, not its own share's,
        for the averaged gradients to be the global batch's. Without it: this batch's own."""
        dtype = torch.promote_types(losses.dtype, torch.float32)
        ref_losses, ref_present = reference if reference is not None else (losses.detach(), present)
        shifted = self._shifted(ref_losses, ref_present, dtype)
        z = self.task_weights(ref_present).to(dtype)
        c = (z / shifted).sum().detach()
        c = torch.where(c > 0, c, torch.ones_like(c))  # no task present: c stays finite
        scaled = self.weights.to(dtype) * z / c
        value = torch.where(ref_present, scaled * torch.log(shifted), torch.zeros_like(scaled)).sum()
        # the value at the reference losses, and the gradient sum_i scaled_i / D_i · dL_i
        slope = scaled / shifted * (losses.to(dtype) - losses.detach().to(dtype))
        return value + torch.where(present & ref_present, slope, torch.zeros_like(slope)).sum()

    def total(self, losses: TaskLosses) -> torch.Tensor:
        return self(losses.values, losses.present, reference=losses.rank_mean())

    def after_step(self, losses: torch.Tensor, present: torch.Tensor, step: int) -> None:
        self._before = (losses, present, step)  # under accumulation: the window's last micro-batch

    def after_batch(self, losses_now: Callable[[], TaskLosses], step: int) -> None:
        """Once the optimizer has stepped since `after_step` (after accumulation, only then):
        the batch's losses again, and `after_update` on the change."""
        if self._before is None or step == self._before[2]:
            return
        (before, present, _), self._before = self._before, None
        with torch.no_grad():
            losses = losses_now()
        after, seen = losses.rank_mean()
        self.after_update(before, after, present & seen)

    @torch.no_grad()
    def after_update(self, losses_before: torch.Tensor, losses_after: torch.Tensor,
                     present: torch.Tensor) -> None:
        if not bool(present.any()):
            return
        dtype = self.logits.dtype
        delta = (torch.log(self._shifted(losses_before.detach(), present, dtype))
                 - torch.log(self._shifted(losses_after.detach(), present, dtype)))
        z = self.task_weights(present)
        grad = z * (delta - (z * delta).sum()) + self.gamma * self.logits
        steps = self.adam_steps + present.to(dtype)
        exp_avg = BETAS[0] * self.exp_avg + (1 - BETAS[0]) * grad
        exp_avg_sq = BETAS[1] * self.exp_avg_sq + (1 - BETAS[1]) * grad * grad
        count = steps.clamp_min(1)
        bias1 = 1 - BETAS[0] ** count
        bias2 = 1 - BETAS[1] ** count
        logits = self.logits - (self.lr / bias1) * exp_avg / (exp_avg_sq.sqrt() / bias2.sqrt() + ADAM_EPS)
        for buffer, new in ((self.logits, logits), (self.exp_avg, exp_avg),
                            (self.exp_avg_sq, exp_avg_sq), (self.adam_steps, steps)):
            buffer.copy_(torch.where(present, new, buffer))
