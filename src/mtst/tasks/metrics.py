"""Metrics that stay correct under DDP: states are summed or gathered across ranks, then scored.

Entity F1:

seqeval's micro precision/recall/F1 depend only on the summed counts of true-positive, predicted
and gold entities, so summing per-type counts and scoring once gives the exact seqeval figures on
the whole validation set; averaging per-rank F1 would not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from seqeval.metrics.sequence_labeling import get_entities
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


class EntityF1(Metric):
    """Entity-level (seqeval, default mode) counts per entity type over word-level tag sequences."""

    full_state_update = False

    def __init__(self, tags: Sequence[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.tags = list(tags)
        self.entity_types = sorted({t[2:] for t in self.tags if t != "O"})
        self._type_index = {t: i for i, t in enumerate(self.entity_types)}
        zeros = torch.zeros(len(self.entity_types), 3, dtype=torch.long)  # tp, predicted, gold
        self.add_state("counts", default=zeros, dist_reduce_fx="sum")

    def update(self, predictions: Sequence[Sequence[int]], golds: Sequence[Sequence[int]]) -> None:
        counts = torch.zeros_like(self.counts)
        for pred_ids, gold_ids in zip(predictions, golds, strict=True):
            pred = set(get_entities([self.tags[i] for i in pred_ids]))
            gold = set(get_entities([self.tags[i] for i in gold_ids]))
            for column, entities in ((0, pred & gold), (1, pred), (2, gold)):
                for entity_type, _, _ in entities:
                    counts[self._type_index[entity_type], column] += 1
        self.counts += counts.to(self.counts.device)

    def compute(self) -> dict[str, torch.Tensor]:
        tp, predicted, gold = self.counts.sum(0).double()
        return _prf(tp, predicted, gold)

    def per_type(self) -> dict[str, dict[str, float]]:
        """Per-type precision/recall/F1/support, as seqeval's classification_report gives."""
        report = {}
        for entity_type, (tp, predicted, gold) in zip(self.entity_types, self.counts.double(), strict=True):
            scores = {k: float(v) for k, v in _prf(tp, predicted, gold).items()}
            report[entity_type] = scores | {"support": int(gold)}
        return report


def _prf(tp: torch.Tensor, predicted: torch.Tensor, gold: torch.Tensor) -> dict[str, torch.Tensor]:
    precision = tp / predicted if predicted > 0 else torch.zeros((), dtype=torch.float64)
    recall = tp / gold if gold > 0 else torch.zeros((), dtype=torch.float64)
    denominator = precision + recall
    f1 = 2 * precision * recall / denominator if denominator > 0 else torch.zeros_like(denominator)
    return {"precision": precision, "recall": recall, "f1": f1}


def format_report(report: dict[str, dict[str, float]], overall: dict[str, float]) -> str:
    """A seqeval-style per-type table as plain text (for logs, TensorBoard text and files)."""
    lines = [f"{'':>12} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"]
    for name, row in report.items():
        lines.append(
            f"{name:>12} {row['precision']:9.4f} {row['recall']:9.4f} {row['f1']:9.4f} {row['support']:9d}"
        )
    support = sum(row["support"] for row in report.values())
    lines.append(
        f"{'micro avg':>12} {overall['precision']:9.4f} {overall['recall']:9.4f} "
        f"{overall['f1']:9.4f} {support:9d}"
    )
    return "\n".join(lines)


class Correlation(Metric):
    """Spearman and Pearson correlation of predicted and gold scores over a whole stage.

    Predictions and golds are gathered from every rank (``cat``) and scored once, in float64 with
    scipy (average ranks for ties), so the figure is exactly scipy's ``spearmanr`` over all pairs:
    what sentence-transformers' `EmbeddingSimilarityEvaluator` and MTEB report for STS.
    """

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("golds", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, golds: torch.Tensor) -> None:
        self.preds.append(preds.detach().double().flatten())
        self.golds.append(golds.detach().double().flatten())

    def compute(self) -> dict[str, torch.Tensor]:
        from scipy.stats import pearsonr, spearmanr

        preds = dim_zero_cat(self.preds).cpu().numpy()
        golds = dim_zero_cat(self.golds).cpu().numpy()
        if len(preds) < 2:
            nan = torch.tensor(float("nan"), dtype=torch.float64)
            return {"spearman": nan, "pearson": nan}
        return {"spearman": torch.tensor(float(spearmanr(preds, golds)[0]), dtype=torch.float64),
                "pearson": torch.tensor(float(pearsonr(preds, golds)[0]), dtype=torch.float64)}
