"""Gradient-level task weighting inside Lightning's automatic optimisation, DDP included.

The network is cut at the shared representation, the encoder's token states (of both sentences
of a pair): the heads (and pooling) run on a detached copy, so each task's loss gives its
gradient g_i on the representation without touching the encoder. Then, by `model.loss.grad_on`:

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
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from mtst.data.batching import world_and_rank

log = logging.getLogger("mtst")
MIX_CHECK_STEPS = 10  # steps without a batch of two tasks before a gradient method warns


def _world() -> int:
    return world_and_rank()[0]


def reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if _world() > 1:
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


def shared_parameters(module) -> list[torch.nn.Parameter]:
    return [p for p in module.net.encoder.parameters() if p.requires_grad]


def loss_scale(module) -> float:
    """fp16 training scales the loss (GradScaler): task gradients are taken at the same scale so
    they do not underflow, and divided back."""
    plugin = getattr(getattr(module, "_trainer", None), "precision_plugin", None)
    scaler = getattr(plugin, "scaler", None)
    return float(scaler.get_scale()) if scaler is not None else 1.0


class CutForward:
    """Encoder outputs with the graph cut at the token states, and the heads run on the cut."""

    def __init__(self, module, batch: dict[str, torch.Tensor]) -> None:
        net, freezer = module.net, module.freezer
        states, _ = freezer.encoder_states(module, batch["input_ids"], batch["attention_mask"],
                                           batch["example_index"], "")
        self.states = [states]
        self.cuts = [states.detach().requires_grad_()]
        embeddings = net.encoder.pooling(self.cuts[0], batch["attention_mask"])
        self.outputs = net.run_heads(self.cuts[0], embeddings)
        rows = batch["pair_rows"]
        if rows.numel():
            states_b, _ = freezer.encoder_states(module, batch["input_ids_b"], batch["attention_mask_b"],
                                                 batch["example_index"][rows], "/b")
            self.states.append(states_b)
            self.cuts.append(states_b.detach().requires_grad_())
            self.outputs["embeddings_b"] = net.encoder.pooling(self.cuts[1], batch["attention_mask_b"])
        else:
            self.outputs["embeddings_b"] = embeddings[:0]

    def task_gradients(self, weighted: Sequence[torch.Tensor], present: Sequence[bool],
                       scale: float) -> list[list[torch.Tensor]]:
        """d(w_i L_i)/d(token states) for each task (zeros for an absent one)."""
        grads = []
        for loss, here in zip(weighted, present, strict=True):
            if not here or not loss.requires_grad:
                grads.append([torch.zeros_like(c) for c in self.cuts])
                continue
            found = torch.autograd.grad(loss * scale, self.cuts, retain_graph=True, allow_unused=True)
            grads.append([torch.zeros_like(c) if g is None else g / scale
                          for g, c in zip(found, self.cuts, strict=True)])
        return grads


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One vector, at least fp32 (half-precision gradients are combined in fp32)."""
    flat = torch.cat([t.flatten() for t in tensors])
    return flat.float() if flat.dtype in (torch.float16, torch.bfloat16) else flat


def gram(vectors: torch.Tensor) -> torch.Tensor:
    flat = vectors.double()
    return flat @ flat.T


def parameter_gradients(cut: CutForward, per_cut: list[list[torch.Tensor]],
                        params: list[torch.nn.Parameter], here: Sequence[bool]) -> torch.Tensor:
    """[N, P]: each task's representation gradient carried back to the trainable encoder
    parameters (one backward per present task; zeros for the others), averaged over ranks:
    each task's gradient of the global batch."""
    vectors = []
    for grads, task_here in zip(per_cut, here, strict=True):
        if not task_here:
            vectors.append(_flat([torch.zeros_like(p) for p in params]))
            continue
        found = torch.autograd.grad(cut.states, params, grad_outputs=grads, retain_graph=True,
                                    allow_unused=True)
        vectors.append(_flat([torch.zeros_like(p) if g is None else g
                              for g, p in zip(found, params, strict=True)]))
    return reduce_sum(torch.stack(vectors)) / _world()


def combined_loss(module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor,
                                                                      dict[str, torch.Tensor]]:
    """(surrogate loss to back-propagate, the weighted total to log, each present task's loss)."""
    method = module.loss_fn
    cut = CutForward(module, batch)
    names = list(module.tasks)
    losses = torch.stack([module.tasks[n].loss(batch, cut.outputs) for n in names])
    present = torch.stack([module.tasks[n].has(batch).any() for n in names])
    weighted = losses * method.weights.to(losses.dtype)
    heads_total = torch.where(present, weighted, torch.zeros_like(weighted)).sum()
    mean_losses, seen = rank_mean_losses(losses, present)
    here = present.tolist()
    scale = loss_scale(module)
    per_cut = cut.task_gradients(list(weighted), here, scale)  # [task][cut]
    if module.grad_on == "parameters":
        params = shared_parameters(module)
        stacked = parameter_gradients(cut, per_cut, params, here)
        coefficients = method.coefficients(gram(stacked), mean_losses, seen, module.global_step)
        combined = (coefficients.to(stacked.dtype)[:, None] * stacked).sum(0)
        surrogate, offset = heads_total, 0
        for p in params:
            piece = combined[offset : offset + p.numel()].view_as(p).to(p.dtype)
            surrogate = surrogate + (p * piece.detach()).sum()
            offset += p.numel()
    else:
        flat = torch.stack([_flat(grads) for grads in per_cut])
        # the global batch's representation is every rank's, each scaled 1/world by DDP's mean
        coefficients = method.coefficients(reduce_sum(gram(flat)) / _world()**2, mean_losses, seen,
                                           module.global_step)
        surrogate = heads_total
        for k, states in enumerate(cut.states):
            direction = sum(float(c) * grads[k] for c, grads in zip(coefficients, per_cut, strict=True))
            surrogate = surrogate + (states * direction.detach().to(states.dtype)).sum()
    method.after_step(mean_losses, seen, module.global_step)
    kept = {n: v.detach() for n, v, p in zip(names, losses, here, strict=True) if p}
    return surrogate, heads_total.detach(), kept


def conflict_report(module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """`train/grad_cos/<a>__<b>` between the tasks' gradients on the trainable encoder parameters
    (averaged over ranks) and `train/grad_norm/<task>`: gradient conflict before choosing a method."""
    params = shared_parameters(module)
    if not params:
        return {}
    cut = CutForward(module, batch)
    names = list(module.tasks)
    losses = torch.stack([module.tasks[n].loss(batch, cut.outputs) for n in names])
    present = [bool(module.tasks[n].has(batch).any()) for n in names]
    present = [bool(x) for x in reduce_sum(torch.tensor(present, dtype=torch.float32,
                                                          device=losses.device)).gt(0).tolist()]
    per_cut = cut.task_gradients(list(losses * module.loss_fn.weights.to(losses.dtype)), present, 1.0)
    matrix = gram(parameter_gradients(cut, per_cut, params, present))
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


def check_batches_mix_tasks(module, batch: dict[str, torch.Tensor]) -> None:
    """Warn once when the first steps gave a gradient method nothing to combine: no batch
    held two tasks (one corpus per batch under round_robin or temperature sampling), or,
    with `grad_on=representation`, no example held two (disjoint corpora: each task's
    gradient lives on its own rows' token states, so the gradients are orthogonal)."""
    if module._mix_checked or len(module.tasks) < 2:
        return
    has = torch.stack([batch[f"{n}.has"] for n in module.tasks])  # [tasks, rows]
    if module.grad_on == "representation" and bool((has.sum(0) > 1).any()):
        module._mix_checked = True  # a row with two tasks: their gradients can meet there
    elif module.grad_on == "parameters" and int(has.any(1).sum()) > 1:
        module._mix_checked = True
    elif module.global_step + 1 >= MIX_CHECK_STEPS:
        module._mix_checked = True
        if module.grad_on == "representation" and int(has.any(1).sum()) > 1:
            log.warning("model.loss.weighting=%s with grad_on=representation: in the first %d "
                        "batches no example carries two tasks, so the tasks' gradients on the "
                        "token states never overlap (their cosine is 0, their Gram diagonal) "
                        "and the method only rescales them; for tasks from different corpora "
                        "use model.loss.grad_on=parameters", module.loss_fn.name, MIX_CHECK_STEPS)
        else:
            log.warning("model.loss.weighting=%s: none of the first %d training batches held "
                        "two tasks, so there were no gradients to combine; when tasks come "
                        "from different corpora use data.sampling=balanced (or proportional)",
                        module.loss_fn.name, MIX_CHECK_STEPS)
