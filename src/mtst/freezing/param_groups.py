"""Optimizer parameter groups: which parameters train at which learning rate and weight decay.

Each freeze strategy's `param_groups` builds its groups from these (heads and learned loss
weights at `lr_head`, the encoder at `lr_backbone`, biases and norms without weight decay);
`mtst.training.optim.build_optimizer` hands them to AdamW.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

# the keys of model.optimizer: the learning rates and weight decay read here, the rest by
# `mtst.training.optim.build_optimizer` (AdamW and its warm-up/decay schedule)
OPTIMIZER_KEYS = (
    "lr_head",
    "lr_backbone",
    "weight_decay",
    "warmup_ratio",
    "warmup_steps",
    "betas",
    "eps",
    "fused",
)
NO_DECAY = (
    "bias",
    "LayerNorm.weight",
    "layer_norm.weight",
    "ln_1.weight",
    "ln_2.weight",
    "ln_f.weight",
)


def _decays(name: str, param: nn.Parameter) -> bool:
    return param.ndim > 1 and not any(name.endswith(s) for s in NO_DECAY)


def named_groups(
    group_name: str,
    named_params: Iterable[tuple[str, nn.Parameter]],
    lr: float,
    weight_decay: float,
) -> list[dict[str, Any]]:
    """One group with weight decay and one without (biases, norms), both at `lr`."""
    decay, no_decay = [], []
    for name, param in named_params:
        (decay if _decays(name, param) else no_decay).append(param)
    groups = [
        {"name": group_name, "params": decay, "lr": lr, "weight_decay": weight_decay},
        {"name": f"{group_name}_no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def evaluation_only(tasks: Mapping[str, Any]) -> list[str]:
    """The tasks without `train_files`: scored on val/test, never trained on."""
    return [name for name, task in tasks.items() if not task.data.split_files("train")]


def head_parameters(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Everything of the LightningModule outside the shared encoder: the task heads and the
    loss weighting's own parameters (uncertainty weighting's log-variances). The heads of
    evaluation-only tasks are left out: their loss is an in-graph zero, so in AdamW only the
    weight decay would move them, shrinking heads that never train."""
    untrained = tuple(f"net.heads.{name}." for name in evaluation_only(module.tasks))
    return [
        (n, p)
        for n, p in module.named_parameters()
        if not n.startswith("net.encoder.") and not n.startswith(untrained)
    ]


def head_and_backbone_groups(module: nn.Module, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Heads (and learned loss weights) at `lr_head`; the whole encoder at `lr_backbone`."""
    wd = cfg["weight_decay"]
    heads = named_groups("heads", head_parameters(module), cfg["lr_head"], wd)
    encoder = module.net.encoder.named_parameters()
    return heads + named_groups("backbone", encoder, cfg["lr_backbone"], wd)
