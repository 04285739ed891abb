"""One task's label space: class names, or BIO tags built from entity types.

The ids defined here are stored with every model (``to_dict``), so their order must be stable:
names keep the order given, inferred ones are sorted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mtst.errors import MtstError

OUTSIDE = "O"
DEFAULT_CLASSES: tuple[str, ...] = ("travel", "technology", "politics", "other")
DEFAULT_ENTITY_TYPES: tuple[str, ...] = ("PERSON", "LOC", "ORG", "DATE")


def _check_names(where: str, names: Sequence[Any]) -> list[str]:
    """Reject label lists that would give ambiguous or unusable ids."""
    out = [str(n) if not isinstance(n, str) else n for n in names]
    if not out:
        raise MtstError(f"{where}: the list is empty; give at least one name or null to infer it")
    for name in out:
        if not name or name != name.strip():
            raise MtstError(f"{where}: {name!r} is empty or has surrounding spaces")
    dupes = sorted({n for n in out if out.count(n) > 1})
    if dupes:
        raise MtstError(f"{where}: duplicate names {dupes}")
    return out


class LabelSpace:
    """The labels of one task of data kind ``label`` (classes) or ``tags`` (BIO over entity
    types; tag id 0 is always ``O``). A ``pair`` task has no label space (``names`` empty).

    Args:
        kind: the task's data kind, ``label``, ``tags`` or ``pair``.
        names: the classes, or the entity types the BIO tags are built from.
        task: the task's name, for error messages.
    """

    def __init__(self, kind: str, names: Sequence[str] = (), task: str = "task") -> None:
        self.kind = kind
        where = f"tasks.{task}.labels"
        if kind == "pair":
            self.names: list[str] = []
            self.ids: list[str] = []
        elif kind == "label":
            self.names = _check_names(where, list(names))
            self.ids = list(self.names)
        elif kind == "tags":
            self.names = _check_names(where, list(names))
            if OUTSIDE in self.names:
                raise MtstError(f"{where}: 'O' is reserved for words outside any entity")
            self.ids = [OUTSIDE] + [f"{p}-{t}" for t in self.names for p in ("B", "I")]
        else:
            raise MtstError(f"{where}: unknown data kind {kind!r}")
        self.to_id: dict[str, int] = {name: i for i, name in enumerate(self.ids)}

    @property
    def entity_types(self) -> list[str]:
        return self.names if self.kind == "tags" else []

    def __len__(self) -> int:
        """How many ids (classes, or tags including ``O``)."""
        return len(self.ids)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, safe to store in a checkpoint or a JSON file."""
        return {"kind": self.kind, "names": list(self.names)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], task: str = "task") -> LabelSpace:
        return cls(str(data["kind"]), list(data.get("names") or ()), task)

    @classmethod
    def infer(cls, kind: str, seen: Iterable[str], given: Sequence[str] | None,
              task: str = "task") -> LabelSpace:
        """``given`` when set, else the names seen in training data, sorted so that ids do not
        depend on file order (for ``tags``, ``seen`` holds entity types)."""
        return cls(kind, list(given) if given is not None else sorted(set(seen)), task)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSpace) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.kind, tuple(self.names)))

    def __repr__(self) -> str:
        return f"LabelSpace({self.kind!r}, {self.names})"
