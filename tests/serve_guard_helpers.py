"""A model that holds its calls until a test lets them go: requests stay in flight for exactly as
long as a test needs, with no timing race (tests/test_serve_guards.py, test_serve_metrics.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

GATE_TIMEOUT_S = 60  # a test that forgets to open the gate fails instead of hanging


class Gated:
    """The model, except that `predict` and `encode` wait until `gate` is set."""

    def __init__(self, model: Any) -> None:
        self.model, self.gate = model, threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def predict(self, texts: list[str], **kwargs: Any) -> list[dict]:
        assert self.gate.wait(GATE_TIMEOUT_S), "the test never opened the gate"
        return self.model.predict(texts, **kwargs)

    def encode(self, texts: list[str], **kwargs: Any) -> Any:
        assert self.gate.wait(GATE_TIMEOUT_S), "the test never opened the gate"
        return self.model.encode(texts, **kwargs)


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    """Poll `condition` until it holds; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def status_line(url: str, request: bytes) -> bytes:
    """Send raw bytes to the server at `url` (headers only: a declared body is never sent) and
    read the status line of its answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        return sock.makefile("rb").readline()
