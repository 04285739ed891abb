"""Which files a split reads, for which tasks; the validated examples they give; label spaces.

A split reads the distinct file entries of all its tasks once each, in order of first
appearance (task order, then file order): the entry's position is the example's ``source``,
which the batch sampler mixes by. Each record supervises the tasks listing its file whose
label field it fills.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtst.data.labels import OUTSIDE, LabelSpace
from mtst.data.readers import SourceSpec, iter_source
from mtst.data.tasks import TaskData
from mtst.data.validation import Example, Tally, bio_repairs, validate_pair, validate_record
from mtst.errors import DataError, MtstError

ONE_TASK_FORMATS = ("conll", "csv", "tsv")  # one label column: such a file feeds one task


@dataclass(frozen=True)
class Source:
    """One distinct file entry of a split and the tasks that list it."""

    spec: SourceSpec
    tasks: tuple[TaskData, ...]

    @property
    def is_pair(self) -> bool:
        return self.tasks[0].kind == "pair"

    def task_names(self) -> str:
        return ", ".join(t.name for t in self.tasks)

    def identity(self) -> dict[str, Any]:
        """What an encoded copy depends on: the entry, its tasks, and the file's size and
        modification time (a changed file is encoded again)."""
        entry = {**dataclasses.asdict(self.spec), "tasks": [t.name for t in self.tasks]}
        try:
            st = os.stat(self.spec.path)
        except OSError:  # reading reports the missing file
            return entry
        return {**entry, "path": os.path.abspath(self.spec.path), "size": st.st_size,
                "mtime_ns": st.st_mtime_ns}


def _check_source(spec: SourceSpec, tasks: Sequence[TaskData]) -> None:
    """Combinations a file cannot serve, refused before anything is read."""
    pair = [t for t in tasks if t.kind == "pair"]
    other = [t for t in tasks if t.kind != "pair"]
    if pair and other:
        raise DataError(spec.path, None, f"listed under pair task {pair[0].name} and {other[0].kind} "
                        f"task {other[0].name}: a file of sentence pairs cannot feed a label or "
                        "tags task")
    for task in tasks:
        if spec.format == "conll" and task.kind != "tags":
            raise DataError(spec.path, None, f"task {task.name} (kind {task.kind}) cannot read a "
                            "CoNLL file: its columns hold per-word tags; use a JSON/JSONL or "
                            "CSV/TSV file")
        if spec.format in ("csv", "tsv") and task.kind == "tags":
            raise DataError(spec.path, None, f"task {task.name} (kind tags) cannot read a "
                            f"{spec.format.upper()} file: rows have no per-word tags; use "
                            "JSON/JSONL or CoNLL")
    if spec.format in ONE_TASK_FORMATS and len(tasks) > 1:
        raise DataError(spec.path, None, f"listed under tasks {', '.join(t.name for t in tasks)}: "
                        f"a {spec.format.upper()} file has one label column, so it feeds one "
                        "task; list it under one task or use JSON/JSONL with a field per task")


def split_sources(tasks: Mapping[str, TaskData], split: str) -> list[Source]:
    """The split's distinct file entries in order of first appearance, each with its tasks."""
    specs: list[SourceSpec] = []
    owners: list[list[TaskData]] = []
    for task in tasks.values():
        for spec in task.split_files(split):
            if spec in specs:
                listed = owners[specs.index(spec)]
                if all(t.name != task.name for t in listed):
                    listed.append(task)
            else:
                specs.append(spec)
                owners.append([task])
    for spec, listed in zip(specs, owners, strict=True):
        _check_source(spec, listed)
    return [Source(spec, tuple(listed)) for spec, listed in zip(specs, owners, strict=True)]


def iter_split(tasks: Mapping[str, TaskData], split: str, strict_bio: bool = False,
               only: Collection[str] | None = None) -> Iterator[Example]:
    """Read and validate every file of a split once, streamed (``only``: just the files of
    those tasks, still validated for every task listing them).

    A record that supervises none of its file's tasks is skipped and counted (one warning per
    split); a file that gives no supervised example at all is an error."""
    sources = split_sources(tasks, split)
    if not sources:
        raise DataError(f"<{split} files>", None, f"no files listed for the {split} split")
    repairs = bio_repairs()
    skipped = Tally("skipped {count} record(s) that fill the label field of none of the tasks "
                    "listing their file (first at {first})")
    for i, source in enumerate(sources):
        if only is not None and not any(t.name in only for t in source.tasks):
            continue
        first = source.tasks[0]
        supervised = 0
        for rec in iter_source(source.spec, first.label_field, source.is_pair):
            if source.is_pair:
                ex = validate_pair(rec, source.tasks, i)
            else:
                ex = validate_record(rec, source.tasks, i, strict_bio, repairs)
                if not ex.labels and not ex.tags:
                    skipped.add(f"{rec.path}:{rec.where}")
                    continue
            supervised += 1
            yield ex
        if not supervised:
            fields = ", ".join(sorted({t.label_field for t in source.tasks}))
            raise DataError(source.spec.path, None, f"no record supervises its task(s) "
                            f"{source.task_names()}: none fills the field(s) {fields}")
    repairs.warn(split)
    skipped.warn(split)


def load_split(tasks: Mapping[str, TaskData], split: str, strict_bio: bool = False) -> list[Example]:
    return list(iter_split(tasks, split, strict_bio))


def seen_labels(examples: Iterable[Example]) -> dict[str, set[str]]:
    """Per task: the classes (``label``) or entity types (``tags``) the examples use."""
    seen: dict[str, set[str]] = {}
    for ex in examples:
        for task, label in ex.labels.items():
            seen.setdefault(task, set()).add(label)
        for task, tags in ex.tags.items():
            seen.setdefault(task, set()).update(tag[2:] for tag in tags if tag != OUTSIDE)
    return seen


def infer_label_spaces(examples: Iterable[Example],
                       tasks: Mapping[str, TaskData]) -> dict[str, LabelSpace]:
    """Each task's space: its ``labels`` when given, else the names the (training) examples
    use, sorted for stable ids; pair tasks have an empty space."""
    seen = seen_labels(examples)
    spaces = {}
    for name, task in tasks.items():
        if task.kind != "pair" and task.labels is None and not seen.get(name):
            what = "classes" if task.kind == "label" else "entity types (only O tags)"
            raise MtstError(f"tasks.{name}.labels is null but its train files hold no {what} for "
                            f"field {task.label_field!r}; list the labels")
        spaces[name] = LabelSpace.infer(task.kind, seen.get(name, ()), task.labels, name)
    return spaces


def resolve_label_spaces(tasks: Mapping[str, TaskData],
                         given: Mapping[str, tuple[LabelSpace, str]],
                         strict_bio: bool = False) -> tuple[dict[str, LabelSpace], dict[str, str]]:
    """Each task's label space and where it comes from (for error messages): ``given`` ones
    (name -> (space, note)) win, then the task's ``labels``; the train files are read only for
    tasks whose ``labels`` is null, and only theirs."""
    spaces: dict[str, LabelSpace] = {}
    notes: dict[str, str] = {}
    infer = []
    for name, task in tasks.items():
        if name in given:
            spaces[name], notes[name] = given[name]
        elif task.kind == "pair":
            spaces[name], notes[name] = LabelSpace("pair"), ""
        elif task.labels is not None:
            spaces[name] = LabelSpace(task.kind, task.labels, name)
            notes[name] = f"label space set in tasks.{name}.labels"
        elif not task.split_files("train"):
            raise MtstError(f"tasks.{name}.labels is null but the task has no train_files to "
                            "infer them from")
        else:
            infer.append(name)
    if infer:
        examples = iter_split(tasks, "train", strict_bio, only=infer)
        spaces.update(infer_label_spaces(examples, {name: tasks[name] for name in infer}))
        notes.update((name, "label space inferred from the training files") for name in infer)
    return {name: spaces[name] for name in tasks}, notes


def check_label_spaces(examples: Iterable[Example], tasks: Mapping[str, TaskData],
                       spaces: Mapping[str, LabelSpace],
                       notes: Mapping[str, str] | None = None) -> None:
    """Every class and tag must be in its task's space; the message lists the allowed ones."""
    notes = notes or {}
    for ex in examples:
        for task, label in ex.labels.items():
            space = spaces[task]
            if label not in space.to_id:
                raise DataError(ex.path, ex.where, f"{ex.field_name(tasks[task].label_field)}: "
                                f"{label!r} is not a class of task {task}; allowed: "
                                f"{', '.join(space.ids)}{_note(notes, task)}")
        for task, tags in ex.tags.items():
            to_id = spaces[task].to_id
            for i, tag in enumerate(tags):
                if tag not in to_id:
                    raise DataError(ex.path, ex.tag_where(i),
                                    f"{ex.field_name(tasks[task].label_field, i)}: {tag!r} is "
                                    f"not a tag of task {task}; allowed: "
                                    f"{', '.join(spaces[task].ids)}{_note(notes, task)}")


def _note(notes: Mapping[str, str], task: str) -> str:
    return f" ({notes[task]})" if notes.get(task) else ""

