"""What Lightning's loop costs around a step that itself costs a few milliseconds.

A step served from the frozen-backbone feature cache is a few small tensor operations; the
loop around it calls about 13 module hooks, 8 strategy hooks and 6 callback hooks (each over
every callback) per step. Each call enters the Trainer's profiler and sets the module's
``_current_fx_name`` twice, and the optimizer's ``zero_grad`` passes through torch's
compile-disable wrapper and a profiler record. None of that does anything unless a profiler is
asked for, yet together they were ~1 ms of a ~7 ms step here. The pieces below keep each
behaviour and drop only the cost; each is used only where it is equivalent.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from lightning.pytorch.profilers import PassThroughProfiler

_NOTHING = contextlib.nullcontext()


class QuietProfiler(PassThroughProfiler):
    """The Trainer's profiler when none is configured: Lightning's default (`PassThroughProfiler`)
    records nothing either, but builds a generator-based context manager for each of the ~150
    profiled calls a step makes (~3 µs each). This one hands back one shared no-op context."""

    def profile(self, action_name: str) -> contextlib.AbstractContextManager[Any]:
        return _NOTHING


class LeanHooks:
    """Mixed into a LightningModule (ahead of it): per-step paths of Lightning's with the same
    effect at less cost.

    - Lightning sets ``_current_fx_name`` (the hook being run, a string or None) before and after
      every hook call, ~50 times a step (a private attribute; pinned in tests/test_lean_loop.py).
      `nn.Module.__setattr__` checks every value for a parameter, buffer or module first; a
      string is none of those, so this attribute is stored directly.
    - A flat dict of tensors (every collated batch) moves to the device without Lightning's
      recursive walk over collections, and stays as it is where it already sits there.
    - Gradients are cleared by `zero_grads`.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_current_fx_name" and (value is None or type(value) is str):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if not isinstance(batch, dict) or not all(isinstance(v, torch.Tensor) for v in batch.values()):
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        if all(v.device == device for v in batch.values()):
            return batch
        non_blocking = device.type not in ("cpu", "mps")  # as Lightning's move_data_to_device
        return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        zero_grads(optimizer)


def zero_grads(optimizer: torch.optim.Optimizer) -> None:
    """`optimizer.zero_grad()` (set_to_none, torch's default): an optimizer that keeps torch's
    own `zero_grad` has its gradients set to None here directly, without the compile-disable
    wrapper and profiler record around it (~0.2 ms a call here); one that overrides it is
    called."""
    if type(optimizer).zero_grad is not torch.optim.Optimizer.zero_grad:
        optimizer.zero_grad()
        return
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is not None:
                param.grad = None
