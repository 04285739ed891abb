"""What a trained model is: tasks and label spaces, backbone, pooling, window size, version.

One description serves `GET /metadata` of `mtst serve` and the model card of `mtst export`, so
the two never disagree. It reads the model's tasks and label spaces, so a model with other tasks
is described without changes to the server.
"""

from __future__ import annotations

from typing import Any

from mtst import __version__


def tasks(model: Any) -> dict[str, dict[str, Any]]:
    """Each task of the model, keyed as in `predict()` output, with its type and label space."""
    out = {}
    for name, spec in model.tasks.items():
        space = model.label_spaces[name]
        entry: dict[str, Any] = {"type": spec["type"], "labels": list(space.names)}
        if space.kind == "tags":
            entry["tags"] = list(space.ids)
        out[name] = entry
    return out


def describe(model: Any) -> dict[str, Any]:
    """A JSON-ready description of a loaded model (torch or ONNX backend)."""
    encoder = model.encoder
    config = getattr(getattr(encoder, "backbone", None), "config", None) or getattr(encoder, "config", None)
    return {
        "mtst_version": __version__,
        "tasks": tasks(model),
        "backbone": {
            "name_or_path": str(getattr(model, "backbone_name", "")),
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
