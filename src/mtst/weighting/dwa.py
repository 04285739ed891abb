"""`dwa`: Dynamic Weight Average (loss level), weights from how fast each task's epoch loss falls."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtst.components import check_number
from mtst.weighting.base import Weighting, present_softmax


class DWA(Weighting):
    """Liu, Johns & Davison (2019), "End-to-end multi-task learning with attention" (CVPR),
    Dynamic Weight Average:

        w_i(t) = K·exp(r_i(t-1)/T) / sum_j exp(r_j(t-1)/T),   r_i(t-1) = L_i(t-1) / L_i(t-2)

    with L_i(t) task i's loss averaged over epoch t, and the task's fixed weight
    (`tasks.<name>.weight`) as a factor. The paper averages per epoch, so the loss of each step
    is summed in `after_step` (only where the task is in the batch) and the history rolls in
    `end_epoch`. A task with fewer than two epochs of history has r_i = 1, hence all weights are
    1 during the first two epochs, as in the paper.

    Tasks absent from the batch contribute nothing: the softmax runs over the K present tasks
    only, so the present tasks' DWA weights sum to K. A task never seen in an epoch keeps the
    history it had. State (running sums, history) is in persistent buffers: a checkpoint resumes
    it exactly.


    Args:
        weights: each task's fixed weight (`tasks.<name>.weight`).
        temperature: the softmax temperature T of the epoch loss ratios (> 0).
    """

    name = "dwa"

    def __init__(self, weights: Sequence[float], *, temperature: float) -> None:
        super().__init__(weights)
        self.temperature = check_number("weighting.temperature", temperature, low=0, open_low=True)
        n = self.num_tasks
        self.register_buffer("epoch_sum", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("epoch_steps", torch.zeros(n, dtype=torch.float64))
        # row 0: L_i(t-1), row 1: L_i(t-2); `epochs_seen` counts the epochs recorded per task
        self.register_buffer("history", torch.zeros(2, n, dtype=torch.float64))
        self.register_buffer("epochs_seen", torch.zeros(n, dtype=torch.long))

    def task_weights(self, present: torch.Tensor) -> torch.Tensor:
        """DWA weight times fixed weight per task [N] (float64), 0 for absent tasks."""
        tiny = torch.finfo(torch.float64).tiny
        ratio = self.history[0] / self.history[1].clamp_min(tiny)
        ratio = torch.where(self.epochs_seen >= 2, ratio, torch.ones_like(ratio))
        dwa = present.sum() * present_softmax(ratio / self.temperature, present)
        return dwa * self.weights.to(torch.float64)

    def forward(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(losses.dtype, torch.float32)
        weighted = losses.to(dtype) * self.task_weights(present).to(dtype)
        return torch.where(present, weighted, torch.zeros_like(weighted)).sum()

    @torch.no_grad()
    def after_step(self, losses: torch.Tensor, present: torch.Tensor, step: int) -> None:
        losses = losses.detach().to(torch.float64)
        self.epoch_sum += torch.where(present, losses, torch.zeros_like(losses))
        self.epoch_steps += present.to(torch.float64)

    @torch.no_grad()
    def end_epoch(self) -> None:
        seen = self.epoch_steps > 0
        mean = self.epoch_sum / self.epoch_steps.clamp_min(1)
        self.history[1] = torch.where(seen, self.history[0], self.history[1])
        self.history[0] = torch.where(seen, mean, self.history[0])
        self.epochs_seen += seen.long()
        self.epoch_sum.zero_()
        self.epoch_steps.zero_()
