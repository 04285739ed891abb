"""OpenAI-compatible routes: the embeddings API that most client libraries speak.

    POST /v1/embeddings, /embeddings  {"input": str | [str], "model": any string,
                                       "encoding_format": "float" | "base64", "dimensions": H,
                                       "user": ignored}
        -> {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": ...}],
            "model": <served model id>, "usage": {"prompt_tokens": n, "total_tokens": n}}
    GET  /v1/models                   -> {"object": "list", "data": [{"id", "object": "model",
                                           "created", "owned_by"}]}

The `openai` client sends `encoding_format: "base64"` unless told otherwise and decodes it with
`numpy.frombuffer(..., dtype="float32")`: the vector's little-endian float32 bytes, in base64.
Embeddings are unit length, as OpenAI's are (clients compare them with a dot product). A text
past the model's `max_length` sub-tokens is truncated, as `model.encode` does (OpenAI clients
have no way to ask for it), and `usage` counts the sub-tokens the model read (special tokens
included), with the model's own tokenizer. Token-id arrays (what LangChain sends unless
`check_embedding_ctx_length=False`) are refused: they are ids of OpenAI's tokenizer, not ours.
Errors answer OpenAI's error object (`error_shapes`), so the client raises `BadRequestError`,
`UnprocessableEntityError`, ... with the message.

Reference: https://platform.openai.com/docs/api-reference/embeddings
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mtst.inference.requests import (
    RequestError,
    check_dimensions,
    check_fields,
    check_texts,
    read_json,
)
from mtst.inference.service import ServeContext, answers_errors, embed

FIELDS = ("model", "encoding_format", "dimensions", "user")
ENCODINGS = ("float", "base64")


def encoded(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """A vector as OpenAI answers it: a list of floats, or its little-endian float32 bytes in
    base64."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def is_token_ids(value: Any) -> bool:
    """Whether `input` holds token ids: a list of integers, or a list of lists of them."""

    def integers(items: list[Any]) -> bool:
        return all(isinstance(i, int) and not isinstance(i, bool) for i in items)

    if not isinstance(value, list) or not value:
        return False
    return integers(value) or all(isinstance(item, list) and integers(item) for item in value)


def check_input(body: dict[str, Any], context: ServeContext) -> list[str]:
    """The texts of `input`; token-id arrays are refused with a line that says why."""
    if is_token_ids(body["input"]):
        raise RequestError(
            422,
            "field 'input' holds token ids; this server takes texts only (a string or a list of "
            "strings): its tokenizer is the model's, not OpenAI's",
            "input",
        )
    return check_texts(body, "input", context.settings, single=True)


def router(context: ServeContext) -> APIRouter:
    """The OpenAI routes of one served model."""
    routes = APIRouter()
    settings, dimension = context.settings, int(context.metadata["embedding_dimension"])

    async def embeddings(request: Request) -> JSONResponse:
        body = check_fields(await read_json(request, settings.max_body_bytes), ("input",), FIELDS)
        texts = check_input(body, context)
        encoding_format = body.get("encoding_format")
        encoding_format = "float" if encoding_format is None else encoding_format
        if encoding_format not in ENCODINGS:
            raise RequestError(
                422,
                f"field 'encoding_format' is {encoding_format!r}; choose float or base64",
                "encoding_format",
            )
        if not isinstance(body.get("model", ""), str):
            raise RequestError(422, "field 'model' must be a string", "model")
        check_dimensions(body, dimension)
        rows = await embed(context, texts, normalize=True)
        tokens = sum(min(row.tokens, context.max_length) for row in rows)
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": encoded(row.vector, encoding_format),
                    }
                    for i, row in enumerate(rows)
                ],
                "model": context.model_id,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    guarded = answers_errors(embeddings)
    routes.add_api_route("/v1/embeddings", guarded, methods=["POST"])
    routes.add_api_route("/embeddings", guarded, methods=["POST"])

    @routes.get("/v1/models")
    async def models() -> JSONResponse:
        entry = {
            "id": context.model_id,
            "object": "model",
            "created": context.created,
            "owned_by": "mtst",
        }
        return JSONResponse({"object": "list", "data": [entry]})

    return routes
