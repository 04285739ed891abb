"""Encoded splits as flat columns, in memory or memory-mapped from a folder.

One example is a slice of the token columns and of the word columns, so a split costs a few
bytes per token whatever its size, and a split written to disk is opened without reading it:
the batch sampler needs only ``lengths`` and ``sources``, and batches read their own slices.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

IGNORE = -100  # a label id that is absent (padding, later sub-tokens, unlabelled rows): what the losses skip
FORMAT_VERSION = 2
# Columns hold one value per "token" (sub-token of the example, or of a pair's first sentence),
# "token_b" (sub-token of a pair's second sentence), "word" or "example". Each of the first
# three units has an offsets column (int64, examples + 1 values) built from a count column.
BASE_COLUMNS = {
    "input_ids": ("int32", "token"), "word_ids": ("int32", "token"),
    "input_ids_b": ("int32", "token_b"),
    "lengths": ("int32", "example"), "lengths_b": ("int32", "example"),
    "num_words": ("int32", "example"), "sources": ("int32", "example"),
}
OFFSETS = {"token": ("token_offsets", "lengths"), "token_b": ("token_b_offsets", "lengths_b"),
           "word": ("word_offsets", "num_words")}
META = "meta.json"


def task_columns(tasks: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Column name -> (dtype, unit) for tasks ``name -> kind``: ``has.<t>`` (the example
    supervises t), ``label.<t>`` (class id), ``tags.<t>`` (tag id per sub-token, IGNORE where
    unlabelled), ``words.<t>`` (gold tag id per word), ``score.<t>`` (gold score, NaN if none)."""
    columns = dict(BASE_COLUMNS)
    for name, kind in tasks.items():
        columns[f"has.{name}"] = ("bool", "example")
        if kind == "label":
            columns[f"label.{name}"] = ("int32", "example")
        elif kind == "tags":
            columns[f"tags.{name}"] = ("int16", "token")
            columns[f"words.{name}"] = ("int16", "word")
        else:
            columns[f"score.{name}"] = ("float32", "example")
    return columns


def _with_offsets(schema: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    return {**schema, **{name: ("int64", "offset") for name, _ in OFFSETS.values()}}


@dataclass(frozen=True)
class StoreRows:
    """Rows ``indices`` of ``store``: what a DataLoader fetches for one batch (it calls the
    dataset's ``__getitems__``), so the collate builds the batch from the columns at once
    instead of from one ``Encoded`` per example."""

    store: EncodedStore
    indices: np.ndarray

    @classmethod
    def of(cls, items: Sequence[Encoded]) -> StoreRows:
        """The rows behind examples read from one store (``store[i]``)."""
        stores = {id(it.store) for it in items}
        if not items or len(stores) != 1 or items[0].store is None:
            raise ValueError("collate: expected examples read from one EncodedStore")
        return cls(items[0].store, np.array([it.example_index for it in items], dtype=np.int64))


@dataclass
class Encoded:
    """One tokenised example (views into the store's columns); the collate pads them. The
    dicts hold only the tasks it supervises: ``labels`` class ids, ``tags`` tag id per sub-token,
    ``word_labels`` gold tag id per word, ``scores`` (pairs) the score or NaN."""

    input_ids: np.ndarray
    word_ids: np.ndarray
    num_words: int
    example_index: int
    source: int = 0
    input_ids_b: np.ndarray | None = None
    labels: dict[str, int] = field(default_factory=dict)
    tags: dict[str, np.ndarray] = field(default_factory=dict)
    word_labels: dict[str, np.ndarray] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    store: EncodedStore | None = field(default=None, repr=False, compare=False)  # its origin

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def is_pair(self) -> bool:
        return self.input_ids_b is not None

    def supervises(self, task: str) -> bool:
        return task in self.labels or task in self.tags or task in self.scores


def offsets(counts: np.ndarray) -> np.ndarray:
    """Segments of ``counts`` items laid end to end: segment i is ``[out[i], out[i + 1])``."""
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


class EncodedStore:
    """A split's encoded examples for tasks ``name -> kind``; ``store[i]`` is an ``Encoded``,
    ``lengths`` (a pair: its longer sentence) and ``sources`` feed the batch sampler. ``folder``
    is set when the columns are memory-mapped from disk."""

    def __init__(self, columns: dict[str, np.ndarray], tasks: Mapping[str, str],
                 folder: Path | None = None, info: dict[str, Any] | None = None) -> None:
        self.columns, self.tasks, self.folder, self.info = columns, dict(tasks), folder, info or {}
        for offsets_name, count_name in OFFSETS.values():
            if offsets_name not in columns:
                columns[offsets_name] = offsets(columns[count_name])
        self.token_offsets = columns["token_offsets"]
        self.token_b_offsets = columns["token_b_offsets"]
        self.word_offsets = columns["word_offsets"]
        self.sources = columns["sources"]
        lengths_b = columns["lengths_b"]
        self.lengths = (np.maximum(columns["lengths"], lengths_b) if lengths_b.any()
                        else columns["lengths"])

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> Encoded:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        c = self.columns
        t0, t1 = self.token_offsets[index], self.token_offsets[index + 1]
        w0, w1 = self.word_offsets[index], self.word_offsets[index + 1]
        item = Encoded(input_ids=c["input_ids"][t0:t1], word_ids=c["word_ids"][t0:t1],
                       num_words=int(w1 - w0), example_index=index,
                       source=int(c["sources"][index]), store=self)
        for task, kind in self.tasks.items():
            if not c[f"has.{task}"][index]:
                continue
            if kind == "label":
                item.labels[task] = int(c[f"label.{task}"][index])
            elif kind == "tags":
                item.tags[task] = c[f"tags.{task}"][t0:t1]
                item.word_labels[task] = c[f"words.{task}"][w0:w1]
            else:
                item.scores[task] = float(c[f"score.{task}"][index])
                b0, b1 = self.token_b_offsets[index], self.token_b_offsets[index + 1]
                item.input_ids_b = c["input_ids_b"][b0:b1]
        return item

    def __getitems__(self, indices: Sequence[int]) -> StoreRows:
        index = np.asarray(indices, dtype=np.int64)
        if len(index) and not (-len(self) <= int(index.min()) and int(index.max()) < len(self)):
            raise IndexError(f"indices outside 0..{len(self) - 1}")
        return StoreRows(self, index % max(1, len(self)))

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.columns.values())

    # Worker processes started with "spawn" get the folder, not a copy of every column.
    def __getstate__(self) -> dict[str, Any]:
        if self.folder is not None:
            return {"folder": self.folder}
        return {"columns": self.columns, "tasks": self.tasks, "info": self.info}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "folder" in state:
            opened = open_store(state["folder"])
            assert opened is not None, f"store folder {state['folder']} disappeared"
            state = {"columns": opened.columns, "tasks": opened.tasks, "folder": opened.folder,
                     "info": opened.info}
        self.__init__(state["columns"], state["tasks"], state.get("folder"),  # type: ignore[misc]
                      state.get("info"))


class StoreWriter:
    """Appends encoded chunks (the columns of ``task_columns(tasks)``); with ``folder`` they go
    straight to disk (constant memory) and the folder appears only when complete (written
    under a temporary name, then renamed)."""

    def __init__(self, tasks: Mapping[str, str], folder: str | Path | None = None) -> None:
        self.tasks = dict(tasks)
        self.schema = task_columns(self.tasks)
        self.folder = Path(folder) if folder is not None else None
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in self.schema}
        self.count = 0
        self.bases = {name: 0 for name, _ in OFFSETS.values()}
        self.handles: dict[str, Any] = {}
        if self.folder is not None:
            self.tmp = self.folder.with_name(f".{self.folder.name}.tmp{os.getpid()}")
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir(parents=True)
            for name in _with_offsets(self.schema):
                self.handles[name] = (self.tmp / f"{name}.bin").open("wb")
            for name in self.bases:
                np.zeros(1, dtype=np.int64).tofile(self.handles[name])

    def append(self, chunk: dict[str, np.ndarray]) -> None:
        self.count += len(chunk["lengths"])
        for name, (dtype, _) in self.schema.items():
            array = np.ascontiguousarray(chunk[name], dtype=dtype)
            if self.folder is None:
                self.parts[name].append(array)
            else:
                array.tofile(self.handles[name])
        if self.folder is not None:
            for name, count_name in OFFSETS.values():
                ends = self.bases[name] + np.cumsum(chunk[count_name], dtype=np.int64)
                ends.tofile(self.handles[name])
                self.bases[name] = int(ends[-1]) if len(ends) else self.bases[name]

    def finish(self, info: dict[str, Any] | None = None) -> EncodedStore:
        info = dict(info or {})
        if self.folder is None:
            columns = {name: (np.concatenate(parts) if parts else
                              np.zeros(0, dtype=self.schema[name][0]))
                       for name, parts in self.parts.items()}
            return EncodedStore(columns, self.tasks, info=info)
        for handle in self.handles.values():
            handle.close()
        meta = {"version": FORMAT_VERSION, "examples": self.count, "tasks": self.tasks,
                "info": info, "columns": {name: {"dtype": dtype, "unit": unit}
                                          for name, (dtype, unit) in _with_offsets(self.schema).items()}}
        (self.tmp / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        shutil.rmtree(self.folder, ignore_errors=True)
        os.replace(self.tmp, self.folder)
        opened = open_store(self.folder)
        assert opened is not None
        return opened

    def abort(self) -> None:
        """Drop a partial folder (a data error stopped the build)."""
        for handle in self.handles.values():
            handle.close()
        if self.folder is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def open_store(folder: str | Path) -> EncodedStore | None:
    """Memory-map a complete store folder; None when it is absent, from another format or
    damaged (a column of the wrong size: encode again)."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("version") != FORMAT_VERSION:
        return None
    columns = {}
    try:
        units = {name: spec["unit"] for name, spec in meta["columns"].items()}
        for name, spec in meta["columns"].items():
            path = folder / f"{name}.bin"
            columns[name] = (np.memmap(path, dtype=spec["dtype"], mode="r") if path.stat().st_size
                             else np.zeros(0, dtype=spec["dtype"]))
        n = meta["examples"]
        sizes = {"example": n, "offset": n + 1}
        sizes.update({unit: int(columns[name][-1]) for unit, (name, _) in OFFSETS.items()
                      if len(columns[name]) == n + 1})
        if any(len(columns[name]) != sizes.get(unit) for name, unit in units.items()):
            return None
        return EncodedStore(columns, meta["tasks"], folder, meta.get("info"))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a column file was removed or damaged: encode again
