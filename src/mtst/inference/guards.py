"""What every request passes before a route sees it: the API key, the concurrency bound, the
declared body size, and the metrics of its answer. One pure ASGI middleware, so that it holds for
routes added later too, costs a few microseconds per request and leaves streaming and
disconnects to the server (Starlette's BaseHTTPMiddleware would copy every answer through a
stream of its own).

    no key or a wrong one            401, `WWW-Authenticate: Bearer`    (every path but /health)
    --max-concurrent-requests busy   429, `Retry-After: 1`              (not /health, /metrics)
    Content-Length over the limit    413                                before the body is read

Each error is the body `error_body` gives for the path (OpenAI's shape on /v1/*). /health
bypasses all of it, metrics included: a load balancer's probe must stay cheap and open.

An answer sent before the client has finished sending its body (a 413, or a 401 or 429 for a
large body) reaches the client only if the server reads the rest. Measured with a 10 MB body
against a 1 MB limit on uvicorn (httptools and h11 alike): `urllib.request` got "connection
reset by peer" every time, while `requests` and `httpx` got the 413. urllib sends
`Connection: close`, so uvicorn closed the socket right after answering, with most of the body
still on its way; Linux answers data arriving on a closed socket with a reset, and urllib,
still inside `sendall`, never read the answer. `requests` and `httpx` keep the connection alive
(uvicorn reads and drops the rest of the body) and read the answer after a failed send.

So such an answer is sent at once, with `Connection: close`, and held open (its last body
message not yet sent) while the rest of the request body is read and dropped, up to
`drain_bytes` in all (4x --max-body-bytes, at least 64 MiB) or DRAIN_SECONDS; then it ends and
uvicorn closes a connection with nothing left unread. After that all three clients get the 413
(~10-30 ms for the 10 MB body on loopback, the time to send it); past the bound (a 100 MB body)
urllib sees the reset again. A client that sent `Expect: 100-continue` and was never told to
continue holds its body back: nothing is drained (RFC 9110, section 10.1.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Router

from mtst.inference.error_shapes import error_body
from mtst.inference.telemetry import UNMATCHED, Telemetry

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HEALTH, METRICS = "/health", "/metrics"
RETRY_AFTER_S = 1  # one batch of a loaded CPU server takes well under a second
DRAIN_FACTOR, DRAIN_FLOOR_BYTES, DRAIN_SECONDS = 4, 64 * 1024 * 1024, 10.0
CLOSE = (b"connection", b"close")


class Exchange:
    """One request's receive and send, watched: the status answered, and whether the body has
    been read to its end. An answer that starts before it has is sent at once, with
    `Connection: close`; the rest of the body is read and dropped before the answer's end is
    signalled, so that the connection closes with nothing unread (see the module's doc)."""

    __slots__ = (
        "_receive",
        "_send",
        "drain_bytes",
        "status",
        "received",
        "body_done",
        "reading",
        "expect",
    )

    def __init__(
        self, receive: Receive, send: Send, drain_bytes: int, body_done: bool, expect: bool
    ) -> None:
        self._receive, self._send, self.drain_bytes = receive, send, drain_bytes
        self.status: int | None = None
        self.received, self.body_done, self.reading, self.expect = 0, body_done, False, expect

    async def receive(self) -> Message:
        self.reading = True
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.body_done = not message.get("more_body", False)
        else:  # http.disconnect: nothing more will come
            self.body_done = True
        return message

    async def send(self, message: Message) -> None:
        if self.body_done:  # the usual case: the route has read the whole body
            if message["type"] == "http.response.start":
                self.status = message["status"]
            await self._send(message)
        elif message["type"] == "http.response.start":
            self.status = message["status"]
            await self._send({**message, "headers": [*message.get("headers", ()), CLOSE]})
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            # the client has the whole answer (its Content-Length frames it) before the drain
            await self._send({**message, "more_body": True})
            await self.drain()
            await self._send({"type": "http.response.body", "body": b""})
        else:
            await self._send(message)

    async def drain(self) -> None:
        """Read and drop the rest of the body, up to `drain_bytes` and DRAIN_SECONDS."""
        if self.expect and not self.reading:
            return  # no 100 Continue was sent, so the client holds its body back

        async def rest() -> None:
            while not self.body_done and self.received <= self.drain_bytes:
                await self.receive()

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(rest(), DRAIN_SECONDS)


class Guards:
    """The ASGI middleware (see the module's doc); `install` puts it in front of an app."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        router: Router,
        telemetry: Telemetry,
        api_key: str | None,
        max_concurrent_requests: int,
        max_body_bytes: int,
        drain_bytes: int | None = None,
    ) -> None:
        self.app, self.router, self.telemetry = app, router, telemetry
        self.key = api_key.encode() if api_key else None
        self.max_concurrent, self.max_body = max_concurrent_requests, max_body_bytes
        self.drain_bytes = drain_bytes or max(DRAIN_FACTOR * max_body_bytes, DRAIN_FLOOR_BYTES)
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" or scope["path"] == HEALTH:
            if kind == "websocket" and self.key is not None and self.refusal(_auth(scope)):
                await send({"type": "websocket.close", "code": 1008})  # policy violation
                return
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        auth = length = None
        has_body = expect = False
        for name, value in scope["headers"]:  # one pass over the headers for everything
            if name == b"authorization":
                auth = value
            elif name == b"content-length":
                length, has_body = value, value != b"0"
            elif name == b"transfer-encoding":
                has_body = True
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
        exchange = Exchange(receive, send, self.drain_bytes, not has_body, expect)
        path, counted = scope["path"], scope["path"] != METRICS
        try:
            problem = self.refusal(auth) if self.key is not None else None
            if problem is not None:
                await self.refuse(exchange, path, 401, problem, (b"www-authenticate", b"Bearer"))
            elif counted and self.in_flight >= self.max_concurrent:
                message = (
                    f"the server is answering {self.in_flight} requests, its limit "
                    f"(--max-concurrent-requests); retry in {RETRY_AFTER_S} s"
                )
                retry = (b"retry-after", str(RETRY_AFTER_S).encode())
                await self.refuse(exchange, path, 429, message, retry)
            elif length is not None and length.isdigit() and int(length) > self.max_body:
                message = (
                    f"request body of {int(length)} bytes is over the limit of "
                    f"{self.max_body} bytes (--max-body-bytes)"
                )
                await self.refuse(exchange, path, 413, message)
            elif counted:
                self.in_flight += 1
                self.telemetry.in_flight.inc()
                try:
                    await self.app(scope, exchange.receive, exchange.send)
                finally:
                    self.in_flight -= 1
                    self.telemetry.in_flight.dec()
            else:
                await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            exchange.status = exchange.status or 500  # the server's error handler answers it
            raise
        finally:
            if exchange.status is not None:
                seconds = time.perf_counter() - started
                self.telemetry.observe_request(self.route(scope), exchange.status, seconds)

    def refusal(self, auth: bytes | None) -> str | None:
        """Why the request may not pass (a one-line message), or None where its key is right.

        The key is compared in constant time, so the answer's timing tells nothing about how
        much of a guess was right."""
        if auth is None:
            return "missing API key: send the header 'Authorization: Bearer <key>'"
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() != b"bearer":
            return "the Authorization header must be 'Bearer <key>'"
        if not hmac.compare_digest(token.strip(), self.key or b""):
            return "invalid API key"
        return None

    async def refuse(
        self, exchange: Exchange, path: str, status: int, message: str, *extra: tuple[bytes, bytes]
    ) -> None:
        """Answer `status` with the path's error body, before any route runs."""
        body = json.dumps(
            error_body(path, status, message), ensure_ascii=False, separators=(",", ":")
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ]
        await exchange.send({"type": "http.response.start", "status": status, "headers": headers})
        await exchange.send({"type": "http.response.body", "body": body})

    def route(self, scope: Scope) -> str:
        """The template of the route for the request (`unmatched` where none is).

        The router records the route it chose in the scope; a request refused here never
        reached it, so the routes are matched against its scope."""
        route = scope.get("route")
        if route is None:
            for candidate in self.router.routes:
                if candidate.matches(scope)[0] is not Match.NONE:
                    route = candidate
                    break
        return getattr(route, "path", None) or UNMATCHED


def _auth(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return value
    return None


def install(
    app: Any, telemetry: Telemetry, *, api_key: str | None, max_concurrent: int, max_body_bytes: int
) -> None:
    """Put the guards in front of a FastAPI app and add `GET /metrics`.

    Args:
        app: the application; routes added to it later are guarded too.
        telemetry: the metrics the guards record and /metrics reports.
        api_key: the key clients must send as `Authorization: Bearer <key>`; None: no key.
        max_concurrent: requests in flight past which a request gets 429.
        max_body_bytes: a declared body size past which a request gets 413.
    """

    async def metrics(request: Request) -> Response:
        body, content_type = telemetry.scrape()
        return Response(body, media_type=content_type)

    app.add_route(METRICS, metrics, methods=["GET"], include_in_schema=False)
    app.add_middleware(
        Guards,
        router=app.router,
        telemetry=telemetry,
        api_key=api_key,
        max_concurrent_requests=max_concurrent,
        max_body_bytes=max_body_bytes,
    )
