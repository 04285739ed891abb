"""`sentence_classification`: one class per sentence from the pooled embedding (topic)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from mtst.data.labels import LabelSpace
from mtst.tasks.base import Task
from mtst.tasks.losses import masked_cross_entropy

DIGITS = 4  # predicted scores are rounded: more digits are noise to a reader and to a diff


class SentenceClassification(Task):
    """Cross-entropy on a linear head over the sentence embedding; accuracy and macro-F1."""

    type = "sentence_classification"
    data_kind = "label"
    head = "sentence"
    metric_names = ("f1", "acc")
    options = {"dropout": 0.1}

    def loss(self, batch: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return masked_cross_entropy(outputs[self.name], batch[f"{self.name}.labels"])

    def new_metrics(self, space: LabelSpace) -> nn.ModuleDict:
        return nn.ModuleDict({"acc": MulticlassAccuracy(len(space), average="micro"),
                              "f1": MulticlassF1Score(len(space), average="macro")})

    def update(self, metrics: nn.ModuleDict, batch: Mapping[str, torch.Tensor],
               outputs: Mapping[str, torch.Tensor]) -> None:
        rows = self.has(batch)
        if rows.any():
            preds = outputs[self.name][rows].argmax(-1)
            for metric in metrics.values():
                metric.update(preds, batch[f"{self.name}.labels"][rows])

    def compute(self, metrics: nn.ModuleDict) -> dict[str, torch.Tensor]:
        return {name: metric.compute() for name, metric in metrics.items()}

    @staticmethod
    def prediction(probabilities: np.ndarray, space: LabelSpace) -> dict[str, Any]:
        """`{"label", "score", "scores"}` from one text's class probabilities."""
        best = int(probabilities.argmax())
        return {"label": space.ids[best], "score": round(float(probabilities[best]), DIGITS),
                "scores": {name: round(float(p), DIGITS)
                           for name, p in zip(space.ids, probabilities, strict=True)}}
