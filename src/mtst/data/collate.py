"""Dynamic right padding of encoded examples into the batch dict of the contract."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mtst.data.store import IGNORE, Encoded


class Collator:
    """Pads to the longest example of the batch (a class, so worker processes can pickle it)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = int(pad_token_id)

    def __call__(self, items: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        b = len(items)
        t = max(len(it) for it in items)
        w = max(it.num_words for it in items)
        input_ids = np.full((b, t), self.pad_token_id, dtype=np.int64)
        attention = np.zeros((b, t), dtype=np.int64)
        ner = np.full((b, t), IGNORE, dtype=np.int64)
        word_ids = np.full((b, t), -1, dtype=np.int64)
        word_labels = np.full((b, w), IGNORE, dtype=np.int64)
        for i, it in enumerate(items):
            n = len(it)
            input_ids[i, :n] = it.input_ids
            attention[i, :n] = 1
            word_ids[i, :n] = it.word_ids
            if it.ner_labels is not None:
                ner[i, :n] = it.ner_labels
            if it.word_labels is not None:
                word_labels[i, : it.num_words] = it.word_labels
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention),
            "cls_labels": torch.tensor([it.cls_label for it in items], dtype=torch.long),
            "ner_labels": torch.from_numpy(ner),
            "has_cls": torch.tensor([it.cls_label != IGNORE for it in items], dtype=torch.bool),
            "has_ner": torch.tensor([it.ner_labels is not None for it in items], dtype=torch.bool),
            "word_ids": torch.from_numpy(word_ids),
            "word_labels": torch.from_numpy(word_labels),
            "num_words": torch.tensor([it.num_words for it in items], dtype=torch.long),
            "example_index": torch.tensor([it.example_index for it in items], dtype=torch.long),
        }
