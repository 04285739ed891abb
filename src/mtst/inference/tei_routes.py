"""text-embeddings-inference (TEI) compatible routes, which `huggingface_hub.InferenceClient`'s
`feature_extraction` and TEI's own clients speak.

    POST /embed, POST /  {"inputs": str | [str], "normalize": true, "truncate": false,
                          "truncation_direction": "Right"}
        -> [[...], ...]: one embedding per input, a bare JSON array (one row for one string)
    GET  /info           -> model_id, model_dtype, model_type {"embedding": {"pooling"}}, limits,
                            version, and `mtst`: the task routes of the model

As in TEI, `normalize` defaults to true, and an input longer than the model's `max_length`
sub-tokens is a 413 naming `inputs[i]` unless `truncate` is true, when its first `max_length`
sub-tokens are embedded (as `model.encode` does). The length is known once the text has been
tokenised, on the batcher's thread (the only one that may call the model's tokenizer), so a
refused text has cost one truncated forward pass. `POST /` is this route because this server is
an embedding server first (TEI routes `/` by the kind of model it serves).

`/embed` used to take `{"texts": [...]}` and answer `{"embeddings": ...}`; that form is refused
with a line saying what to send instead.

Reference: https://huggingface.github.io/text-embeddings-inference/ (openapi.json)
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mtst import __version__
from mtst.inference.requests import (
    RequestError,
    check_bool,
    check_dimensions,
    check_fields,
    check_texts,
    read_json,
)
from mtst.inference.service import ServeContext, answers_errors, embed
from mtst.inference.task_routes import route_table

FIELDS = ("normalize", "truncate", "truncation_direction", "prompt_name", "dimensions")
OLD_FORM = (
    "field 'texts' is the old form of /embed: send {\"inputs\": [...]} (TEI's request); the "
    'answer is a bare array of embeddings, unit length unless "normalize": false'
)


def check_embed_request(body: Any, context: ServeContext) -> tuple[list[str], bool, bool]:
    """The texts, `normalize` and `truncate` of a TEI embed request; what mtst cannot do
    (left truncation, prompts, shortened embeddings) is refused by name."""
    if isinstance(body, dict) and "texts" in body:
        raise RequestError(422, OLD_FORM, "texts")
    body = check_fields(body, ("inputs",), FIELDS)
    texts = check_texts(body, "inputs", context.settings, single=True)
    normalize, truncate = check_bool(body, "normalize", True), check_bool(body, "truncate", False)
    direction = body.get("truncation_direction")
    if direction is not None and str(direction).lower() != "right":
        raise RequestError(
            422,
            f"field 'truncation_direction' is {direction!r}; only Right is available (the "
            "encoder keeps a text's first max_length sub-tokens)",
            "truncation_direction",
        )
    if body.get("prompt_name") is not None:
        raise RequestError(
            422, "field 'prompt_name': this model has no prompts; leave it out", "prompt_name"
        )
    check_dimensions(body, context.metadata["embedding_dimension"])
    return texts, normalize, truncate


def model_dtype(model: Any) -> str:
    """The dtype the model computes in: its parameters' (torch), the graph's (ONNX)."""
    parameter = next(iter(model.parameters()), None)
    if parameter is not None:
        return str(parameter.dtype).removeprefix("torch.")
    return "int8" if "int8" in str(getattr(model, "graph", "")) else "float32"


def info(context: ServeContext) -> dict[str, Any]:
    """TEI's `GET /info`, with an `mtst` key for what TEI has no word for."""
    settings, metadata = context.settings, context.metadata
    return {
        "model_id": context.model_id,
        "model_sha": None,
        "model_dtype": model_dtype(context.model),
        "model_type": {"embedding": {"pooling": metadata["pooling"]}},
        "max_concurrent_requests": settings.max_concurrent_requests,  # per worker (guards.py)
        "max_input_length": context.max_length,
        "max_batch_tokens": settings.max_batch_size * context.max_length,
        "max_batch_requests": None,
        "max_client_batch_size": settings.max_texts,
        "auto_truncate": False,
        "tokenization_workers": 1,  # texts are tokenised on the batcher's one thread
        "version": __version__,
        "sha": None,
        "mtst": {
            "backend": metadata["backend"],
            "embedding_dimension": metadata["embedding_dimension"],
            "task_routes": route_table(context.model),
        },
    }


def router(context: ServeContext) -> APIRouter:
    """The TEI routes of one served model."""
    routes = APIRouter()
    answer = info(context)

    async def embed_route(request: Request) -> JSONResponse:
        body = await read_json(request, context.settings.max_body_bytes)
        texts, normalize, truncate = check_embed_request(body, context)
        rows = await embed(context, texts, normalize)
        if not truncate:
            for i, row in enumerate(rows):
                if row.tokens > context.max_length:
                    raise RequestError(
                        413,
                        f"inputs[{i}] is {row.tokens} sub-tokens long, over the model's "
                        f'max_length of {context.max_length}; send "truncate": true to embed '
                        "its first max_length sub-tokens",
                        "inputs",
                    )
        return JSONResponse([row.vector.tolist() for row in rows])

    guarded = answers_errors(embed_route)
    routes.add_api_route("/embed", guarded, methods=["POST"])
    routes.add_api_route("/", guarded, methods=["POST"])

    @routes.get("/info")
    async def get_info() -> JSONResponse:
        return JSONResponse(answer)

    return routes
