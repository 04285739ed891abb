"""Task heads: small on purpose, so the shared encoder does the work.

A head reads either the pooled sentence embedding (``sentence``) or every sub-token state
(``token``); a task without parameters of its own (sentence similarity reads the embedding
itself) has no head. ``HEADS`` is what a saved network's config names.
"""

from __future__ import annotations

import torch
from torch import nn


class Dropout(nn.Module):
    """`nn.Dropout`'s contract (in training, zero each element with probability `p` and scale
    the rest by 1/(1-p); the identity in eval mode) with a cheaper mask on CPU.

    Why: on CPU `nn.Dropout` draws one Bernoulli sample per element, 2.5-3.7 ms for a
    16 x 45 x 384 batch of token states on a 2-core machine, which was the largest single cost
    of a training step served from the frozen-backbone feature cache. Here the mask comes from
    full-range 64-bit draws of the same generator, four 16-bit lanes per draw: about 1.3 ms for
    that batch, draws, mask and product together. `p` is rounded to a multiple of 1/65536. Elsewhere (CUDA's fused kernel is already fast) it
    is `nn.functional.dropout`. Seeded runs stay reproducible: the draws come from torch's
    generator.
    """

    LANES = 1 << 16  # a 16-bit lane keeps its element when it is >= p * LANES (lanes as unsigned)

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability {p!r}: expected a value in [0, 1)")
        self.p = float(p)
        self.threshold = round(self.p * self.LANES) - self.LANES // 2  # as signed int16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, True)
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None)
        keep = words.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return x * keep.to(x.dtype).mul_(1 / (1 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ClassificationHead(nn.Module):
    """Class logits from the pooled sentence embedding.

    Args:
        hidden_size: the encoder's output width.
        num_labels: classes (or BIO tags, for the token head).
        dropout: dropout probability on the features before the linear layer.
    """

    reads = "embeddings"

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(features))


class TokenClassificationHead(ClassificationHead):
    """Tag logits for every sub-token state."""

    reads = "token_states"
    # a position's logits depend on its own state alone: the head also takes [N, H] rows (the
    # positions a training step's loss reads) in place of [B, T, H]
    pointwise = True


HEADS: dict[str, type[ClassificationHead]] = {
    "sentence": ClassificationHead,
    "token": TokenClassificationHead,
}
