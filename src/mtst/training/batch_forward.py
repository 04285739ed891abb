"""`BatchForward`: one training batch's forwards, as the weighting method asks for them.

The module hands one to `Weighting.step` each step (and to `Weighting.after_batch`); nothing
runs until the method asks: the ordinary forward (`losses`), or the forward cut at the shared
representation (`cut`) for a gradient-level method.
"""

from __future__ import annotations

from typing import Any

import torch

from mtst.freezing.cut import cut_forward
from mtst.weighting.step import SharedPart, TaskLosses


def loss_scale(trainer: Any) -> float:
    """fp16 training scales the loss (GradScaler): 1.0 otherwise, or without a trainer."""
    scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
    return float(scaler.get_scale()) if scaler is not None else 1.0


class BatchForward:
    """`weighting.step.Forward` over one batch of a `MultiTaskModule`.

    Args:
        module: the module (its network, tasks and freeze strategy run the forward).
        batch: the collated training batch.
    """

    def __init__(self, module, batch: dict[str, torch.Tensor]) -> None:
        self.module, self.batch = module, batch
        self.freeze = module.freezer.name

    def losses(self) -> TaskLosses:
        module = self.module
        outputs = module.encode_batch(self.batch, for_loss=True)
        return TaskLosses(*module.task_losses(self.batch, outputs), tuple(module.tasks))

    def cut(self) -> SharedPart | None:
        module, batch = self.module, self.batch
        params = [p for p in module.net.encoder.parameters() if p.requires_grad]
        if not params or module.freezer.encoder_frozen:
            return None
        states, cuts, outputs = cut_forward(module.freezer, module, batch)
        losses = TaskLosses(*module.task_losses(batch, outputs), tuple(module.tasks))
        rows = torch.stack([task.has(batch) for task in module.tasks.values()])
        return SharedPart(losses, states, cuts, params, rows,
                          loss_scale(module.attached_trainer()))
