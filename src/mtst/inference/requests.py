"""Reading and checking request bodies, shared by every route family of `mtst serve`.

Every check raises `RequestError` with a 4xx status, one line naming the request field at fault
and that field as `param` (OpenAI's error object carries it), so a bad body is refused before
any of its texts joins a batch, and never reaches the model as a 500.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import Request

from mtst.data.jsontext import JSONLimitError, lone_surrogate, parse_json

if TYPE_CHECKING:
    from mtst.inference.server import ServeSettings


class RequestError(Exception):
    """A client mistake: answered with `status` and a one-line error in the route's shape."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


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
    """`body` as an object holding every required field and no field outside both tuples."""
    if not isinstance(body, dict):
        raise RequestError(422, f"request body must be a JSON object, got {json_type(body)}")
    known = required + optional
    for key in body:
        if key not in known:
            raise RequestError(422, f"unknown field '{key}'; expected {', '.join(known)}", key)
    for key in required:
        if key not in body:
            raise RequestError(422, f"field '{key}' is missing", key)
    return body


def check_texts(
    body: dict[str, Any], key: str, settings: ServeSettings, single: bool = False
) -> list[str]:
    """The texts of `body[key]`: a list of strings within the server's limits.

    Args:
        body: the request object.
        key: the field holding the texts (named in every error).
        settings: the server's limits (`max_texts`, `max_chars`).
        single: also take one bare string (as `inputs` and `input` of TEI and OpenAI do); it
            comes back as a list of one.

    Returns:
        The texts, in order.
    """
    texts = body[key]
    if single and isinstance(texts, str):
        texts = [texts]
    elif not isinstance(texts, list):
        kind = "a string or a list of strings" if single else "a list of strings"
        raise RequestError(422, f"field '{key}' must be {kind}, got {json_type(texts)}", key)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(422, f"{key}[{i}] must be a string, got {json_type(text)}", key)
    if len(texts) > settings.max_texts:
        raise RequestError(
            413,
            f"field '{key}' holds {len(texts)} texts, over the limit of "
            f"{settings.max_texts} (--max-texts)",
            key,
        )
    for i, text in enumerate(texts):
        if len(text) > settings.max_chars:
            raise RequestError(
                413,
                f"{key}[{i}] has {len(text)} characters, over the limit of "
                f"{settings.max_chars} (--max-chars)",
                key,
            )
        problem = lone_surrogate(text, f"{key}[{i}]")
        if problem:  # in a batch it would fail every request batched with it
            raise RequestError(422, problem, key)
    return texts


def check_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    """`body[key]` as true or false, `default` when absent."""
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise RequestError(422, f"field '{key}' must be true or false, got {json_type(value)}", key)
    return value


def check_dimensions(body: dict[str, Any], dimension: int) -> None:
    """`dimensions`, if given, must be the model's own: mtst does not shorten embeddings (a
    model not trained for it, Matryoshka-style, loses its meaning when cut)."""
    if "dimensions" not in body or body["dimensions"] is None:
        return
    wanted = body["dimensions"]
    if isinstance(wanted, bool) or not isinstance(wanted, int):
        raise RequestError(
            422, f"field 'dimensions' must be an integer, got {json_type(wanted)}", "dimensions"
        )
    if wanted != dimension:
        raise RequestError(
            422,
            f"field 'dimensions' is {wanted}, but this model's embeddings have {dimension} "
            "dimensions and cannot be shortened; leave 'dimensions' out",
            "dimensions",
        )


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages."""
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
