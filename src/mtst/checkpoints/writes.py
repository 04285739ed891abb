"""Whether a tensor was written in place since a moment, without reading it again: the test that
lets a frozen tensor be checked for non-finite values (`NonFiniteGuard`) or hashed
(`DigestMemo`) once rather than at every checkpoint save.

The public route is autograd's in-place check. A tensor saved with `ctx.save_for_backward` is
checked when `ctx.saved_tensors` is read: if any in-place operation wrote it since, reading
raises (the `save_for_backward` docstring and the "In-place correctness checks" note of
autograd's documentation say so). `WriteWatch` saves the tensor in a one-node graph beside a
scalar, and asks by running that node's backward. The check is the tensor's version counter,
which its views share, its `state_dict` entry among them (`detach()` shares it too, by its
documentation).

What it sees: every in-place torch operation on the tensor or on a view of it, whether or not
grad mode is on: `copy_` (what `load_state_dict` does), a LoRA merge into the base weight, an
EMA or user code updating a "frozen" weight under `no_grad`, an optimizer that is not fused.
What it does not see (no in-place check sees these, the private `Tensor._version` neither):
writes through `.data` (a tensor with its own counter), through NumPy or DLPack views of the
storage, and fused optimizers (AdamW's default here), which write without bumping the counter.
Callers therefore trust a watch only for tensors no optimizer steps (`requires_grad=False`
now), and check trained ones every time. A tensor unfrozen later (gradual unfreezing) becomes
trained and is checked every time from then on.

A watch holds the tensor, so its storage cannot be freed and its address cannot come back as
another tensor's: "the same view of the same storage" then means the same tensor. Where no
watch can be made (an inference tensor, a `saved_tensors_hooks` context such as
`save_on_cpu` around the save), `watch` gives None and the caller reads the tensor again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class _Saved(torch.autograd.Function):
    """Saves `watched` for backward; the backward reads it back, which is where autograd's
    in-place check runs."""

    @staticmethod
    def forward(ctx: Any, anchor: torch.Tensor, watched: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(watched)
        return anchor.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        _ = ctx.saved_tensors  # raises RuntimeError if `watched` was written in place since
        return grad, None


@contextmanager
def _graph_mode() -> Iterator[None]:
    """Autograd on, whatever the caller's mode (a checkpoint saved during validation runs
    under `inference_mode`); anomaly mode off, which would report a seen write as an error."""
    with torch.inference_mode(False), torch.enable_grad(), torch.autograd.set_detect_anomaly(False):
        yield


class WriteWatch:
    """Whether one tensor is still as it was when the watch was made (see the module doc)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor.detach()
        self._anchor = torch.zeros((), requires_grad=True)
        # saved-tensor hooks (e.g. `save_on_cpu`) would copy the tensor and skip the check
        with _graph_mode(), torch.autograd.graph.disable_saved_tensors_hooks(
                "a write watch saves its tensor itself"):
            self._out = _Saved.apply(self._anchor, self.tensor)

    def unwritten(self, tensor: torch.Tensor) -> bool:
        """True if `tensor` is the watched tensor (the same view of the same storage) and no
        in-place operation wrote it since the watch was made."""
        if not _same_view(self.tensor, tensor):
            return False
        try:
            with _graph_mode():
                torch.autograd.grad(self._out, self._anchor, retain_graph=True)
        except RuntimeError:  # the in-place check (anything else: not trusted either)
            return False
        return True


def watch(tensor: torch.Tensor) -> WriteWatch | None:
    """A watch on `tensor`, or None where autograd cannot save it (then read it again)."""
    try:
        return WriteWatch(tensor)
    except RuntimeError:
        return None


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a.device == b.device and a.dtype == b.dtype and a.shape == b.shape
            and a.stride() == b.stride() and a.storage_offset() == b.storage_offset()
            and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())
