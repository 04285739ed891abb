"""mtst: a multi-task sentence transformer."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Imported on first use, so `import mtst` stays light (no torch or transformers until needed).
_LAZY = {
    "SentenceEncoder": "mtst.model.encoder",
    "MultiTaskModel": "mtst.inference.model",
    "MultiTaskNetwork": "mtst.model.network",
    "load": "mtst.inference.loading",
}
__all__ = ["MultiTaskModel", "MultiTaskNetwork", "SentenceEncoder", "__version__", "load"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mtst' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
