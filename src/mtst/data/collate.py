"""Dynamic right padding of encoded examples into the batch dict of the contract.

Always: ``input_ids``, ``attention_mask``, ``word_ids`` (-1 on special, pad and pair tokens),
``num_words``, ``example_index`` (B rows); ``pair_rows`` (P) with the second sentences of those
rows in ``input_ids_b`` / ``attention_mask_b`` (P, Tb >= 1). Per task ``t``, whatever the batch
holds: ``t.has`` (B,) and, by kind, ``t.labels`` (B,) class ids; ``t.labels`` (B, T) sub-token
tag ids with ``t.word_labels`` (B, W >= 1) gold ids per word; ``t.scores`` (B,) float, NaN
where the row is not a scored pair of t. Ids are -100 where absent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from mtst.data.store import IGNORE, Encoded


class Collator:
    """Pads to the longest example of the batch; ``tasks`` maps name -> kind (plain strings,
    so worker processes pickle it cheaply)."""

    def __init__(self, pad_token_id: int, tasks: Mapping[str, str]) -> None:
        self.pad_token_id = int(pad_token_id)
        self.tasks = {str(name): str(kind) for name, kind in tasks.items()}

    def _pad(self, rows: Sequence[np.ndarray], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return torch.from_numpy(ids), torch.from_numpy(mask)

    def __call__(self, items: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        b = len(items)
        t = max(len(it) for it in items)
        w = max(1, max(it.num_words for it in items))
        input_ids, attention = self._pad([it.input_ids for it in items], t)
        word_ids = np.full((b, t), -1, dtype=np.int64)
        for i, it in enumerate(items):
            word_ids[i, : len(it)] = it.word_ids
        pairs = [i for i, it in enumerate(items) if it.input_ids_b is not None]
        second = [items[i].input_ids_b for i in pairs]
        input_ids_b, attention_b = self._pad(second, max([1, *(len(s) for s in second)]))
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention,
            "word_ids": torch.from_numpy(word_ids),
            "num_words": torch.tensor([it.num_words for it in items], dtype=torch.long),
            "example_index": torch.tensor([it.example_index for it in items], dtype=torch.long),
            "pair_rows": torch.tensor(pairs, dtype=torch.long),
            "input_ids_b": input_ids_b,
            "attention_mask_b": attention_b,
        }
        for task, kind in self.tasks.items():
            batch[f"{task}.has"] = torch.tensor([it.supervises(task) for it in items], dtype=torch.bool)
            if kind == "label":
                batch[f"{task}.labels"] = torch.tensor([it.labels.get(task, IGNORE) for it in items],
                                                       dtype=torch.long)
            elif kind == "tags":
                tags = np.full((b, t), IGNORE, dtype=np.int64)
                words = np.full((b, w), IGNORE, dtype=np.int64)
                for i, it in enumerate(items):
                    if task in it.tags:
                        tags[i, : len(it)] = it.tags[task]
                        words[i, : it.num_words] = it.word_labels[task]
                batch[f"{task}.labels"] = torch.from_numpy(tags)
                batch[f"{task}.word_labels"] = torch.from_numpy(words)
            else:
                batch[f"{task}.scores"] = torch.tensor(
                    [it.scores.get(task, float("nan")) for it in items], dtype=torch.float32)
        return batch
