"""Encoded splits as flat columns, in memory or memory-mapped from a folder.

One example is a slice of the token columns and of the word columns, so a split costs a few
bytes per token whatever its size, and a split written to disk is opened without reading it:
the batch sampler needs only ``lengths`` and ``sources``, and batches read their own slices.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IGNORE = -100
FORMAT_VERSION = 1
# column -> (dtype, unit): "token" columns hold one value per sub-token, "word" per word,
# "example" per example.
COLUMNS = {
    "input_ids": ("int32", "token"), "word_ids": ("int32", "token"),
    "ner_labels": ("int16", "token"), "word_labels": ("int16", "word"),
    "lengths": ("int32", "example"), "num_words": ("int32", "example"),
    "cls_labels": ("int32", "example"), "has_ner": ("bool", "example"),
    "sources": ("int32", "example"),
}
META = "meta.json"


@dataclass
class Encoded:
    """One tokenised example (views into the store's columns); the collate pads them."""

    input_ids: np.ndarray
    word_ids: np.ndarray
    ner_labels: np.ndarray | None
    word_labels: np.ndarray | None
    cls_label: int
    num_words: int
    example_index: int
    source: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)


def offsets(counts: np.ndarray) -> np.ndarray:
    """Segments of ``counts`` items laid end to end: segment i is ``[out[i], out[i + 1])``."""
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


class EncodedStore:
    """A split's encoded examples; ``store[i]`` is an ``Encoded``, ``lengths``/``sources`` feed
    the batch sampler. ``folder`` is set when the columns are memory-mapped from disk."""

    def __init__(self, columns: dict[str, np.ndarray], folder: Path | None = None,
                 info: dict[str, Any] | None = None) -> None:
        self.columns, self.folder, self.info = columns, folder, info or {}
        self.lengths = columns["lengths"]
        self.sources = columns["sources"]
        if "token_offsets" not in columns:
            columns["token_offsets"] = offsets(self.lengths)
            columns["word_offsets"] = offsets(columns["num_words"])
        self.token_offsets, self.word_offsets = columns["token_offsets"], columns["word_offsets"]

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> Encoded:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        c = self.columns
        t0, t1 = self.token_offsets[index], self.token_offsets[index + 1]
        w0, w1 = self.word_offsets[index], self.word_offsets[index + 1]
        labelled = bool(c["has_ner"][index])
        return Encoded(
            input_ids=c["input_ids"][t0:t1], word_ids=c["word_ids"][t0:t1],
            ner_labels=c["ner_labels"][t0:t1] if labelled else None,
            word_labels=c["word_labels"][w0:w1] if labelled else None,
            cls_label=int(c["cls_labels"][index]), num_words=int(w1 - w0),
            example_index=index, source=int(c["sources"][index]))

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.columns.values())

    # Worker processes started with "spawn" get the folder, not a copy of every column.
    def __getstate__(self) -> dict[str, Any]:
        if self.folder is not None:
            return {"folder": self.folder}
        return {"columns": self.columns, "info": self.info}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "folder" in state:
            opened = open_store(state["folder"])
            assert opened is not None, f"store folder {state['folder']} disappeared"
            state = {"columns": opened.columns, "folder": opened.folder, "info": opened.info}
        self.__init__(state["columns"], state.get("folder"), state.get("info"))  # type: ignore[misc]


def _all_columns() -> dict[str, tuple[str, str]]:
    return {**COLUMNS, "token_offsets": ("int64", "offset"), "word_offsets": ("int64", "offset")}


class StoreWriter:
    """Appends encoded chunks; with ``folder`` they go straight to disk (constant memory) and the
    folder appears only when complete (written under a temporary name, then renamed)."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in COLUMNS}
        self.count = 0
        self.bases = {"token_offsets": 0, "word_offsets": 0}
        self.handles: dict[str, Any] = {}
        if self.folder is not None:
            self.tmp = self.folder.with_name(f".{self.folder.name}.tmp{os.getpid()}")
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir(parents=True)
            for name in _all_columns():
                self.handles[name] = (self.tmp / f"{name}.bin").open("wb")
            for name in self.bases:
                np.zeros(1, dtype=np.int64).tofile(self.handles[name])

    def append(self, chunk: dict[str, np.ndarray]) -> None:
        self.count += len(chunk["lengths"])
        for name, (dtype, _) in COLUMNS.items():
            array = np.ascontiguousarray(chunk[name], dtype=dtype)
            if self.folder is None:
                self.parts[name].append(array)
            else:
                array.tofile(self.handles[name])
        if self.folder is not None:
            for name, counts in (("token_offsets", chunk["lengths"]), ("word_offsets", chunk["num_words"])):
                ends = self.bases[name] + np.cumsum(counts, dtype=np.int64)
                ends.tofile(self.handles[name])
                self.bases[name] = int(ends[-1]) if len(ends) else self.bases[name]

    def finish(self, info: dict[str, Any] | None = None) -> EncodedStore:
        info = dict(info or {})
        if self.folder is None:
            columns = {name: (np.concatenate(parts) if parts else np.zeros(0, dtype=COLUMNS[name][0]))
                       for name, parts in self.parts.items()}
            return EncodedStore(columns, info=info)
        for handle in self.handles.values():
            handle.close()
        meta = {"version": FORMAT_VERSION, "examples": self.count, "info": info,
                "columns": {name: dtype for name, (dtype, _) in _all_columns().items()}}
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
    """Memory-map a complete store folder; None when it is absent or from another format."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("version") != FORMAT_VERSION:
        return None
    columns = {}
    try:
        for name, dtype in meta["columns"].items():
            path = folder / f"{name}.bin"
            columns[name] = (np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size
                             else np.zeros(0, dtype=dtype))
    except (OSError, ValueError, KeyError):
        return None  # a column file was removed or damaged: encode again
    n, tokens, words = meta.get("examples"), columns["token_offsets"], columns["word_offsets"]
    if (len(columns["lengths"]) != n or len(tokens) != n + 1 or len(words) != n + 1
            or len(columns["input_ids"]) != tokens[-1] or len(columns["word_labels"]) != words[-1]):
        return None
    return EncodedStore(columns, folder, meta.get("info"))
