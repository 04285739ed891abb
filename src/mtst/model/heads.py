"""Task heads: small on purpose, so the shared encoder does the work."""

from __future__ import annotations

import torch
from torch import nn


class ClassificationHead(nn.Module):
    """Topic logits from the pooled sentence embedding."""

    def __init__(self, hidden_size: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_classes)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(embeddings))


class TokenClassificationHead(nn.Module):
    """BIO tag logits for every sub-token state."""

    def __init__(self, hidden_size: int, num_tags: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_tags)

    def forward(self, token_states: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(token_states))
