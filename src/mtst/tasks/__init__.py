"""Task types and the `tasks` config: what each task trains, how it is scored and predicted.

`TASK_TYPES` is the registry: a new type is one module with a `Task` subclass and one entry here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mtst.errors import MtstError, choices_text
from mtst.tasks.base import Task
from mtst.tasks.sentence_classification import SentenceClassification
from mtst.tasks.sentence_similarity import SentenceSimilarity
from mtst.tasks.token_classification import TokenClassification

TASK_TYPES: dict[str, type[Task]] = {
    cls.type: cls for cls in (SentenceClassification, TokenClassification, SentenceSimilarity)
}


def build_task(name: str, settings: Mapping[str, Any]) -> Task:
    """One entry of the `tasks` config -> its `Task` (one-line errors name `tasks.<name>...`)."""
    if not isinstance(settings, Mapping):
        raise MtstError(f"tasks.{name}: expected a mapping of settings with a type, got "
                        f"{settings!r}")
    kind = settings.get("type")
    if kind not in TASK_TYPES:
        raise MtstError(f"tasks.{name}.type={kind!r}: no such task type; choose one of "
                        f"{choices_text(TASK_TYPES)}")
    return TASK_TYPES[kind](name, settings)


def build_tasks(config: Mapping[str, Any] | None) -> dict[str, Task]:
    """The whole `tasks` mapping, in its order; at least one task."""
    tasks = {str(name): build_task(str(name), settings) for name, settings in (config or {}).items()
             if settings is not None}
    if not tasks:
        raise MtstError("tasks: no task is configured; add one, e.g. "
                        "+tasks.topic.type=sentence_classification")
    for name in tasks:
        if not name.isidentifier():
            raise MtstError(f"tasks.{name}: a task name is letters, digits and underscores "
                            "(it names metrics and weights)")
    return tasks


def select_tasks(config: Mapping[str, Any] | None, only: str | Sequence[str] | None,
                 key: str = "tasks_only") -> dict[str, Any]:
    """The entries of a `tasks` mapping named by `only` (all of them when it is null), in the
    mapping's order. A setting rather than `~tasks.<name>` deletions because a sweep can take it
    as a value (`tasks_only=topic,ner`: one single-task job each); `key` names it in errors."""
    config = dict(config or {})
    if only is None:
        return config
    names = [only] if isinstance(only, str) else [str(name) for name in only]
    for name in names:
        if name not in config:
            raise MtstError(f"{key}={name}: no such task; the config has "
                            f"{choices_text(config) or 'no task'}")
    if not names:
        raise MtstError(f"{key}=[]: keeps no task; name one or more of {choices_text(config)}")
    return {name: settings for name, settings in config.items() if name in names}


__all__ = ["TASK_TYPES", "Task", "build_task", "build_tasks", "select_tasks"]
