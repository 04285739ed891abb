"""Gradient-level task weighting inside Lightning's automatic optimisation, DDP included.

The network is cut at the shared representation, the encoder's token states (of both sentences
of a pair): the heads (and pooling) run on a detached copy (`step.SharedPart`, built by the
freeze strategy's cut forward), so each task's loss gives its gradient g_i on the representation
without touching the encoder. Then, by `model.loss.grad_on`:

- ``representation`` (the default, cheap): the Gram matrix of the g_i (summed over ranks, so it
  is the Gram of the global batch's representation gradients) gives the method's coefficients c;
  the encoder receives sum_i c_i g_i through one backward pass.
- ``parameters`` (exact): each g_i is carried back to the trainable encoder parameters (one
  backward per task), averaged over ranks per task, and combined there.

Either way the step returns one surrogate loss whose gradient is exactly the combination (heads:
their own weighted task loss; encoder: sum_i c_i g_i), so gradient clipping, accumulation,
mixed precision and DDP's own averaging apply unchanged; every rank computes the same c.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mtst.weighting.step import SharedPart, reduce_sum, world

log = logging.getLogger("mtst")
MIX_CHECK_STEPS = 10  # steps without a batch of two tasks before a gradient method warns


def task_gradients(cuts: Sequence[torch.Tensor], weighted: Sequence[torch.Tensor],
                   present: Sequence[bool], scale: float) -> list[list[torch.Tensor]]:
    """d(w_i L_i)/d(token states) for each task and cut (zeros for an absent task)."""
    grads = []
    for loss, here in zip(weighted, present, strict=True):
        if not here or not loss.requires_grad:
            grads.append([torch.zeros_like(c) for c in cuts])
            continue
        found = torch.autograd.grad(loss * scale, list(cuts), retain_graph=True, allow_unused=True)
        grads.append([torch.zeros_like(c) if g is None else g / scale
                      for g, c in zip(found, cuts, strict=True)])
    return grads


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One vector, at least fp32 (half-precision gradients are combined in fp32)."""
    flat = torch.cat([t.flatten() for t in tensors])
    return flat.float() if flat.dtype in (torch.float16, torch.bfloat16) else flat


def gram(vectors: torch.Tensor) -> torch.Tensor:
    flat = vectors.double()
    return flat @ flat.T


def parameter_gradients(states: Sequence[torch.Tensor], per_cut: list[list[torch.Tensor]],
                        params: list[torch.nn.Parameter], here: Sequence[bool]) -> torch.Tensor:
    """[N, P]: each task's representation gradient carried back to the trainable encoder
    parameters (one backward per present task; zeros for the others), averaged over ranks:
    each task's gradient of the global batch."""
    vectors = []
    for grads, task_here in zip(per_cut, here, strict=True):
        if not task_here:
            vectors.append(_flat([torch.zeros_like(p) for p in params]))
            continue
        found = torch.autograd.grad(list(states), params, grad_outputs=grads, retain_graph=True,
                                    allow_unused=True)
        vectors.append(_flat([torch.zeros_like(p) if g is None else g
                              for g, p in zip(found, params, strict=True)]))
    return reduce_sum(torch.stack(vectors)) / world()


def combined_loss(shared: SharedPart, weights: torch.Tensor,
                  coefficients: Callable[[torch.Tensor], torch.Tensor],
                  on_parameters: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The surrogate whose gradient is the combination, and the weighted total sum_i w_i L_i.

    Args:
        shared: the forward cut at the representation, with its task losses and the encoder
            parameters that train.
        weights: [N] the tasks' fixed weights; the task gradients are those of w_i·L_i.
        coefficients: the method, Gram matrix [N, N] of the global batch's task gradients -> c [N].
        on_parameters: combine on the parameters (`grad_on=parameters`), else on the
            representation.

    Returns:
        (surrogate to back-propagate, the weighted total to log, detached).
    """
    losses, present = shared.losses.values, shared.losses.present
    weighted = losses * weights.to(losses.dtype)
    heads_total = torch.where(present, weighted, torch.zeros_like(weighted)).sum()
    here = present.tolist()
    per_cut = task_gradients(shared.cuts, list(weighted), here, shared.loss_scale)  # [task][cut]
    if on_parameters:
        params = shared.parameters
        stacked = parameter_gradients(shared.states, per_cut, params, here)
        combined = (coefficients(gram(stacked)).to(stacked.dtype)[:, None] * stacked).sum(0)
        surrogate, offset = heads_total, 0
        for p in params:
            piece = combined[offset : offset + p.numel()].view_as(p).to(p.dtype)
            surrogate = surrogate + (p * piece.detach()).sum()
            offset += p.numel()
    else:
        flat = torch.stack([_flat(grads) for grads in per_cut])
        # the global batch's representation is every rank's, each scaled 1/world by DDP's mean
        c = coefficients(reduce_sum(gram(flat)) / world()**2)
        surrogate = heads_total
        for k, states in enumerate(shared.states):
            direction = sum(float(ci) * grads[k] for ci, grads in zip(c, per_cut, strict=True))
            surrogate = surrogate + (states * direction.detach().to(states.dtype)).sum()
    return surrogate, heads_total.detach()


def conflict_report(shared: SharedPart, weights: torch.Tensor) -> dict[str, float]:
    """`train/grad_cos/<a>__<b>` between the tasks' gradients on the trainable encoder parameters
    (averaged over ranks) and `train/grad_norm/<task>`: gradient conflict before choosing a method.

    Args:
        shared: a forward cut at the representation (`step.SharedPart`).
        weights: [N] the tasks' fixed weights; the gradients are those of w_i·L_i.
    """
    losses, names = shared.losses.values, shared.losses.names
    present = [bool(x) for x in reduce_sum(torch.tensor(shared.losses.present.tolist(), dtype=torch.float32,
                                                          device=losses.device)).gt(0).tolist()]
    per_cut = task_gradients(shared.cuts, list(losses * weights.to(losses.dtype)), present, 1.0)
    matrix = gram(parameter_gradients(shared.states, per_cut, shared.parameters, present))
    norms = matrix.diagonal().clamp(min=0).sqrt()
    out: dict[str, Any] = {}
    for i, a in enumerate(names):
        if not present[i]:
            continue
        out[f"train/grad_norm/{a}"] = float(norms[i])
        for j in range(i + 1, len(names)):
            if present[j] and norms[i] > 0 and norms[j] > 0:
                out[f"train/grad_cos/{a}__{names[j]}"] = float(matrix[i, j] / (norms[i] * norms[j]))
    return out


class MixCheck:
    """Warns once when the first steps gave a gradient method nothing to combine: no batch
    held two tasks (one corpus per batch under round_robin or temperature sampling), or,
    with `grad_on=representation`, no example held two (disjoint corpora: each task's
    gradient lives on its own rows' token states, so the gradients are orthogonal).

    Args:
        method: the method's name (for the message).
        grad_on: where it combines (`model.loss.grad_on`).
    """

    def __init__(self, method: str, grad_on: str) -> None:
        self.method, self.grad_on = method, grad_on
        self.done = False

    def __call__(self, rows: torch.Tensor, step: int) -> None:
        """`rows` [N, B]: which rows of this batch carry each task; `step`: the global step."""
        if self.done or len(rows) < 2:
            return
        if self.grad_on == "representation" and bool((rows.sum(0) > 1).any()):
            self.done = True  # a row with two tasks: their gradients can meet there
        elif self.grad_on == "parameters" and int(rows.any(1).sum()) > 1:
            self.done = True
        elif step + 1 >= MIX_CHECK_STEPS:
            self.done = True
            if self.grad_on == "representation" and int(rows.any(1).sum()) > 1:
                log.warning("weighting=%s with grad_on=representation: in the first %d "
                            "batches no example carries two tasks, so the tasks' gradients on the "
                            "token states never overlap (their cosine is 0, their Gram diagonal) "
                            "and the method only rescales them; for tasks from different corpora "
                            "use model.loss.grad_on=parameters", self.method, MIX_CHECK_STEPS)
            else:
                log.warning("weighting=%s: none of the first %d training batches held "
                            "two tasks, so there were no gradients to combine; when tasks come "
                            "from different corpora use data.sampling=balanced (or proportional)",
                            self.method, MIX_CHECK_STEPS)
