"""Gradient-norm clipping for the plain fp32 step, with fewer layers than Lightning's path.

Lightning clips through its precision plugin, which hands every parameter of the optimizer to
`torch.nn.utils.clip_grad_norm_`; on CPU that walks a frozen backbone's hundred parameters in
Python and takes about 0.5 ms a step on a 2-core machine, a tenth of a step served from the
frozen-backbone feature cache. The same arithmetic over the gradients that exist costs a
handful of tensor operations.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.plugins.precision import Precision


def clips_directly(trainer: Any) -> bool:
    """Whether `clip_grad_norm` may stand in for Lightning's clipping: full precision, where the
    plugin neither unscales nor refuses anything (mixed and half precision keep Lightning's)."""
    return type(getattr(trainer, "precision_plugin", None)) is Precision


def clip_grad_norm(optimizer: torch.optim.Optimizer, max_norm: float) -> torch.Tensor | None:
    """Scale the gradients of `optimizer`'s parameters so that their global 2-norm is at most
    `max_norm`, as `torch.nn.utils.clip_grad_norm_` does (same norms, same coefficient
    `max_norm / (norm + 1e-6)` clamped to 1); returns the norm before clipping."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return None
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    coefficient = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    torch._foreach_mul_(grads, coefficient)
    return total
