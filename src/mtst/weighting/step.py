"""What a weighting method gets each training step and what it hands back (`Weighting.step`).

The training module builds a `Forward` for each batch and asks the method for an `Objective`;
the method decides which forward it needs: a loss-level method takes `Forward.losses()` (the
ordinary forward), a gradient-level one `Forward.cut()` (the forward cut at the shared
representation, so that it can differentiate each task's loss there). So the module holds no
per-method branch, and a method that needs something new asks for it here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.distributed as dist

from mtst.data.batching import world_and_rank


def world() -> int:
    return world_and_rank()[0]


def reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if world() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def rank_mean_losses(losses: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per task: the mean loss over the ranks whose batch held it, and whether any rank did;
    what every method's state is updated from, so that the state is the same on every rank."""
    dtype = torch.promote_types(losses.dtype, torch.float32)  # bf16 losses reduce in fp32
    stacked = torch.stack([losses.detach().to(dtype) * present, present.to(dtype)])
    stacked = reduce_sum(stacked)
    seen = stacked[1] > 0
    return torch.where(seen, stacked[0] / stacked[1].clamp(min=1), torch.zeros_like(stacked[0])), seen


@dataclass
class TaskLosses:
    """One batch's loss for every task.

    Args:
        values: [N] each task's loss, an exact 0 where the batch lacks the task.
        present: [N] bool, which tasks the batch holds.
        names: the N task names, in the order of `values`.

    `rank_mean()` is computed on first use and kept: under DDP it is an all-reduce, which the
    methods without loss state (fixed, uncertainty, rlw) never pay for.
    """

    values: torch.Tensor
    present: torch.Tensor
    names: tuple[str, ...]
    _rank_mean: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, init=False, repr=False)

    def rank_mean(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(the rank-averaged loss per task, whether any rank holds it): `rank_mean_losses`."""
        if self._rank_mean is None:
            self._rank_mean = rank_mean_losses(self.values, self.present)
        return self._rank_mean

    def detached(self) -> dict[str, torch.Tensor]:
        """Each present task's loss, detached (what `train/<task>/loss` logs)."""
        return {n: v.detach() for n, v, p in zip(self.names, self.values, self.present, strict=True) if p}


@dataclass
class SharedPart:
    """One forward cut at the shared representation: what a gradient-level method differentiates.

    Args:
        losses: the task losses of the heads run on the cut.
        states: the encoder's token states (one tensor per side of the batch: sentences, and the
            second sentences of its pairs), still in the encoder's graph.
        cuts: detached copies of `states` (leaves that require grad) the heads ran on; each task's
            gradient on the representation is its loss's gradient on these.
        parameters: the encoder parameters that train now (never empty).
        rows: [N, B] bool, which rows of the batch carry each task.
        loss_scale: fp16's loss scale (1.0 otherwise): task gradients are taken at that scale so
            they do not underflow, and divided back.
    """

    losses: TaskLosses
    states: list[torch.Tensor]
    cuts: list[torch.Tensor]
    parameters: list[torch.nn.Parameter]
    rows: torch.Tensor
    loss_scale: float = 1.0


class Forward(Protocol):
    """One training batch, run the way the method asks (the training module builds it).

    `losses()` runs the ordinary forward (cached encoder outputs when the encoder is frozen);
    `cut()` the forward cut at the shared representation, or None (nothing run) where no encoder
    parameter trains; `freeze` names the freeze strategy (for messages).
    """

    freeze: str

    def losses(self) -> TaskLosses: ...

    def cut(self) -> SharedPart | None: ...


@dataclass
class Objective:
    """What one training step back-propagates, and what it logs.

    Args:
        backward: the tensor whose gradient is the step's update (a loss-level method's total,
            or a gradient-level method's surrogate, whose gradient is the combination).
        loss: sum_i w_i·L_i with the configured weights over the present tasks: `train/loss`
            under every method, so that runs with different methods log figures that compare.
        losses: the batch's task losses (`train/<task>/loss`).
        total: a loss-level total that is not `loss` (learned or varying weights, FAMO's log
            objective), logged as `train/objective`; None otherwise.
    """

    backward: torch.Tensor
    loss: torch.Tensor
    losses: TaskLosses
    total: torch.Tensor | None = None

    def logs(self) -> dict[str, torch.Tensor]:
        """The step's loss terms: `train/loss`, `train/objective` (where set), `train/<task>/loss`."""
        extra = {} if self.total is None else {"train/objective": self.total.detach()}
        return {"train/loss": self.loss.detach(), **extra,
                **{f"train/{n}/loss": v for n, v in self.losses.detached().items()}}
