"""Freeze strategies: which parameters train, at which learning rate, epoch by epoch."""

from __future__ import annotations

from typing import Any

import torch

from mtst.training.optim import head_and_backbone_groups


class FreezeStrategy:
    """`none`: everything trains. Subclasses override the hooks they need."""

    name = "none"

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    def loss_settings(self, loss: dict[str, Any]) -> dict[str, Any]:
        return dict(loss)

    def param_groups(self, model, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        return head_and_backbone_groups(model, cfg)

    def apply(self, model, epoch: int) -> None:
        """Set `requires_grad` (and train/eval modes) for this epoch; must depend on epoch only."""
        for param in model.parameters():
            param.requires_grad_(True)

    def forward(self, model, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return model(batch["input_ids"], batch["attention_mask"])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint.setdefault("mtst", {})["freeze"] = {"name": self.name, **self.settings}


STRATEGIES: dict[str, type[FreezeStrategy]] = {"none": FreezeStrategy}


def build_freeze_strategy(cfg: dict[str, Any]) -> FreezeStrategy:
    settings = dict(cfg)
    name = settings.pop("name", "none")
    if name not in STRATEGIES:
        raise ValueError(f"freeze strategy '{name}' unknown; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name](**settings)
