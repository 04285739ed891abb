"""What a multi-task weighting method is: a small module that turns the tasks' losses, or their
gradients, into one update of the shared parameters.

Every method takes its training step through one call, `step(forward, step) -> Objective`
(`weighting.step`): given this batch's forward, produce what to back-propagate. Two levels:

- ``loss``: `forward(losses, present)` returns the total to back-propagate (one backward pass).
- ``gradient`` (`gradient.GradientWeighting`): each present task's gradient on the shared part
  (the shared representation, or the shared parameters: `model.loss.grad_on`) is taken, their
  Gram matrix goes to `coefficients`, and the shared part receives ``sum_i c_i g_i``; each head
  still gets its own task's gradient (times its weight). Methods are functions of the Gram
  matrix so that under DDP every rank can compute the same coefficients from globally reduced
  inner products.

Tasks absent from a batch never enter a combination: `coefficients` sees only the present ones.
Every method state that changes during training (loss histories, learned logits) is a buffer or
parameter, so it is checkpointed and resumes exactly; updates read rank-averaged losses, so the
state is identical on every rank.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import torch
from torch import nn

from mtst.weighting.step import Forward, Objective, TaskLosses


class Weighting(nn.Module):
    """A multi-task weighting method. This base class combines as `fixed` does (the weighted
    sum of the present tasks' losses); a method overrides what it changes.

    Hydra builds a method from its `conf/weighting/<name>.yaml` (`_target_` and the class's
    keyword-only arguments, whose values live in that file only); the LightningModule adds the
    tasks' fixed weights, and a gradient-level method's `grad_on` (`build_weighting`).

    Args:
        weights: each task's fixed weight (`tasks.<name>.weight`), in the module's task order.

    Example:
        >>> from hydra.utils import instantiate
        >>> dwa = instantiate({"_target_": "mtst.weighting.dwa.DWA", "temperature": 2.0},
        ...                   weights=[1.0, 0.5])
        >>> dwa.name, dwa.num_tasks
        ('dwa', 2)
    """

    name: ClassVar[str]
    level: ClassVar[str] = "loss"

    def __init__(self, weights: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor([float(w) for w in weights]), persistent=False)

    @property
    def num_tasks(self) -> int:
        return len(self.weights)

    def step(self, forward: Forward, step: int) -> Objective:
        """The training step of a loss-level method: this batch's losses through the ordinary
        forward, their total back-propagated, and the method's state updated from the
        rank-averaged losses (by methods that keep one: `after_step`).

        Args:
            forward: this batch's forwards (`step.Forward`).
            step: the global optimizer step (the same on every micro-batch of one step).

        Returns:
            the `Objective`: the total, the weighted sum logged as `train/loss`, the task losses.
        """
        self.set_step(step)
        losses = forward.losses()
        total = self.total(losses)
        if self._tracks_losses:
            self.after_step(*losses.rank_mean(), step)
        if self.total_is_weighted_sum:
            return Objective(total, total, losses)
        return Objective(total, self.weighted_sum(losses.values.detach(), losses.present), losses, total)

    def total(self, losses: TaskLosses) -> torch.Tensor:
        """What `step` back-propagates: `forward` on the batch's losses."""
        return self(losses.values, losses.present)

    def forward(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """`losses` [N] (an exact 0 where a task is absent), `present` [N] bool -> the total.

        Here the weighted sum; for a gradient-level method it is what the heads train on where
        no encoder parameter trains.
        """
        return self.weighted_sum(losses, present)

    def weighted_sum(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """sum_i w_i·L_i over the present tasks with the configured weights: `train/loss` under
        every method, so that runs with different methods log figures that compare."""
        weighted = losses * self.weights.to(losses.dtype)
        return torch.where(present, weighted, torch.zeros_like(weighted)).sum()

    @property
    def total_is_weighted_sum(self) -> bool:
        """Whether the total back-propagated is `weighted_sum`. Where it is not (learned or
        varying weights, FAMO's log objective) it is logged apart as `train/objective`."""
        return type(self).forward is Weighting.forward

    @property
    def _tracks_losses(self) -> bool:
        """Whether `after_step` does anything: the others (fixed, uncertainty, rlw) skip the
        rank-averaged losses, one small all-reduce per step under DDP."""
        return type(self).after_step is not Weighting.after_step

    def after_step(self, losses: torch.Tensor, present: torch.Tensor, step: int) -> None:
        """Once per training micro-batch, with its rank-averaged losses: update the method's
        state. Under `accumulate_grad_batches=k` that is k calls with the same `step`: a state
        that averages losses (DWA's epoch means) takes each micro-batch, the same mean as
        without accumulation; a state that moves once per optimizer step keys on `step`
        (GradNorm's weights; FAMO updates in `after_update`, once per optimizer step)."""

    def after_batch(self, losses_now: Callable[[], TaskLosses], step: int) -> None:
        """After each training batch (`on_train_batch_end`), with a closure that recomputes the
        batch's losses (one more forward, without gradients) and the global step as it is now:
        under accumulation it has moved only once the optimizer stepped. FAMO compares the
        batch's losses before and after the update here; the others do nothing."""

    def after_update(self, losses_before: torch.Tensor, losses_after: torch.Tensor,
                     present: torch.Tensor) -> None:
        """FAMO: the same batch's losses before and after the optimizer step, rank-averaged
        (called from its `after_batch`)."""

    def set_step(self, step: int) -> None:
        """Before each training forward: the global optimizer step, for methods whose weights
        are a function of it (`rlw` draws them from a generator seeded with it)."""

    def end_epoch(self) -> None:
        """At each training epoch's end: methods that work on per-epoch losses (`dwa`) roll
        their history here."""


def present_softmax(logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Softmax over the present tasks' entries; 0 for absent tasks (all 0 when none is)."""
    z = torch.softmax(logits.masked_fill(~present, float("-inf")), dim=0)
    return torch.where(present, z, torch.zeros_like(z))


def present_mask(present: torch.Tensor | Mapping[str, bool]) -> torch.Tensor:
    return present if isinstance(present, torch.Tensor) else torch.tensor(list(present.values()))
