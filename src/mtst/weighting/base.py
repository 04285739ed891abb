"""What a multi-task weighting method is: a small module that turns the tasks' losses, or their
gradients, into one update of the shared parameters.

Two levels:

- ``loss``: `forward(losses, present)` returns the total to back-propagate (one backward pass).
- ``gradient``: the training module computes each present task's gradient on the shared part
  (the shared representation, or the shared parameters: `model.loss.grad_on`), hands their Gram
  matrix to `coefficients`, and the shared part receives ``sum_i c_i g_i``; each head still gets
  its own task's gradient (times its weight). Methods are functions of the Gram matrix so that
  under DDP every rank can compute the same coefficients from globally reduced inner products.

Tasks absent from a batch never enter a combination: `coefficients` sees only the present ones.
Every method state that changes during training (loss histories, learned logits) is a buffer or
parameter, so it is checkpointed and resumes exactly; updates read rank-averaged losses, so the
state is identical on every rank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from mtst.errors import MtstError, choices_text


class Weighting(nn.Module):
    name: ClassVar[str]
    level: ClassVar[str] = "loss"
    options: ClassVar[dict[str, Any]] = {}  # hyper-parameters and their defaults (conf: model.loss.<name>)

    def __init__(self, weights: Sequence[float], **settings: Any) -> None:
        super().__init__()
        unknown = sorted(set(settings) - set(self.options))
        if unknown:
            raise MtstError(f"model.loss.{self.name}.{unknown[0]}: no such setting; "
                            f"{self.name} has {choices_text(self.options) or 'none'}")
        self.settings = {**self.options, **settings}
        self.register_buffer("weights", torch.tensor([float(w) for w in weights]), persistent=False)

    @property
    def num_tasks(self) -> int:
        return len(self.weights)

    def forward(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """`losses` [N] (an exact 0 where a task is absent), `present` [N] bool -> the total.

        Here the weighted sum; for a gradient-level method it is what the heads train on, and
        the shared part's gradient comes from `coefficients`.
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

    def coefficients(self, gram: torch.Tensor, losses: torch.Tensor, present: torch.Tensor,
                     step: int) -> torch.Tensor:
        """Gradient level: c [N] (0 for absent tasks) such that the shared part receives
        sum_i c_i g_i. `gram` [N, N] float64 holds <g_i, g_j> of the weighted task gradients
        (rows/columns of absent tasks are 0), `losses` [N] the rank-averaged losses."""
        raise NotImplementedError

    def after_step(self, losses: torch.Tensor, present: torch.Tensor, step: int) -> None:
        """Once per training micro-batch, with its rank-averaged losses: update the method's
        state. Under `accumulate_grad_batches=k` that is k calls with the same `step`: a state
        that averages losses (DWA's epoch means) takes each micro-batch, the same mean as
        without accumulation; a state that moves once per optimizer step keys on `step`
        (GradNorm's weights; FAMO updates in `after_update`, once per optimizer step)."""

    def after_update(self, losses_before: torch.Tensor, losses_after: torch.Tensor,
                     present: torch.Tensor) -> None:
        """Methods with `needs_losses_after_update` (FAMO): the same batch's losses before and
        after the optimizer step (an extra forward without gradients), rank-averaged."""

    needs_losses_after_update: ClassVar[bool] = False
    # a total not linear in the losses (FAMO): `forward` also takes `reference=(rank-averaged
    # losses, present on any rank)`, so that DDP's averaged gradients are the global batch's
    needs_rank_mean_losses: ClassVar[bool] = False

    def set_step(self, step: int) -> None:
        """Before each training forward: the global optimizer step, for methods whose weights
        are a function of it (`rlw` draws them from a generator seeded with it)."""

    def end_epoch(self) -> None:
        """At each training epoch's end: methods that work on per-epoch losses (`dwa`) roll
        their history here."""


def check_number(name: str, key: str, value: Any, low: float | None = None,
                 high: float | None = None, open_low: bool = False) -> float:
    """`model.loss.<name>.<key>` as a float within bounds, or a one-line error."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if ok and low is not None:
        ok = value > low if open_low else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bound = ("" if low is None else f" {'>' if open_low else '>='} {low}") + (
            "" if high is None else f" and <= {high}")
        raise MtstError(f"model.loss.{name}.{key}={value!r}: expected a number{bound}")
    return float(value)


def present_softmax(logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Softmax over the present tasks' entries; 0 for absent tasks (all 0 when none is)."""
    z = torch.softmax(logits.masked_fill(~present, float("-inf")), dim=0)
    return torch.where(present, z, torch.zeros_like(z))


def check_integer(name: str, key: str, value: Any, low: int | None = None) -> int:
    """`model.loss.<name>.<key>` as an integer >= `low`, or a one-line error."""
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        bound = "" if low is None else f" >= {low}"
        raise MtstError(f"model.loss.{name}.{key}={value!r}: expected an integer{bound}")
    return value


def present_mask(present: torch.Tensor | Mapping[str, bool]) -> torch.Tensor:
    return present if isinstance(present, torch.Tensor) else torch.tensor(list(present.values()))
