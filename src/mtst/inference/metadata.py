"""What a trained model is: tasks and label spaces, backbone, pooling, window size, version.

One description serves `GET /metadata` of `mtst serve` and the model card of `mtst export`, so
the two never disagree. It reads the model's label space, so a model with other label spaces is
described without changes to the server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtst import __version__

CONFIG_FILE = "mtst_config.json"  # as in mtst.inference.loading (not imported: keeps this light)


def tasks(model: Any) -> dict[str, dict[str, Any]]:
    """Each task the model predicts, keyed as in `predict()` output, with its label space."""
    space = model.label_space
    return {
        "topic": {"kind": "sentence classification", "labels": list(space.classes)},
        "entities": {"kind": "token classification (BIO, decoded to character spans)",
                     "labels": list(space.entity_types), "tags": list(space.tags)},
    }


def backbone_name(model: Any) -> str:
    """The backbone the model was trained from; an export folder remembers it in its config."""
    hparams = dict(getattr(model, "hparams", {}) or {})
    name = str((hparams.get("backbone") or {}).get("name_or_path", ""))
    config_file = Path(name) / CONFIG_FILE if name else None
    if config_file is not None and config_file.is_file():
        try:
            return str(json.loads(config_file.read_text(encoding="utf-8"))["encoder"]["backbone"])
        except (OSError, ValueError, KeyError, TypeError):
            return name
    return name or str(getattr(model, "backbone_name", ""))


def describe(model: Any) -> dict[str, Any]:
    """A JSON-ready description of a loaded model (torch or ONNX backend)."""
    encoder = model.encoder
    config = getattr(getattr(encoder, "backbone", None), "config", None) or getattr(encoder, "config", None)
    return {
        "mtst_version": __version__,
        "tasks": tasks(model),
        "backbone": {
            "name_or_path": backbone_name(model),
            "model_type": getattr(config, "model_type", None),
            "hidden_size": int(encoder.hidden_size),
        },
        "pooling": encoder.pooling.mode,
        "normalize": bool(encoder.pooling.normalize),
        "max_length": int(encoder.max_length),
        "embedding_dimension": int(encoder.hidden_size),
        "similarity": "cosine",
        "backend": getattr(model, "backend", "torch"),
    }
