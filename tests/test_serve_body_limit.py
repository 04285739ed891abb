"""A body over --max-body-bytes gets its 413 with `urllib.request`, `requests` and `httpx` alike,
on a real uvicorn on a loopback port: a 10 MB body against a 1 MB limit, sent with its
Content-Length and chunked. Before, urllib got "connection reset by peer" (uvicorn closed the
connection with most of the body unread; mtst.inference.guards says why); a declared length over
the limit is answered before the body is sent, on every path.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests

from mtst.inference.loading import untrained
from mtst.inference.server import ServeSettings, create_app
from tests.serve_guard_helpers import status_line
from tests.test_serve_failures import serving


@pytest.fixture(scope="module")
def model() -> Any:
    return untrained("gpt_neo_tiny", seed=3)


LIMIT = 1_000_000
BIG = json.dumps({"texts": ["a" * 10_000_000]}).encode()  # 10 MB against a 1 MB limit
CHUNK = 64 * 1024


def _chunks() -> Iterator[bytes]:
    for start in range(0, len(BIG), CHUNK):
        yield BIG[start : start + CHUNK]


def _urllib(url: str, chunked: bool) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    data = _chunks() if chunked else BIG
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _requests(url: str, chunked: bool) -> tuple[int, bytes]:
    with requests.Session() as session:
        session.trust_env = False
        response = session.post(url, data=_chunks() if chunked else BIG, timeout=60)
        return response.status_code, response.content


def _httpx(url: str, chunked: bool) -> tuple[int, bytes]:
    with httpx.Client(timeout=60, trust_env=False) as client:
        response = client.post(url, content=_chunks() if chunked else BIG)
        return response.status_code, response.content


CLIENTS = {"urllib": _urllib, "requests": _requests, "httpx": _httpx}


@pytest.fixture(scope="module")
def small_limit(model) -> Iterator[str]:
    with serving(create_app(model, ServeSettings(max_body_bytes=LIMIT))) as url:
        yield url


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("client", list(CLIENTS))
def test_a_body_over_the_limit_gets_a_413_that_reaches_every_client(
    small_limit, client, framing
) -> None:
    # chunked: the route refuses it while it streams; a Content-Length over the limit: the
    # guard, before any route (so on /v1/embeddings too, in OpenAI's shape)
    paths = ("/predict",) if framing == "chunked" else ("/predict", "/v1/embeddings")
    for path in paths:
        status, body = CLIENTS[client](small_limit + path, framing == "chunked")
        assert status == 413, body[:200]
        error = json.loads(body)["error"]
        message = error["message"] if path.startswith("/v1/") else error
        if framing == "chunked":  # refused while it streams, past the limit
            assert message == f"request body is over the limit of {LIMIT} bytes (--max-body-bytes)"
        else:  # refused from its Content-Length, before a byte of it is read
            assert message == (
                f"request body of {len(BIG)} bytes is over the limit of {LIMIT} bytes "
                "(--max-body-bytes)"
            )
    assert httpx.get(small_limit + "/health", trust_env=False).status_code == 200


@pytest.mark.parametrize("path", ["/predict", "/v1/embeddings", "/no-such-route"])
def test_a_declared_length_over_the_limit_is_answered_before_the_body_is_sent(
    small_limit, path
) -> None:
    """The guard refuses it on every path (no route, a 404 otherwise, ever sees it)."""
    status = status_line(
        small_limit,
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        "Content-Length: 10000000\r\n\r\n".encode(),
    )
    assert status.startswith(b"HTTP/1.1 413"), status
