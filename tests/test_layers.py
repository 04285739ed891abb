"""Dependencies point one way: data <- model <- tasks <- training <- inference <- cli.

Every import in every module counts, also the ones inside functions (a lazy import is still a
dependency): each layer may import only the layers before it, and the shared utilities
(`mtst.errors`, `mtst.console`, `mtst.files`, the package root) from anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mtst"
LAYERS = ("data", "model", "tasks", "training", "inference", "cli")


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


def layer_of(module: str) -> str | None:
    part = module.split(".")[1]
    return part if part in LAYERS else None


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_the_layers_before_it(layer: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(layer) + 1])
    wrong = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module in sorted(imported_modules(path)):
            target = layer_of(module)
            if target is not None and target not in allowed:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_imports_inside_functions(tmp_path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from mtst.training.module import MultiTaskModule\n", "utf-8")
    assert imported_modules(sample) == {"mtst.training.module", "mtst.training.module.MultiTaskModule"}
