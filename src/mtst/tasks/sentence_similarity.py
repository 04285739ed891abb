"""`sentence_similarity`: two sentences through the shared encoder and pooling, compared by cosine.

Pairs with a gold score (`sentence1`, `sentence2`, `score`) train with CoSENT (or the squared
error of the cosine, `loss: cosine_mse`, with scores divided by `max_score`) and are scored by
Spearman's (and Pearson's) correlation of the cosine with the gold score, the STS yardstick.
Pairs without one (`anchor`, `positive`) train with in-batch multiple-negatives ranking: every
other positive of the batch is a negative. The task has no head: it shapes the embedding itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from mtst.data.labels import LabelSpace
from mtst.errors import MtstError, choices_text
from mtst.tasks.base import Task
from mtst.tasks.losses import cosent_loss, cosine_mse_loss, ranking_loss, zero_loss
from mtst.tasks.metrics import Correlation

PAIR_LOSSES = ("cosent", "cosine_mse")


class SentenceSimilarity(Task):
    type = "sentence_similarity"
    data_kind = "pair"
    head = None
    metric_names = ("spearman", "pearson")
    options = {"loss": "cosent", "scale": 20.0, "max_score": 1.0}

    def check_options(self) -> None:
        if self.settings["loss"] not in PAIR_LOSSES:
            raise MtstError(f"tasks.{self.name}.loss={self.settings['loss']!r}: no such option; "
                            f"choose one of {choices_text(PAIR_LOSSES)}")
        for key in ("scale", "max_score"):
            value = self.settings[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise MtstError(f"tasks.{self.name}.{key}={value!r}: expected a number > 0")

    def pairs(self, batch: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor]
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(embeddings of sentence 1, of sentence 2, gold scores) of this task's pairs."""
        rows = batch["pair_rows"]
        mine = self.has(batch)[rows]
        first = outputs["embeddings"][rows][mine]
        second = outputs["embeddings_b"][mine]
        return first, second, batch[f"{self.name}.scores"][rows][mine]

    def loss(self, batch: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        first, second, scores = self.pairs(batch, outputs)
        first, second = first.float(), second.float()
        total = zero_loss(outputs["embeddings"])
        scored = ~torch.isnan(scores)
        if scored.sum() >= 2 or (scored.any() and self.settings["loss"] == "cosine_mse"):
            cosines = F.cosine_similarity(first[scored], second[scored], dim=-1)
            gold = scores[scored].float()
            if self.settings["loss"] == "cosent":
                total = total + cosent_loss(cosines, gold, float(self.settings["scale"]))
            else:
                total = total + cosine_mse_loss(cosines, gold / float(self.settings["max_score"]))
        unscored = ~scored
        if unscored.sum() >= 2:  # one pair alone has no in-batch negative
            total = total + ranking_loss(first[unscored], second[unscored],
                                         float(self.settings["scale"]))
        return total

    def new_metrics(self, space: LabelSpace) -> nn.ModuleDict:
        return nn.ModuleDict({"correlation": Correlation()})

    def update(self, metrics: nn.ModuleDict, batch: Mapping[str, torch.Tensor],
               outputs: Mapping[str, torch.Tensor]) -> None:
        first, second, scores = self.pairs(batch, outputs)
        scored = ~torch.isnan(scores)
        if scored.any():
            cosines = F.cosine_similarity(first[scored].float(), second[scored].float(), dim=-1)
            metrics["correlation"].update(cosines, scores[scored])

    def compute(self, metrics: nn.ModuleDict) -> dict[str, torch.Tensor]:
        return {k: v.float() for k, v in metrics["correlation"].compute().items()}
