"""The error body each family of routes answers in, so that every client reads its own errors.

A client library raises a readable exception only for the error shape it was written for: the
`openai` client reads `{"error": {"message", "type", "param", "code"}}`, text-embeddings-inference
clients read `{"error": "...", "error_type": "..."}`, and mtst's own routes answer
`{"error": "..."}` (a subset of TEI's). Every error the server sends, from a route, from the
authentication and back-pressure guards or from the framework (404, 405), goes through
`error_body`, keyed on the request's path.

References:
    OpenAI API, "Error codes": https://platform.openai.com/docs/guides/error-codes
    text-embeddings-inference, `ErrorResponse`: router/src/http/types.rs
"""

from __future__ import annotations

from typing import Any

from mtst.data.jsontext import printable

OPENAI_PREFIXES = ("/v1/", "/embeddings")

# OpenAI's `type` for each status it documents; anything else is a server error
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

# TEI's `error_type` for each status its router answers with
TEI_TYPES = {401: "Unauthorized", 413: "Validation", 422: "Validation", 429: "Overloaded"}


def one_line(message: str) -> str:
    """The message on one line; a lone surrogate quoted from the request is escaped, since the
    answer must encode as UTF-8."""
    return " ".join(printable(str(message)).split())


def is_openai_route(path: str) -> bool:
    return path.startswith(OPENAI_PREFIXES)


def error_body(path: str, status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """The JSON body of an error answered on `path`.

    Args:
        path: the request's URL path; `/v1/...` and `/embeddings` answer in OpenAI's shape.
        status: the HTTP status the body goes with.
        message: what went wrong, for a person (made one line).
        param: the request field at fault, where one is (OpenAI's `param`).

    Returns:
        `{"error": {"message", "type", "param", "code"}}` on OpenAI's routes, else
        `{"error": message, "error_type": kind}`: TEI's shape, which mtst's own clients read
        as `{"error": message}`.
    """
    text = one_line(message)
    if is_openai_route(path):
        kind = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": text, "type": kind, "param": param, "code": None}}
    kind = TEI_TYPES.get(status, "Backend" if status >= 500 else "Validation")
    return {"error": text, "error_type": kind}
