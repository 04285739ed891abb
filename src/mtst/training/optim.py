"""AdamW over named parameter groups, with linear warm-up then linear decay on every group.

The groups come from the freeze strategy (`mtst.freezing.param_groups`); the keys of
`model.optimizer` read here are listed there too, in `OPTIMIZER_KEYS`.
"""

from __future__ import annotations

from typing import Any

import torch

from mtst.errors import MtstError

# the keys of model.optimizer every run has (`warmup_steps` is optional)
REQUIRED_KEYS = ("lr_head", "lr_backbone", "weight_decay", "warmup_ratio", "betas", "eps", "fused")


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
    mid-run; the heads of evaluation-only tasks are in none (`mtst.freezing.param_groups.head_parameters`).
    `cfg` is `model.optimizer`, which holds every value (conf/model/multitask.yaml); `warmup_steps`
    (optional) replaces `warmup_ratio`."""
    missing = [key for key in REQUIRED_KEYS if key not in cfg]
    if missing:
        raise MtstError(f"model.optimizer.{missing[0]}: missing; model.optimizer needs "
                        f"{', '.join(REQUIRED_KEYS)} (conf/model/multitask.yaml holds them)")
    groups = model.freezer.param_groups(model, cfg)
    optimizer = torch.optim.AdamW(
        groups,
        betas=tuple(cfg["betas"]),
        eps=cfg["eps"],
        fused=use_fused(cfg["fused"], model.trainer),
    )
    total = int(model.trainer.estimated_stepping_batches)
    warmup = int(cfg.get("warmup_steps") or round(cfg["warmup_ratio"] * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear_decay(total, warmup))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
