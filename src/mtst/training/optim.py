"""AdamW over named parameter groups, with linear warm-up then linear decay on every group."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from mtst.errors import MtstError

# the keys of model.optimizer read here and by the freeze strategies' param_groups
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
    wd = cfg.get("weight_decay", 0.01)
    heads = named_groups("heads", head_parameters(module), cfg.get("lr_head", 1e-3), wd)
    encoder = module.net.encoder.named_parameters()
    return heads + named_groups("backbone", encoder, cfg.get("lr_backbone", 5e-5), wd)


def warmup_linear_decay(total_steps: int, warmup_steps: int):
    """Factor on each group's base lr: 0 -> 1 over warm-up, then 1 -> 0 at the last step."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        remaining = max(1, total_steps - warmup_steps)
        return max(0.0, (total_steps - step) / remaining)

    return factor


def use_fused(fused: bool | None, trainer: Any) -> bool:
    """One fused AdamW kernel over all tensors (~5x faster than the per-tensor loop on CPU),
    except where Lightning refuses it: it will not clip a fused optimizer's gradients under
    mixed precision (`bf16-mixed`, `16-mixed`), whose step it assumes unscales them itself.
    ``None`` picks; an explicit ``True`` there is a one-line error instead of a failed step."""
    precision = str(getattr(trainer, "precision", ""))
    clash = precision.endswith("-mixed") and bool(getattr(trainer, "gradient_clip_val", None))
    if fused is None:
        return not clash
    if fused and clash:
        raise MtstError(
            f"model.optimizer.fused=true: Lightning cannot clip the gradients of a "
            f"fused optimizer under trainer.precision={precision}; set "
            "model.optimizer.fused=null (or false), or trainer.gradient_clip_val=null"
        )
    return bool(fused)


def build_optimizer(model, cfg: dict[str, Any]) -> dict[str, Any]:
    """AdamW + per-step scheduler. Every parameter that may train is in a group from the start
    (frozen ones just get no gradient), so strategies that unfreeze later never add groups
    mid-run; the heads of evaluation-only tasks are in none (`head_parameters`)."""
    groups = model.freezer.param_groups(model, cfg)
    optimizer = torch.optim.AdamW(
        groups,
        betas=tuple(cfg.get("betas", (0.9, 0.999))),
        eps=cfg.get("eps", 1e-8),
        fused=use_fused(cfg.get("fused"), model.trainer),
    )
    total = int(model.trainer.estimated_stepping_batches)
    warmup = int(cfg.get("warmup_steps") or round(cfg.get("warmup_ratio", 0.1) * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear_decay(total, warmup))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
