"""What every route family of `mtst serve` shares: the model, its batcher, its limits, the embed
call and the way errors are answered.

mtst's own routes (`mtst.inference.server`), the OpenAI-compatible ones (`openai_routes`), the
text-embeddings-inference ones (`tei_routes`) and the Hugging Face task routes (`task_routes`)
all submit texts to one `DynamicBatcher`, so texts of any route share batches with the others of
their kind, and all answer errors through `error_shapes.error_body`, keyed on the path.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse

from mtst.errors import first_line
from mtst.inference.batcher import DynamicBatcher
from mtst.inference.error_shapes import error_body
from mtst.inference.requests import RequestError

if TYPE_CHECKING:
    from mtst.inference.server import ServeSettings

log = logging.getLogger("uvicorn.error")  # where uvicorn logs, at the level of --log-level

DEFAULT_MODEL_ID = "mtst"


@dataclass(frozen=True)
class Embedded:
    """One text's embedding and its length in the model's sub-tokens."""

    vector: np.ndarray  # float32 [H], exactly what `model.encode` gives for the text
    tokens: int  # sub-tokens of the whole text, special tokens included, before truncation


@dataclass
class ServeContext:
    """One served model and everything its routes read."""

    model: Any
    settings: ServeSettings
    batcher: DynamicBatcher
    metadata: dict[str, Any]
    model_id: str = DEFAULT_MODEL_ID
    created: int = field(default_factory=lambda: int(time.time()))  # /v1/models' `created`

    @property
    def max_length(self) -> int:
        """Sub-tokens the encoder reads of a text (`encode` truncates the rest)."""
        return int(self.metadata["max_length"])


def model_id_for(path: str | Path) -> str:
    """The id a served model answers with (`model` of OpenAI's answers, `model_id` of /info):
    the name of the folder it was loaded from (a run's name for its `checkpoints/*.ckpt`, the
    file's name for a `.ckpt` elsewhere), so that no path of the serving machine leaks to
    clients."""
    resolved = Path(path).resolve()
    if resolved.is_file():
        resolved = resolved.parent.parent if resolved.parent.name == "checkpoints" else resolved
    return resolved.name or DEFAULT_MODEL_ID


def token_counts(tokenizer: Any, texts: list[str]) -> list[int]:
    """Sub-tokens per text as the encoder tokenises it (special tokens included), untruncated."""
    encoded = tokenizer(
        texts, add_special_tokens=True, truncation=False, return_attention_mask=False, verbose=False
    )
    return [len(ids) for ids in encoded["input_ids"]]


def make_runner(model: Any, batch_size: int) -> Callable[[str, list[str]], list[Any]]:
    """The batcher's compute: one call of the model per batch, on the batcher's thread.

    The texts are counted there too: a fast tokenizer used from two threads at once fails
    ("Already borrowed"), and this thread is the only one that ever calls the model's."""

    def run(kind: str, texts: list[str]) -> list[Any]:
        if kind == "predict":
            return model.predict(texts, batch_size=batch_size)
        vectors = np.asarray(
            model.encode(texts, batch_size=batch_size, show_progress_bar=False), dtype=np.float32
        )
        counts = token_counts(model.encoder.tokenizer, texts)
        return [Embedded(v, n) for v, n in zip(vectors, counts, strict=True)]

    return run


async def embed(context: ServeContext, texts: list[str], normalize: bool) -> list[Embedded]:
    """The embeddings of `texts` (batched with concurrent requests), unit length if `normalize`
    (as `encode(normalize=True)`: a zero vector stays zero)."""
    rows: list[Embedded] = await context.batcher.submit("encode", texts)
    if not normalize:
        return rows
    return [
        Embedded(row.vector / max(float(np.linalg.norm(row.vector)), 1e-12), row.tokens)
        for row in rows
    ]


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarities in float64 (a zero vector is at cosine 0 to everything)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def error_response(path: str, status: int, message: str, param: str | None = None) -> JSONResponse:
    """The error answered on `path`, in the shape of its route family (`error_shapes`)."""
    return JSONResponse(error_body(path, status, message, param), status_code=status)


def internal_error(path: str, err: Exception) -> JSONResponse:
    """The 500 for an exception: its type and the first line of its message."""
    name, detail = type(err).__name__, first_line(err)
    return error_response(
        path, 500, f"internal error: {name}" + ("" if detail == name else f": {detail}")
    )


Endpoint = Callable[[Request], Awaitable[JSONResponse]]


def answers_errors(endpoint: Endpoint) -> Endpoint:
    """The endpoint, answering an unexpected exception (a failure inside the model) with a 500
    itself: one that reaches uvicorn makes it close the client's keep-alive connection."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> JSONResponse:
        try:
            return await endpoint(request)
        except RequestError:
            raise
        except Exception as err:
            log.error("%s %s failed", request.method, request.url.path, exc_info=err)
            return internal_error(request.url.path, err)

    return guarded
