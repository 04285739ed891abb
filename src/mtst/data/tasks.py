"""What the data layer needs to know about a task: its kind, its files and its label field.

A task's *type* (``sentence_classification``, ...) lives in ``mtst.tasks``; each type reads its
records as one of three data *kinds*:

- ``label``: one class per sentence (``labels`` = class names);
- ``tags``: one BIO tag per word (``labels`` = entity types; tags are ``O``, ``B-X``, ``I-X``);
- ``pair``: two sentences, with a gold similarity score (``sentence1``, ``sentence2``,
  ``score``) or without one (``anchor``, ``positive``).

A file may be listed under several tasks of the ``label`` and ``tags`` kinds: it is read once
and each of its records supervises every task whose label field it fills (partial labels).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtst.data.readers import SourceSpec
from mtst.errors import MtstError

KINDS = ("label", "tags", "pair")
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
SPLITS = ("train", "val", "test")
# the JSON field a kind reads its labels from when the task does not name one
DEFAULT_FIELDS = {"label": "label", "tags": "ner_tags", "pair": "score"}


@dataclass(frozen=True)
class TaskData:
    """One task as the data module sees it."""

    name: str
    kind: str
    labels: tuple[str, ...] | None = None
    field: str | None = None
    # dataclasses.field in full: the attribute ``field`` above shadows the bare name here
    files: Mapping[str, tuple[SourceSpec, ...]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise MtstError(f"tasks.{self.name}: a task name is letters, digits, '_' and '-' (it "
                            "names batch keys and store columns)")
        if self.kind not in KINDS:
            raise MtstError(f"tasks.{self.name}: data kind {self.kind!r} unknown; one of {KINDS}")

    @property
    def label_field(self) -> str:
        """The JSON record field that holds this task's labels."""
        return self.field or DEFAULT_FIELDS[self.kind]

    def split_files(self, split: str) -> tuple[SourceSpec, ...]:
        return tuple(self.files.get(split, ()))

    @classmethod
    def parse(cls, name: str, kind: str, settings: Mapping[str, Any]) -> TaskData:
        """From a task's config values: ``train_files`` / ``val_files`` / ``test_files`` (a path,
        a file dict or a list of them; empty or missing = none), ``labels`` and ``field``."""
        files = {}
        for split in SPLITS:
            key = f"{split}_files"
            value = settings.get(key)
            if value is None:
                value = []
            if isinstance(value, (str, Mapping)):
                value = [value]
            if not isinstance(value, Sequence):
                raise MtstError(f"tasks.{name}.{key}: expected a list of paths or file dicts, got "
                                f"{type(value).__name__}")
            files[split] = tuple(SourceSpec.parse(entry) for entry in value)
        labels = settings.get("labels")
        if labels is not None:
            if isinstance(labels, str) or not isinstance(labels, Sequence):
                raise MtstError(f"tasks.{name}.labels: expected a list of names or null, got "
                                f"{labels!r}")
            labels = tuple(str(x) for x in labels)
        label_field = settings.get("field")
        return cls(name=name, kind=kind, labels=labels,
                   field=None if label_field is None else str(label_field), files=files)


def as_tasks(tasks: Mapping[str, TaskData | str] | Sequence[TaskData]) -> dict[str, TaskData]:
    """``name -> TaskData`` from a mapping (values TaskData, or a kind for tasks without files)
    or a sequence of TaskData; the order given is kept (it orders a split's files)."""
    if isinstance(tasks, Mapping):
        out = {}
        for name, task in tasks.items():
            if isinstance(task, str):
                task = TaskData(str(name), task)
            if not isinstance(task, TaskData):
                raise MtstError(f"tasks.{name}: expected task data, got {type(task).__name__}")
            if task.name != name:
                raise MtstError(f"tasks.{name}: the task data is named {task.name!r}")
            out[str(name)] = task
        return out
    out = {}
    for task in tasks:
        if not isinstance(task, TaskData):
            raise MtstError(f"tasks: expected task data, got {type(task).__name__}")
        if task.name in out:
            raise MtstError(f"tasks.{task.name}: two tasks have this name")
        out[task.name] = task
    return out


def task_kinds(tasks: Mapping[str, TaskData | str] | Sequence[TaskData]) -> dict[str, str]:
    """``name -> kind``: what the collate and the store need (plain strings pickle cheaply)."""
    return {name: task.kind for name, task in as_tasks(tasks).items()}
