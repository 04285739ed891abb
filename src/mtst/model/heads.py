"""Task heads: small on purpose, so the shared encoder does the work.

A head reads either the pooled sentence embedding (``sentence``) or every sub-token state
(``token``); a task without parameters of its own (sentence similarity reads the embedding
itself) has no head. ``HEADS`` is what a saved network's config names.
"""

from __future__ import annotations

import torch
from torch import nn


class ClassificationHead(nn.Module):
    """Class logits from the pooled sentence embedding."""

    reads = "embeddings"

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(features))


class TokenClassificationHead(ClassificationHead):
    """Tag logits for every sub-token state."""

    reads = "token_states"


HEADS: dict[str, type[ClassificationHead]] = {
    "sentence": ClassificationHead,
    "token": TokenClassificationHead,
}
