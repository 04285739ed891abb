"""Label spaces for the two tasks: topic classes and BIO tags built from entity types.

The ids defined here are stored in checkpoints (``to_dict``), so their order must be stable:
classes and entity types keep the order given, inferred ones are sorted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mtst.errors import MtstError

OUTSIDE = "O"
DEFAULT_CLASSES: tuple[str, ...] = ("travel", "technology", "politics", "other")
DEFAULT_ENTITY_TYPES: tuple[str, ...] = ("PERSON", "LOC", "ORG", "DATE")


def _check_names(kind: str, names: Sequence[Any]) -> list[str]:
    """Reject label lists that would give ambiguous or unusable ids."""
    out = [str(n) if not isinstance(n, str) else n for n in names]
    if not out:
        raise MtstError(f"labels.{kind}: the list is empty; give at least one name or null to infer it")
    for name in out:
        if not name or name != name.strip():
            raise MtstError(f"labels.{kind}: {name!r} is empty or has surrounding spaces")
    dupes = sorted({n for n in out if out.count(n) > 1})
    if dupes:
        raise MtstError(f"labels.{kind}: duplicate names {dupes}")
    return out


class LabelSpace:
    """Topic classes and NER tags with their integer ids (tag id 0 is always ``O``)."""

    def __init__(
        self,
        classes: Sequence[str] | None = None,
        entity_types: Sequence[str] | None = None,
    ) -> None:
        self.classes: list[str] = _check_names(
            "classes", list(DEFAULT_CLASSES if classes is None else classes)
        )
        self.entity_types: list[str] = _check_names(
            "entity_types", list(DEFAULT_ENTITY_TYPES if entity_types is None else entity_types)
        )
        if OUTSIDE in self.entity_types:
            raise MtstError("labels.entity_types: 'O' is reserved for words outside any entity")
        self.tags: list[str] = [OUTSIDE] + [
            f"{p}-{t}" for t in self.entity_types for p in ("B", "I")
        ]
        self.class_to_id: dict[str, int] = {c: i for i, c in enumerate(self.classes)}
        self.tag_to_id: dict[str, int] = {t: i for i, t in enumerate(self.tags)}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_tags(self) -> int:
        return len(self.tags)

    @property
    def outside_id(self) -> int:
        return 0

    def id_to_class(self, idx: int) -> str:
        return self.classes[idx]

    def id_to_tag(self, idx: int) -> str:
        return self.tags[idx]

    def to_dict(self) -> dict[str, list[str]]:
        """Plain lists, safe to store in a checkpoint or YAML file."""
        return {"classes": list(self.classes), "entity_types": list(self.entity_types)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelSpace:
        return cls(classes=list(data["classes"]), entity_types=list(data["entity_types"]))

    @classmethod
    def infer(
        cls,
        classes: Iterable[str] = (),
        entity_types: Iterable[str] = (),
        given_classes: Sequence[str] | None = None,
        given_entity_types: Sequence[str] | None = None,
    ) -> LabelSpace:
        """Build a space from labels seen in training data (sorted, so ids do not depend on file order).

        ``given_*`` lists win over what was seen; a seen list that is empty falls back to the default.
        """
        seen_classes = sorted(set(classes))
        seen_types = sorted(set(entity_types))
        return cls(
            classes=given_classes if given_classes is not None else (seen_classes or None),
            entity_types=given_entity_types
            if given_entity_types is not None
            else (seen_types or None),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSpace) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((tuple(self.classes), tuple(self.entity_types)))

    def __repr__(self) -> str:
        return f"LabelSpace(classes={self.classes}, entity_types={self.entity_types})"
