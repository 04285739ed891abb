"""Dependencies point one way, from the rooms a batch passes first to those that use them.

`ROOMS` lists each room of `src/mtst/` with the rooms it may import, in the dependency order:
a room names only rooms listed before it, so no import cycle between rooms can form. Every
import in every module counts, also the ones inside functions and under `TYPE_CHECKING` (a lazy
import is still a dependency); any room may import itself and the shared utilities
(`mtst.errors`, `mtst.console`, `mtst.files`, the package root).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mtst"
ROOMS: dict[str, tuple[str, ...]] = {
    "data": (),
    "model": ("data",),
    "tasks": ("data", "model"),
    "weighting": ("data",),
    "checkpoints": (),
    "reports": ("tasks",),
    "freezing": ("data", "model", "tasks"),
    "config": ("data", "model", "tasks", "weighting", "checkpoints", "freezing"),
    "training": ("data", "model", "tasks", "weighting", "checkpoints", "reports", "freezing", "config"),
    "inference": ("data", "model", "tasks", "checkpoints", "config"),
    "cli": ("data", "model", "tasks", "weighting", "checkpoints", "reports", "freezing", "config",
            "training", "inference"),
}


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the mtst modules `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("mtst.")}


def room_of(module: str) -> str | None:
    part = module.split(".")[1]
    return part if part in ROOMS else None


def test_every_room_names_only_rooms_before_it() -> None:
    rooms = list(ROOMS)
    for room, allowed in ROOMS.items():
        assert all(rooms.index(a) < rooms.index(room) for a in allowed), room


def test_every_package_of_mtst_is_a_room() -> None:
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == set(ROOMS)


@pytest.mark.parametrize("room", ROOMS)
def test_a_room_imports_only_the_rooms_it_names(room: str) -> None:
    allowed = {room, *ROOMS[room]}
    wrong = []
    for path in sorted((PACKAGE / room).rglob("*.py")):
        for module in sorted(imported_modules(path)):
            target = room_of(module)
            if target is not None and target not in allowed:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_imports_inside_functions(tmp_path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from mtst.training.module import MultiTaskModule\n", "utf-8")
    assert imported_modules(sample) == {"mtst.training.module", "mtst.training.module.MultiTaskModule"}


def test_the_check_sees_imports_for_type_hints_only(tmp_path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    from mtst.training.module import MultiTaskModule\n", "utf-8")
    assert "mtst.training.module" in imported_modules(sample)
