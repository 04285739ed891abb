"""MultiTaskModel: the trained network as `mtst.load` returns it, with `predict`.

The same object as `MultiTaskNetwork` (encoder, pooling, one head per task; `encode`,
`similarity`, `save`), plus the one thing inference adds: `predict`, each task's answer per text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtst.model.network import MultiTaskNetwork


class MultiTaskModel(MultiTaskNetwork):
    run_config: dict[str, Any] | None = None  # the training run's config (for the model card)

    def predict(self, texts: str | Sequence[str], batch_size: int = 32) -> list[dict[str, Any]]:
        """One dict per text: `{"text", <task>: its answer, ...}` (see `mtst.inference.predict`)."""
        from mtst.inference.predict import predict

        return predict(self, texts, batch_size=batch_size)
