"""The HTTP application behind `mtst serve` (FastAPI on uvicorn).

    POST /predict     {"texts": [...]}                     -> {"predictions": [one dict per text]}
    POST /embed       {"texts": [...], "normalize": false} -> {"embeddings": [[...], ...]}
    POST /similarity  {"a": [...], "b": [...]}             -> {"similarity": [[cos(a_i, b_j)]]}
    GET  /health                                           -> {"status": "ok"}
    GET  /metadata                                         -> tasks, labels, backbone, limits

`/predict` returns exactly what `model.predict` returns for each text (every task of the model;
the server does not look inside), `/embed` what `model.encode` returns. Texts of concurrent
requests are batched together (`mtst.inference.batcher`).

Bad input never gives a 500: a body that is not JSON, or JSON past the parser's limits (nested
too deeply, a number of too many digits), is a 400; a field of the wrong type, an unknown field
or a text holding a lone surrogate (`"\\ud800"`, which no tokenizer takes) a 422; more texts
than `max_texts`, a text longer than `max_chars` or a body over `max_body_bytes` (refused while
it is read, before any parsing) a 413; each answers `{"error": "<one line>"}`, and all of it is
checked before a text joins a batch. A failure inside the model is a 500 for the requests it
fails on alone (the batcher runs a failed batch again one request at a time), answered on an
open connection: uvicorn closes the connection after any exception that reaches it.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mtst.data.jsontext import JSONLimitError, lone_surrogate, parse_json, printable
from mtst.errors import first_line
from mtst.inference.batcher import DynamicBatcher
from mtst.inference.metadata import describe

log = logging.getLogger("uvicorn.error")  # where uvicorn logs, at the level of --log-level


@dataclass(frozen=True)
class ServeSettings:
    max_batch_size: int = 32
    max_wait_ms: float = 10.0
    max_texts: int = 256
    max_chars: int = 20_000
    max_body_bytes: int = 8 * 1024 * 1024


class RequestError(Exception):
    """A client mistake: answered with `status` and a one-line JSON error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def error_response(status: int, message: str) -> JSONResponse:
    """`{"error": message}` on one line; a lone surrogate quoted from the request is escaped,
    since the answer must encode as UTF-8."""
    return JSONResponse({"error": " ".join(printable(str(message)).split())}, status_code=status)


async def read_json(request: Request, limit: int) -> Any:
    """The parsed body; refused with 413 as soon as it is known to be over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            413,
            f"request body of {int(declared)} bytes is over the limit of "
            f"{limit} bytes (--max-body-bytes)",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(
                413, f"request body is over the limit of {limit} bytes (--max-body-bytes)"
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        return parse_json(body.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RequestError(400, f"request body is not valid UTF-8 (byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise RequestError(
            400,
            f"request body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}",
        ) from None
    except JSONLimitError as err:
        raise RequestError(400, f"request body is not valid JSON: {err}") from None


def check_fields(
    body: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError(422, f"request body must be a JSON object, got {_type(body)}")
    known = required + optional
    for key in body:
        if key not in known:
            raise RequestError(422, f"unknown field '{key}'; expected {', '.join(known)}")
    for key in required:
        if key not in body:
            raise RequestError(422, f"field '{key}' is missing")
    return body


def check_texts(body: dict[str, Any], key: str, settings: ServeSettings) -> list[str]:
    texts = body[key]
    if not isinstance(texts, list):
        raise RequestError(422, f"field '{key}' must be a list of strings, got {_type(texts)}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(422, f"{key}[{i}] must be a string, got {_type(text)}")
    if len(texts) > settings.max_texts:
        raise RequestError(
            413,
            f"field '{key}' holds {len(texts)} texts, over the limit of "
            f"{settings.max_texts} (--max-texts)",
        )
    for i, text in enumerate(texts):
        if len(text) > settings.max_chars:
            raise RequestError(
                413,
                f"{key}[{i}] has {len(text)} characters, over the limit of "
                f"{settings.max_chars} (--max-chars)",
            )
        problem = lone_surrogate(text, f"{key}[{i}]")
        if problem:  # in a batch it would fail every request batched with it
            raise RequestError(422, problem)
    return texts


def _type(value: Any) -> str:
    names = {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def internal_error(err: Exception) -> JSONResponse:
    """The 500 for an exception: its type and the first line of its message."""
    name, detail = type(err).__name__, first_line(err)
    return error_response(
        500, f"internal error: {name}" + ("" if detail == name else f": {detail}")
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
            return internal_error(err)

    return guarded


def make_runner(model: Any, batch_size: int):
    """The batcher's compute: one call of the model per batch, on the batcher's thread."""

    def run(kind: str, texts: list[str]) -> list[Any]:
        if kind == "predict":
            return model.predict(texts, batch_size=batch_size)
        embeddings = model.encode(texts, batch_size=batch_size, show_progress_bar=False)
        return list(np.asarray(embeddings, dtype=np.float32))

    return run


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarities in float64 (a zero vector is at cosine 0 to everything)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def create_app(model: Any, settings: ServeSettings | None = None) -> FastAPI:
    """The application for a loaded model (torch or ONNX backend)."""
    settings = settings or ServeSettings()
    batcher = DynamicBatcher(
        make_runner(model, settings.max_batch_size),
        settings.max_batch_size,
        settings.max_wait_ms / 1000,
    )
    metadata = {**describe(model), "limits": asdict(settings)}

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
    app.state.batcher = batcher

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, err: RequestError) -> JSONResponse:
        return error_response(err.status, err.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return error_response(err.status_code, f"{request.method} {request.url.path}: {err.detail}")

    @app.exception_handler(Exception)
    async def _server_error(request: Request, err: Exception) -> JSONResponse:
        return internal_error(err)

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

    @app.post("/embed")
    @answers_errors
    async def embed(request: Request) -> JSONResponse:
        body = check_fields(
            await read_json(request, settings.max_body_bytes), ("texts",), ("normalize",)
        )
        texts = check_texts(body, "texts", settings)
        normalize = body.get("normalize", False)
        if not isinstance(normalize, bool):
            raise RequestError(
                422, f"field 'normalize' must be true or false, got {_type(normalize)}"
            )
        rows = await batcher.submit("encode", texts)
        if normalize and rows:
            # as SentenceEncoder.encode(normalize=True): F.normalize of the float32 rows
            import torch
            import torch.nn.functional as F

            rows = list(F.normalize(torch.from_numpy(np.stack(rows)), dim=-1).numpy())
        return JSONResponse(
            {
                "embeddings": [row.tolist() for row in rows],
                "dimension": metadata["embedding_dimension"],
            }
        )

    @app.post("/similarity")
    @answers_errors
    async def similarity(request: Request) -> JSONResponse:
        body = check_fields(await read_json(request, settings.max_body_bytes), ("a", "b"))
        a, b = check_texts(body, "a", settings), check_texts(body, "b", settings)
        rows = await batcher.submit("encode", a + b)
        if not a or not b:
            return JSONResponse({"similarity": [[] for _ in a]})
        matrix = cosine_matrix(np.stack(rows[: len(a)]), np.stack(rows[len(a) :]))
        return JSONResponse({"similarity": matrix.tolist()})

    return app
