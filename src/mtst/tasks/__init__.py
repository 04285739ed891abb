"""Task types and the `tasks` config: what each task trains, how it is scored and predicted.

`TASK_TYPES` is the registry: a new type is one module with a `Task` subclass and one entry here.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def task_for(name: str, spec: Mapping[str, Any]) -> Task:
    """The task type of a saved network's task entry (for prediction formatting and probes)."""
    return build_task(name, {"type": spec["type"]})


__all__ = ["TASK_TYPES", "Task", "build_task", "build_tasks", "task_for"]
