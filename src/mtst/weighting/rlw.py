"""`rlw`: Random Loss Weighting (loss level), fresh random weights at every optimizer step."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtst.errors import MtstError
from mtst.weighting.base import Weighting, present_softmax

SEED_LIMIT = 2**32
SPREAD = 0x9E3779B9  # odd, so seed -> seed·SPREAD mod 2**32 is one-to-one


class RLW(Weighting):
    """Lin et al. (2022), "Reasonable effectiveness of random weighting: a litmus test for
    multi-task learning" (TMLR), with normally distributed logits:

        w = K·softmax(eps) over the K tasks present in the batch,   eps ~ N(0, I)

    times each task's fixed weight (`tasks.<name>.weight`); an absent task's weight is 0. The
    K factor keeps the loss scale of equal weights (the expectation of the weights is 1).

    `eps` comes from a generator seeded with (`seed`, step), so every DDP rank draws the same
    weights and a resumed run draws what the uninterrupted one would have. `step` calls
    `set_step(global_step)` before each training forward; all micro-batches of one optimizer
    step share its weights. In eval mode the weights are the fixed ones (the expectation), so
    `val/loss` does not depend on the draw.

    Args:
        weights: each task's fixed weight (`tasks.<name>.weight`).
        seed: the draws' seed, an integer in [0, 2**32).
    """

    name = "rlw"

    def __init__(self, weights: Sequence[float], *, seed: int) -> None:
        super().__init__(weights)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
            raise MtstError(f"weighting.seed={seed!r}: expected an integer >= 0 and "
                            f"< {SEED_LIMIT}")
        self.seed = seed
        self.current_step = 0  # the global step: an input `step` sets, not state to checkpoint

    def set_step(self, step: int) -> None:
        self.current_step = int(step)

    def draw(self, step: int) -> torch.Tensor:
        """The step's N standard-normal logits (float64, CPU): one per task, present or not, so a
        task's draw does not depend on which others are in the batch.

        The CPU generator keeps 32 bits of its seed, so (seed, step) maps to seed·0x9E3779B9 +
        step mod 2**32: distinct steps of one run never share a draw (below 2**32 steps), and
        different seeds start their runs far apart in that space.
        """
        generator = torch.Generator().manual_seed((self.seed * SPREAD + step) % SEED_LIMIT)
        return torch.randn(self.num_tasks, generator=generator, dtype=torch.float64)

    def task_weights(self, present: torch.Tensor) -> torch.Tensor:
        """RLW weight times fixed weight per task [N] (float64), 0 for absent tasks."""
        fixed = self.weights.to(torch.float64)
        if not self.training:
            return torch.where(present, fixed, torch.zeros_like(fixed))
        logits = self.draw(self.current_step).to(present.device)
        return present.sum() * present_softmax(logits, present) * fixed

    def forward(self, losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(losses.dtype, torch.float32)
        weighted = losses.to(dtype) * self.task_weights(present).to(dtype)
        return torch.where(present, weighted, torch.zeros_like(weighted)).sum()
