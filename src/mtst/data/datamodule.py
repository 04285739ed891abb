"""LightningDataModule wiring readers, validation, alignment and batching together.

Files are read, validated and tokenised once per split in ``setup`` (cached, so repeated
``setup`` calls are free); dataloaders only pad and order what is already encoded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from mtst.data.alignment import (
    CHUNK,
    AlignmentStats,
    SubwordCache,
    chunked,
    encode_chunk,
    gc_paused,
)
from mtst.data.batching import SAMPLING_MODES, MultiTaskBatchSampler
from mtst.data.collate import Collator
from mtst.data.labels import LabelSpace
from mtst.data.loaders import ResumableDataLoader, ShardedEvalSampler
from mtst.data.readers import SourceSpec
from mtst.data.sources import (
    check_label_spaces,
    iter_split,
    resolve_label_spaces,
    split_sources,
)
from mtst.data.store import FORMAT_VERSION, EncodedStore, StoreWriter, open_store
from mtst.data.tasks import SPLITS, TaskData, as_tasks, task_kinds
from mtst.errors import MtstError

log = logging.getLogger(__name__)
_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ()}


def _plain(value: Any) -> Any:
    """OmegaConf containers (what Hydra passes) -> plain dicts/lists."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


class MultiTaskDataModule(L.LightningDataModule):
    """Named tasks of three data kinds (``label``, ``tags``, ``pair``) from JSON/JSONL/CoNLL/
    CSV/TSV files, with partial supervision: each task lists its own files per split and a file
    listed under several tasks is read once.

    Args (a run takes every value from conf/data/sample.yaml, which `train.py` builds this from):
        tasks: each task's data (files per split, format, label fields), by name.
        max_length: sub-tokens per example, special tokens included; longer examples are cut.
        batch_size: training examples per batch (split evenly between tasks with `balanced`).
        max_tokens: None, or a padded-token budget per training batch instead of `batch_size`.
        eval_batch_size: validation/test batch size; None: `batch_size`.
        bucket_by_length: group examples of similar length into training batches.
        sampling, temperature: how training batches mix the files (`SAMPLING_MODES`).
        label_all_subtokens: every sub-token of a word carries its tag (else the first only).
        strict_bio: an I-X that does not continue X is an error instead of being repaired.
        num_workers, pin_memory, persistent_workers: as torch's DataLoader.
        seed: the batch order's seed.
        store_dir: None keeps encoded splits in memory; a folder keeps them memory-mapped there.
        tokenizer, label_spaces: the backbone's tokenizer; label spaces to use instead of
            inferring them (a resumed or evaluated checkpoint's).
    """

    def __init__(
        self,
        tasks: Mapping[str, TaskData] | Sequence[TaskData],
        max_length: int = 128,
        batch_size: int = 16,
        max_tokens: int | None = None,
        eval_batch_size: int | None = None,
        bucket_by_length: bool = True,
        sampling: str = "proportional",
        temperature: float = 2.0,
        label_all_subtokens: bool = False,
        strict_bio: bool = False,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        persistent_workers: bool = False,
        seed: int = 42,
        store_dir: str | None = None,
        tokenizer: Any = None,
        label_spaces: Mapping[str, LabelSpace | Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if sampling not in SAMPLING_MODES:
            raise MtstError(f"data.sampling={sampling!r}: expected one of {', '.join(SAMPLING_MODES)}")
        if sampling == "balanced" and max_tokens is not None:
            raise MtstError(f"data.sampling=balanced with data.max_tokens={max_tokens}: balanced "
                            "splits a fixed data.batch_size between the sources; set one of them")
        if max_length < 2 or batch_size < 1:
            raise MtstError(f"data.max_length={max_length} / data.batch_size={batch_size}: too small")
        if (eval_batch_size is not None and eval_batch_size < 1) or num_workers < 0:
            raise MtstError(f"data.eval_batch_size={eval_batch_size} / data.num_workers={num_workers}:"
                            " expected a positive batch size (or null) and workers >= 0")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens < max_length):
            raise MtstError(f"data.max_tokens={max_tokens!r}: expected null or an integer >= "
                            f"data.max_length={max_length}, so that the longest example fits a batch")
        self.tasks = as_tasks(tasks)
        if not self.tasks:
            raise MtstError("tasks: the data module needs at least one task")
        for split in SPLITS:
            split_sources(self.tasks, split)  # refuse impossible file/task combinations now
        self.max_tokens = max_tokens
        self.max_length, self.batch_size = int(max_length), int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.bucket_by_length, self.sampling, self.temperature = bucket_by_length, sampling, temperature
        self.label_all_subtokens, self.strict_bio, self.seed = label_all_subtokens, strict_bio, seed
        self.num_workers = int(num_workers)
        self.pin_memory = None if pin_memory is None else bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.store_dir = Path(store_dir) if store_dir else None
        self.tokenizer = tokenizer
        self._given: dict[str, tuple[LabelSpace, str]] = {}
        self._give(label_spaces or {}, "label space given to the data module")
        self._label_spaces: dict[str, LabelSpace] | None = None
        self._label_notes: dict[str, str] = {}
        self._datasets: dict[str, EncodedStore] = {}
        self.stats: dict[str, AlignmentStats] = {}
        self.train_sampler: MultiTaskBatchSampler | None = None

    # -- tokenizer and label spaces ------------------------------------------------------
    def set_tokenizer(self, tokenizer: Any) -> None:
        """Use ``tokenizer`` (object or local path); cached encodings of another one are dropped."""
        if tokenizer is not self.tokenizer:
            self.tokenizer = tokenizer
            self._datasets.clear()

    def _tok(self) -> Any:
        if self.tokenizer is None:
            raise MtstError("the data module has no tokenizer: call set_tokenizer() before setup()")
        if isinstance(self.tokenizer, str):
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer)
        return self.tokenizer

    @property
    def pad_token_id(self) -> int:
        tok = self._tok()
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is None:
            raise MtstError("the tokenizer has neither a pad nor an eos token to pad batches with")
        return int(pad)

    @property
    def task_kinds(self) -> dict[str, str]:
        return task_kinds(self.tasks)

    @property
    def label_spaces(self) -> dict[str, LabelSpace]:
        if self._label_spaces is None:
            raise MtstError("label_spaces are known only after setup() (or resolve_label_spaces())")
        return self._label_spaces

    def has_split(self, split: str) -> bool:
        """Whether any task lists a file for ``split`` (train/val/test)."""
        return any(task.split_files(split) for task in self.tasks.values())

    def source_specs(self, split: str) -> list[SourceSpec]:
        """The split's distinct files in source order (what ``Encoded.source`` indexes)."""
        return [source.spec for source in split_sources(self.tasks, split)]

    def _give(self, spaces: Mapping[str, Any], note: str) -> None:
        """Take label spaces from outside (given, or from a checkpoint): they win over
        ``labels`` and inference."""
        for name, space in dict(_plain(spaces)).items():
            if name not in self.tasks:
                continue  # a task of the checkpoint this run does not use
            if not isinstance(space, LabelSpace):
                space = LabelSpace.from_dict(space, name)
            if space.kind != self.tasks[name].kind:
                raise MtstError(f"tasks.{name}: the {note} is of kind {space.kind!r}, the task of "
                                f"kind {self.tasks[name].kind!r}")
            self._given[name] = (space, note)

    def resolve_label_spaces(self) -> dict[str, LabelSpace]:
        """Every task's label space without tokenising: given ones win, then each task's
        ``labels``; the train files are read only for tasks whose ``labels`` is null."""
        if self._label_spaces is None:
            self._label_spaces, self._label_notes = resolve_label_spaces(
                self.tasks, self._given, self.strict_bio)
        return self._label_spaces

    # -- Lightning hooks -------------------------------------------------------------------
    def prepare_data(self) -> None:
        """With ``store_dir``, encode every split to disk once: Lightning runs this on one process
        per node before ``setup``, so DDP ranks open the finished folders instead of racing."""
        if self.store_dir is not None:
            self.resolve_label_spaces()
            for split in SPLITS:
                if self.has_split(split):
                    self.dataset(split)

    def setup(self, stage: str | None = None) -> None:
        self.resolve_label_spaces()
        for split in _STAGE_SPLITS.get(stage or "fit", SPLITS):
            if split == "train" or self.has_split(split):
                self.dataset(split)

    def dataset(self, split: str) -> EncodedStore:
        """Validated, label-checked and tokenised split (cached; reused from ``store_dir``)."""
        if split not in self._datasets:
            spaces = self.resolve_label_spaces()
            folder = self.store_folder(split) if self.store_dir else None
            store = open_store(folder) if folder else None
            if store is not None:
                log.info("%s data: reusing the encoded split in %s", split, folder)
                stats = AlignmentStats(**store.info.get("stats", {}))
            else:
                stats = AlignmentStats()
                store = self._encode(split, spaces, folder, stats)
            stats.warn(split, self.max_length)
            self.stats[split] = stats
            self._datasets[split] = store
        return self._datasets[split]

    def _encode(self, split: str, spaces: dict[str, LabelSpace], folder: Path | None,
                stats: AlignmentStats) -> EncodedStore:
        """Stream the split's files through validation and tokenisation, one chunk at a time."""
        cache = SubwordCache(self._tok())
        kinds = self.task_kinds
        writer = StoreWriter(kinds, folder)
        try:
            with gc_paused():
                for chunk in chunked(iter_split(self.tasks, split, self.strict_bio), CHUNK):
                    check_label_spaces(chunk, self.tasks, spaces, self._label_notes)
                    writer.append(encode_chunk(chunk, cache, kinds, spaces, self.max_length,
                                               self.label_all_subtokens, stats))
        except BaseException:
            writer.abort()
            raise
        return writer.finish({"stats": dataclasses.asdict(stats)})

    def store_folder(self, split: str) -> Path:
        """``store_dir/<split>-<fingerprint>``: a new folder whenever the files (size, mtime),
        the tasks (kinds, fields, files, label spaces), the tokenizer or an encoding option
        change."""
        files = [source.identity() for source in split_sources(self.tasks, split)]
        spaces = self.resolve_label_spaces()
        tasks = [{"name": name, "kind": task.kind, "field": task.label_field,
                  "labels": spaces[name].to_dict()} for name, task in self.tasks.items()]
        key = {"version": FORMAT_VERSION, "files": files, "tasks": tasks,
               "max_length": self.max_length, "label_all_subtokens": self.label_all_subtokens,
               "strict_bio": self.strict_bio}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode())
        backend = getattr(self._tok(), "backend_tokenizer", None)
        digest.update((backend.to_str() if backend is not None else repr(self._tok())).encode())
        assert self.store_dir is not None
        return self.store_dir / f"{split}-{digest.hexdigest()[:16]}"

    def pins_memory(self) -> bool:
        """``pin_memory`` as set, or (null) whether the attached trainer runs on CUDA: batches in
        page-locked memory are what lets Lightning's non-blocking copies overlap with compute."""
        if self.pin_memory is not None:
            return self.pin_memory
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return False
        from lightning.pytorch.accelerators import CUDAAccelerator

        return isinstance(trainer.accelerator, CUDAAccelerator)

    def _loader(self, ds: EncodedStore, loader_cls: type = DataLoader, **kwargs: Any) -> DataLoader:
        return loader_cls(ds, collate_fn=Collator(self.pad_token_id, self.task_kinds),
                          num_workers=self.num_workers, pin_memory=self.pins_memory(),
                          persistent_workers=self.persistent_workers, **kwargs)

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        self.train_sampler = MultiTaskBatchSampler(
            ds.lengths, ds.sources, self.batch_size, sampling=self.sampling,
            temperature=self.temperature, bucket_by_length=self.bucket_by_length, seed=self.seed,
            max_tokens=self.max_tokens)
        return self._loader(ds, ResumableDataLoader, batch_sampler=self.train_sampler)

    def _eval_loader(self, split: str) -> DataLoader | list:
        if not self.has_split(split):
            return []
        ds = self.dataset(split)
        return self._loader(ds, batch_size=self.eval_batch_size, sampler=ShardedEvalSampler(len(ds)))

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader | list:
        return self._eval_loader("test")

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        spaces = self._label_spaces or {name: space for name, (space, _) in self._given.items()}
        return {"label_spaces": {name: space.to_dict() for name, space in spaces.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the checkpoint's label ids on resume, even if inference would now order them
        differently."""
        note = "label space stored in the checkpoint"
        self._give(state_dict.get("label_spaces") or {}, note)
        if self._label_spaces is None:
            return
        for name, (space, given_note) in self._given.items():
            if self._label_spaces[name] != space:
                self._label_spaces[name], self._label_notes[name] = space, given_note
                self._datasets.clear()
