"""`token_classification`: a BIO tag per word from its first sub-token's state (NER)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from mtst.data.alignment import word_predictions
from mtst.data.labels import OUTSIDE, LabelSpace
from mtst.data.store import IGNORE
from mtst.tasks.base import TOKEN_ROWS, Task
from mtst.tasks.losses import masked_cross_entropy
from mtst.tasks.metrics import EntityF1

DIGITS = 4


class TokenClassification(Task):
    """Cross-entropy over labelled sub-tokens; seqeval entity-level P/R/F1 on words (a word cut
    by truncation counts as predicted `O`)."""

    type = "token_classification"
    data_kind = "tags"
    head = "token"
    metric_names = ("f1", "precision", "recall")
    options = {"dropout": 0.1}

    def token_positions(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return batch[f"{self.name}.labels"] != IGNORE

    def loss(self, batch: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        labels = batch[f"{self.name}.labels"]
        rows = outputs.get(TOKEN_ROWS)
        if rows is not None:  # the head ran at these positions only
            labels = labels.reshape(-1).index_select(0, rows)
        return masked_cross_entropy(outputs[self.name], labels)

    def new_metrics(self, space: LabelSpace) -> nn.ModuleDict:
        return nn.ModuleDict({"entities": EntityF1(space.ids)})

    def word_level(self, batch: Mapping[str, torch.Tensor], logits: torch.Tensor
                   ) -> tuple[list[list[int]], list[list[int]]]:
        """Word-level predicted and gold tag ids of the rows that supervise this task."""
        rows = self.has(batch).nonzero().flatten().tolist()
        preds = word_predictions(logits.argmax(-1)[rows], batch["word_ids"][rows],
                                 batch["num_words"][rows])
        golds = [batch[f"{self.name}.word_labels"][r, : int(batch["num_words"][r])].tolist()
                 for r in rows]
        return preds, golds

    def update(self, metrics: nn.ModuleDict, batch: Mapping[str, torch.Tensor],
               outputs: Mapping[str, torch.Tensor]) -> None:
        if self.has(batch).any():
            metrics["entities"].update(*self.word_level(batch, outputs[self.name]))

    def compute(self, metrics: nn.ModuleDict) -> dict[str, torch.Tensor]:
        return {k: v.float() for k, v in metrics["entities"].compute().items()}

    @staticmethod
    def prediction(text: str, spans: list[tuple[str, int, int]], probabilities: np.ndarray,
                   space: LabelSpace) -> list[dict[str, Any]]:
        """Entities with character offsets from per-word tag probabilities [n_words, T] (a NaN
        row: the word has no sub-token, so it is outside any entity)."""
        tags, scores = [], []
        for row in probabilities:
            if np.isnan(row).any():
                tags.append(OUTSIDE)
                scores.append(0.0)
                continue
            tag_id = int(row.argmax())
            tags.append(space.ids[tag_id])
            scores.append(float(row[tag_id]))
        return decode_entities(text, spans, tags, scores)


def decode_entities(text: str, spans: list[tuple[str, int, int]], tags: list[str],
                    scores: list[float]) -> list[dict[str, Any]]:
    """BIO word tags -> entity dicts: B-X starts an entity, I-X continues one of type X and
    otherwise starts one (as training repairs a stray I-X); `text[start:end] == entity["text"]`;
    the score is the mean of the entity's words' tag probabilities."""
    entities: list[dict[str, Any]] = []
    current: list[int] = []
    current_type = None

    def close() -> None:
        if current:
            start, end = spans[current[0]][1], spans[current[-1]][2]
            score = float(np.mean([scores[w] for w in current]))
            entities.append({"text": text[start:end], "type": current_type, "start": start,
                             "end": end, "score": round(score, DIGITS)})

    for w, tag in enumerate(tags):
        if tag == OUTSIDE:
            close()
            current, current_type = [], None
            continue
        prefix, _, entity_type = tag.partition("-")
        if prefix == "B" or entity_type != current_type:
            close()
            current, current_type = [], entity_type
        current.append(w)
    close()
    return entities
