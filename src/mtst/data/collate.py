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

from mtst.data.store import IGNORE, Encoded, StoreRows


class Collator:
    """Pads to the longest example of the batch; ``tasks`` maps name -> kind (plain strings,
    so worker processes pickle it cheaply).

    The batch is built from the store's columns with one gather per column (`StoreRows`, what
    a DataLoader over an `EncodedStore` fetches), not example by example: a batch of 16 costs
    a few numpy calls, which matters where a step costs a few milliseconds (epochs served from
    the frozen-backbone feature cache)."""

    def __init__(self, pad_token_id: int, tasks: Mapping[str, str]) -> None:
        self.pad_token_id = int(pad_token_id)
        self.tasks = {str(name): str(kind) for name, kind in tasks.items()}

    def __call__(self, items: StoreRows | Sequence[Encoded]) -> dict[str, torch.Tensor]:
        rows = items if isinstance(items, StoreRows) else StoreRows.of(items)
        store, index = rows.store, rows.indices
        c = store.columns
        tokens = Segments(store.token_offsets, index)
        words = Segments(store.word_offsets, index, min_width=1)
        has = {task: c[f"has.{task}"][index].astype(bool) for task in self.tasks}
        pairs = np.zeros(len(index), dtype=bool)
        for task, kind in self.tasks.items():
            if kind not in ("label", "tags"):  # a scored pair carries its second sentence
                pairs |= has[task]
        pair_rows = np.flatnonzero(pairs)
        second = Segments(store.token_b_offsets, index[pair_rows], min_width=1)
        batch = {
            "input_ids": tokens.gather(c["input_ids"], self.pad_token_id),
            "attention_mask": torch.from_numpy(tokens.real.astype(np.int64)),
            "word_ids": tokens.gather(c["word_ids"], -1),
            "num_words": torch.from_numpy(words.lengths),
            "example_index": torch.from_numpy(index.copy()),
            "pair_rows": torch.from_numpy(pair_rows.astype(np.int64)),
            "input_ids_b": second.gather(c["input_ids_b"], self.pad_token_id),
            "attention_mask_b": torch.from_numpy(second.real.astype(np.int64)),
        }
        for task, kind in self.tasks.items():
            rows_of_task = has[task]
            batch[f"{task}.has"] = torch.from_numpy(rows_of_task)
            if kind == "label":
                labels = np.where(rows_of_task, c[f"label.{task}"][index], IGNORE)
                batch[f"{task}.labels"] = torch.from_numpy(labels.astype(np.int64))
            elif kind == "tags":
                batch[f"{task}.labels"] = tokens.gather(c[f"tags.{task}"], IGNORE, rows_of_task)
                batch[f"{task}.word_labels"] = words.gather(c[f"words.{task}"], IGNORE, rows_of_task)
            else:
                scores = np.where(rows_of_task, c[f"score.{task}"][index], np.nan)
                batch[f"{task}.scores"] = torch.from_numpy(scores.astype(np.float32))
        return batch


class Segments:
    """Rows ``index`` of a column laid out by ``offsets`` (row i is ``[offsets[i],
    offsets[i + 1])``), right-padded to the longest (at least ``min_width``)."""

    def __init__(self, offsets: np.ndarray, index: np.ndarray, min_width: int = 0) -> None:
        starts = offsets[index]
        self.lengths = (offsets[index + 1] - starts).astype(np.int64)
        width = max(min_width, int(self.lengths.max()) if len(index) else 0)
        positions = np.arange(width)
        self.real = positions < self.lengths[:, None]
        self.flat = np.where(self.real, starts[:, None] + positions, 0)

    def gather(self, column: np.ndarray, fill: int, rows: np.ndarray | None = None) -> torch.Tensor:
        """[rows, width] int64 values of `column`, `fill` on padding (and on rows not in `rows`)."""
        keep = self.real if rows is None else self.real & rows[:, None]
        values = column[self.flat] if len(column) else np.zeros(self.flat.shape, column.dtype)
        return torch.from_numpy(np.where(keep, values, fill).astype(np.int64))
