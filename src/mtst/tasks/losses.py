"""Loss functions the task types share: masked cross-entropy and the pair losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mtst.data.store import IGNORE  # the id collated batches hold where a label is absent


def zero_loss(*tensors: torch.Tensor) -> torch.Tensor:
    """Exactly 0 that stays in the graph of ``tensors`` (gradient 0 for every parameter)."""
    return sum((t.float().sum() * 0.0 for t in tensors), torch.zeros((), device=tensors[0].device))


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean CE over labelled positions (label != -100); `zero_loss` when nothing is labelled.
    fp16/bf16 logits are scored in fp32; fp32 and fp64 stay as they are."""
    flat_logits = logits.reshape(-1, logits.size(-1))
    if flat_logits.dtype in (torch.float16, torch.bfloat16):
        flat_logits = flat_logits.float()
    flat_labels = labels.reshape(-1)
    if not bool((flat_labels != IGNORE).any()):
        return zero_loss(flat_logits)
    return F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE)


def cosent_loss(cosines: torch.Tensor, scores: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """CoSENT (Su 2022; sentence-transformers `CoSENTLoss`): for every two pairs whose gold scores
    are ordered i > j, penalise cos_j > cos_i: log(1 + sum exp(scale * (cos_j - cos_i)))."""
    diff = scale * (cosines[None, :] - cosines[:, None])  # [i, j] = s * (cos_j - cos_i)
    ordered = scores[:, None] > scores[None, :]
    diff = diff - (~ordered).to(diff.dtype) * 1e12
    return torch.logsumexp(torch.cat([torch.zeros(1, device=diff.device, dtype=diff.dtype),
                                      diff.flatten()]), dim=0)


def cosine_mse_loss(cosines: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the cosine and the gold score (`CosineSimilarityLoss`)."""
    return F.mse_loss(cosines, scores.to(cosines.dtype))


def ranking_loss(anchors: torch.Tensor, positives: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """Multiple-negatives ranking (Henderson et al. 2017; `MultipleNegativesRankingLoss`): each
    anchor's positive against every other positive of the batch, by scaled cosine."""
    logits = scale * F.normalize(anchors, dim=-1) @ F.normalize(positives, dim=-1).T
    return F.cross_entropy(logits, torch.arange(len(anchors), device=logits.device))
