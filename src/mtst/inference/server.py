"""The HTTP application behind `mtst serve` (FastAPI on uvicorn).

mtst's own routes:

    POST /predict     {"texts": [...]}                     -> {"predictions": [one dict per text]}
    POST /similarity  {"a": [...], "b": [...]}             -> {"similarity": [[cos(a_i, b_j)]]}
    GET  /health                                           -> {"status": "ok"}
    GET  /metadata                                         -> tasks, labels, backbone, limits

and the routes standard clients speak, each family in its own module:

    POST /v1/embeddings, /embeddings, GET /v1/models      OpenAI's API (`openai_routes`)
    POST /embed, POST /, GET /info                         text-embeddings-inference (`tei_routes`)
    POST /tasks/<task>, /tasks/sentence-similarity         Hugging Face tasks (`task_routes`)

`/predict` returns exactly what `model.predict` returns for each text (every task of the model;
the server does not look inside); the embedding routes what `model.encode` returns. Texts of
concurrent requests are batched together, whatever route they came by (`mtst.inference.batcher`).

Bad input never gives a 500: a body that is not JSON, or JSON past the parser's limits (nested
too deeply, a number of too many digits), is a 400; a field of the wrong type, an unknown field
or a text holding a lone surrogate (`"\\ud800"`, which no tokenizer takes) a 422; more texts
than `max_texts`, a text longer than `max_chars` or a body over `max_body_bytes` (refused while
it is read, before any parsing) a 413; each answers one line in its route family's error shape
(`error_shapes`: OpenAI's error object on /v1 and /embeddings, `{"error", "error_type"}`
elsewhere), and all of it is checked before a text joins a batch. A failure inside the model is
a 500 for the requests it fails on alone (the batcher runs a failed batch again one request at a
time), answered on an open connection: uvicorn closes the connection after any exception that
reaches it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtst.inference import guards, openai_routes, task_routes, tei_routes
from mtst.inference.batcher import DynamicBatcher
from mtst.inference.metadata import describe
from mtst.inference.requests import RequestError, check_fields, check_texts, read_json
from mtst.inference.service import (
    DEFAULT_MODEL_ID,
    ServeContext,
    answers_errors,
    cosine_matrix,
    embed,
    error_response,
    internal_error,
    make_runner,
)
from mtst.inference.telemetry import Telemetry


@dataclass(frozen=True)
class ServeSettings:
    max_batch_size: int = 32
    max_wait_ms: float = 0.0  # batches form while the model is busy (docs/serving.md)
    max_texts: int = 256
    max_chars: int = 20_000
    max_body_bytes: int = 8 * 1024 * 1024
    max_concurrent_requests: int = 512  # past it a request gets 429 (mtst.inference.guards)
    api_key: str | None = field(default=None, repr=False)  # None: no key asked for

    def limits(self) -> dict[str, Any]:
        """Every setting but the API key: what /metadata shows and workers are passed."""
        return {k: v for k, v in asdict(self).items() if k != "api_key"}


def create_app(
    model: Any, settings: ServeSettings | None = None, model_id: str = DEFAULT_MODEL_ID
) -> FastAPI:
    """The application for a loaded model (torch or ONNX backend).

    Args:
        model: what `mtst.load` returns.
        settings: batching and request limits.
        model_id: the id the OpenAI and TEI routes answer with (`serve.model_id_for(PATH)`).

    Returns:
        The FastAPI application: mtst's routes, then the OpenAI, TEI and task routes.
    """
    settings = settings or ServeSettings()
    telemetry = Telemetry()
    batcher = DynamicBatcher(
        make_runner(model, settings.max_batch_size),
        settings.max_batch_size,
        settings.max_wait_ms / 1000,
        on_pending=telemetry.queue_texts.inc,
        on_batch=telemetry.batch_texts.observe,
    )
    metadata = {**describe(model), "limits": settings.limits()}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start(("predict", "encode"))
        yield
        await batcher.stop()  # uvicorn has answered every request in flight by now

    app = FastAPI(
        title="mtst",
        version=metadata["mtst_version"],
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.batcher, app.state.telemetry = batcher, telemetry
    context = ServeContext(model, settings, batcher, metadata, model_id)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, err: RequestError) -> JSONResponse:
        return error_response(request.url.path, err.status, err.message, err.param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {err.detail}"
        return error_response(request.url.path, err.status_code, message)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, err: Exception) -> JSONResponse:
        return internal_error(request.url.path, err)

    # Every endpoint returns its JSONResponse itself: a dict return would make FastAPI infer a
    # response model from the annotation, validate the answer against it and walk it through
    # jsonable_encoder, per request, to produce the same bytes.
    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse(
            {"status": "ok", "batches": batcher.batches, "pending_texts": batcher.pending}
        )

    @app.get("/metadata")
    async def get_metadata() -> JSONResponse:
        return JSONResponse(metadata)

    @app.post("/predict")
    @answers_errors
    async def predict(request: Request) -> JSONResponse:
        body = check_fields(await read_json(request, settings.max_body_bytes), ("texts",))
        texts = check_texts(body, "texts", settings)
        return JSONResponse({"predictions": await batcher.submit("predict", texts)})

    @app.post("/similarity")
    @answers_errors
    async def similarity(request: Request) -> JSONResponse:
        body = check_fields(await read_json(request, settings.max_body_bytes), ("a", "b"))
        a, b = check_texts(body, "a", settings), check_texts(body, "b", settings)
        vectors = [row.vector for row in await embed(context, a + b, normalize=False)]
        if not a or not b:
            return JSONResponse({"similarity": [[] for _ in a]})
        matrix = cosine_matrix(np.stack(vectors[: len(a)]), np.stack(vectors[len(a) :]))
        return JSONResponse({"similarity": matrix.tolist()})

    for family in (openai_routes, tei_routes, task_routes):
        app.include_router(family.router(context))
    guards.install(  # API key, --max-concurrent-requests, body size, metrics; and GET /metrics
        app,
        telemetry,
        api_key=settings.api_key,
        max_concurrent=settings.max_concurrent_requests,
        max_body_bytes=settings.max_body_bytes,
    )
    return app
