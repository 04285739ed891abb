"""LightningDataModule wiring readers, validation, alignment and batching together.

Files are read, validated and tokenised once per split in ``setup`` (cached, so repeated
``setup`` calls are free); dataloaders only pad and order what is already encoded.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from mtst.data.alignment import CHUNK, AlignmentStats, SubwordCache, encode_chunk
from mtst.data.batching import (
    SAMPLING_MODES,
    MultiTaskBatchSampler,
    ResumableDataLoader,
    ShardedEvalSampler,
)
from mtst.data.collate import Collator
from mtst.data.labels import DEFAULT_CLASSES, DEFAULT_ENTITY_TYPES, LabelSpace
from mtst.data.readers import SourceSpec
from mtst.data.store import FORMAT_VERSION, EncodedStore, StoreWriter, open_store
from mtst.data.validation import Example, check_label_space, infer_label_space, iter_split
from mtst.errors import MtstError

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
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


def _specs(files: Any, split: str) -> list[SourceSpec]:
    files = _plain(files)
    if files is None:
        return []
    if isinstance(files, (str, Mapping)):
        files = [files]
    if not isinstance(files, Sequence):
        raise MtstError(f"data.{split}_files: expected a list of paths or dicts, got {type(files).__name__}")
    return [SourceSpec.parse(f) for f in files]


def _chunks(items: Iterable[Example], size: int) -> Iterator[list[Example]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


@contextmanager
def gc_paused() -> Iterator[None]:
    """Loading builds millions of small objects and no cycles: the cyclic collector only rescans
    them, over and over (3x CoNLL-2003 train: setup 5.0 s -> 4.4 s; more at larger scale)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class MultiTaskDataModule(L.LightningDataModule):
    """Topic + NER data from JSON/JSONL/CoNLL/CSV files with partial supervision."""

    def __init__(
        self,
        train_files: Any = None,
        val_files: Any = None,
        test_files: Any = None,
        labels: Mapping[str, Any] | None = None,
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
    ) -> None:
        super().__init__()
        if sampling not in SAMPLING_MODES:
            raise MtstError(f"data.sampling={sampling!r}: expected one of {', '.join(SAMPLING_MODES)}")
        if max_length < 2 or batch_size < 1:
            raise MtstError(f"data.max_length={max_length} / data.batch_size={batch_size}: too small")
        if (eval_batch_size is not None and eval_batch_size < 1) or num_workers < 0:
            raise MtstError(f"data.eval_batch_size={eval_batch_size} / data.num_workers={num_workers}:"
                            " expected a positive batch size (or null) and workers >= 0")
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                       or max_tokens < max_length):
            raise MtstError(f"data.max_tokens={max_tokens!r}: expected null or an integer >= "
                            f"data.max_length={max_length}, so that the longest example fits a batch")
        self.max_tokens = max_tokens
        self.specs = {s: _specs(f, s) for s, f in zip(SPLITS, (train_files, val_files, test_files),
                                                       strict=True)}
        labels = _plain(labels) or {}
        self.given_classes = labels.get("classes", list(DEFAULT_CLASSES))
        self.given_entity_types = labels.get("entity_types", list(DEFAULT_ENTITY_TYPES))
        self.max_length, self.batch_size = int(max_length), int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.bucket_by_length, self.sampling, self.temperature = bucket_by_length, sampling, temperature
        self.label_all_subtokens, self.strict_bio, self.seed = label_all_subtokens, strict_bio, seed
        self.num_workers = int(num_workers)
        self.pin_memory = None if pin_memory is None else bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.store_dir = Path(store_dir) if store_dir else None
        self.tokenizer = tokenizer
        self._label_space: LabelSpace | None = None
        self._label_note = ""
        self._datasets: dict[str, EncodedStore] = {}
        self.stats: dict[str, AlignmentStats] = {}
        self.train_sampler: MultiTaskBatchSampler | None = None

    # -- tokenizer and label space -------------------------------------------------------
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
    def label_space(self) -> LabelSpace:
        if self._label_space is None:
            raise MtstError("label_space is known only after setup() (or resolve_label_space())")
        return self._label_space

    def has_split(self, split: str) -> bool:
        """Whether any file is listed for ``split`` (train/val/test)."""
        return bool(self.specs.get(split))

    def resolve_label_space(self) -> LabelSpace:
        """The label space without tokenising: reads training files only if a part is null."""
        if self._label_space is None:
            classes, types = self.given_classes, self.given_entity_types
            if classes is None or types is None:
                if not self.specs["train"]:
                    raise MtstError("data.labels has null entries but there are no train_files to "
                                    "infer them from")
                examples = iter_split(self.specs["train"], "train", self.strict_bio)
                self._label_space = infer_label_space(examples, classes, types)
                self._label_note = "label space inferred from the training files"
            else:
                self._label_space = LabelSpace(classes, types)
                self._label_note = "label space set in data.labels"
        return self._label_space

    # -- Lightning hooks -------------------------------------------------------------------
    def prepare_data(self) -> None:
        """With ``store_dir``, encode every split to disk once: Lightning runs this on one process
        per node before ``setup``, so DDP ranks open the finished folders instead of racing."""
        if self.store_dir is not None:
            space = self.resolve_label_space()
            for split in SPLITS:
                if self.specs[split]:
                    self.dataset(split, space)

    def setup(self, stage: str | None = None) -> None:
        space = self.resolve_label_space()
        for split in _STAGE_SPLITS.get(stage or "fit", SPLITS):
            if split == "train" or self.specs[split]:
                self.dataset(split, space)

    def dataset(self, split: str, space: LabelSpace | None = None) -> EncodedStore:
        """Validated, label-checked and tokenised split (cached; reused from ``store_dir``)."""
        if split not in self._datasets:
            space = space or self.resolve_label_space()
            folder = self.store_folder(split, space) if self.store_dir else None
            store = open_store(folder) if folder else None
            if store is not None:
                log.info("%s data: reusing the encoded split in %s", split, folder)
                stats = AlignmentStats(**store.info.get("stats", {}))
            else:
                stats = AlignmentStats()
                store = self._encode(split, space, folder, stats)
            stats.warn(split, self.max_length)
            self.stats[split] = stats
            self._datasets[split] = store
        return self._datasets[split]

    def _encode(self, split: str, space: LabelSpace, folder: Path | None,
                stats: AlignmentStats) -> EncodedStore:
        """Stream the split's files through validation and tokenisation, one chunk at a time."""
        cache = SubwordCache(self._tok())
        writer = StoreWriter(folder)
        try:
            with gc_paused():
                for chunk in _chunks(iter_split(self.specs[split], split, self.strict_bio), CHUNK):
                    check_label_space(chunk, space, self._label_note)
                    writer.append(encode_chunk(chunk, cache, space, self.max_length,
                                               self.label_all_subtokens, stats))
        except BaseException:
            writer.abort()
            raise
        return writer.finish({"stats": dataclasses.asdict(stats)})

    def store_folder(self, split: str, space: LabelSpace) -> Path:
        """``store_dir/<split>-<fingerprint>``: a new folder whenever the files (size, mtime),
        the tokenizer, the label space or an encoding option change."""
        files = []
        for spec in self.specs[split]:
            try:
                st = os.stat(spec.path)
                files.append({**dataclasses.asdict(spec), "path": os.path.abspath(spec.path),
                              "size": st.st_size, "mtime_ns": st.st_mtime_ns})
            except OSError:  # reading reports the missing file
                files.append(dataclasses.asdict(spec))
        key = {"version": FORMAT_VERSION, "files": files, "labels": space.to_dict(),
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
        return loader_cls(ds, collate_fn=Collator(self.pad_token_id), num_workers=self.num_workers,
                          pin_memory=self.pins_memory(), persistent_workers=self.persistent_workers,
                          **kwargs)

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        self.train_sampler = MultiTaskBatchSampler(
            ds.lengths, ds.sources, self.batch_size, sampling=self.sampling,
            temperature=self.temperature, bucket_by_length=self.bucket_by_length, seed=self.seed,
            max_tokens=self.max_tokens)
        return self._loader(ds, ResumableDataLoader, batch_sampler=self.train_sampler)

    def _eval_loader(self, split: str) -> DataLoader | list:
        if not self.specs[split]:
            return []
        ds = self.dataset(split)
        return self._loader(ds, batch_size=self.eval_batch_size, sampler=ShardedEvalSampler(len(ds)))

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader | list:
        return self._eval_loader("test")

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"label_space": self._label_space.to_dict() if self._label_space else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the checkpoint's label ids on resume, even if inference would now order them differently."""
        saved = state_dict.get("label_space")
        if saved is not None and LabelSpace.from_dict(saved) != self._label_space:
            self._label_space = LabelSpace.from_dict(saved)
            self._label_note = "label space stored in the checkpoint"
            self._datasets.clear()
