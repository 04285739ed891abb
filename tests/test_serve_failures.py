"""When the model fails on a batch, only the request that made it fail gets the 500.

The batcher on its own (a fake run function), then the app on a real uvicorn in a thread of this
process, on a loopback port, with a model that fails on one marked text: whatever it was batched
with still gets its results, and the 500 leaves the keep-alive connection open. A body nested
100,000 levels deep (over the 40 kB limit of test_serve.py's server) is checked here too.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from mtst.inference.batcher import DynamicBatcher
from mtst.inference.loading import untrained
from mtst.inference.server import ServeSettings, create_app

BOOM = "this text breaks the model"


def test_a_failing_batch_is_run_again_one_request_at_a_time() -> None:
    calls: list[list[str]] = []

    def run(kind: str, texts: list[str]) -> list[str]:
        calls.append(list(texts))
        if BOOM in texts:
            raise ValueError("cannot take it")
        return [t.upper() for t in texts]

    async def scenario() -> list[Any]:
        batcher = DynamicBatcher(run, max_batch_size=4, max_wait_s=5)  # 4 texts fill it
        batcher.start(("predict",))
        try:
            jobs = [batcher.submit("predict", texts) for texts in (["a"], [BOOM], ["c", "d"])]
            return [*await asyncio.gather(*jobs, return_exceptions=True), batcher.batches]
        finally:
            await batcher.stop()

    first, second, third, batches = asyncio.run(scenario())
    assert first == ["A"] and third == ["C", "D"]
    assert isinstance(second, ValueError) and str(second) == "cannot take it"
    assert calls == [["a", BOOM, "c", "d"], ["a"], [BOOM], ["c", "d"]]
    assert batches == 2  # the two calls that answered


def test_without_a_wait_the_requests_that_queue_during_a_batch_make_the_next_one() -> None:
    """The default (`max_wait_s=0`): a request that finds the model idle runs alone at once, and
    whatever arrives while it runs is batched together, in arrival order, up to the batch size."""
    calls: list[list[str]] = []
    running, release = threading.Event(), threading.Event()

    def run(kind: str, texts: list[str]) -> list[str]:
        calls.append(list(texts))
        if len(calls) == 1:
            running.set()
            release.wait(10)
        return [t.upper() for t in texts]

    async def scenario() -> list[Any]:
        batcher = DynamicBatcher(run, max_batch_size=4)
        batcher.start(("encode",))
        try:
            first = asyncio.create_task(batcher.submit("encode", ["a"]))
            await asyncio.get_running_loop().run_in_executor(None, running.wait, 10)
            later = [asyncio.create_task(batcher.submit("encode", [t])) for t in "bcdef"]
            await asyncio.sleep(0.05)  # every later request is queued behind the running batch
            release.set()
            return await asyncio.gather(first, *later)
        finally:
            await batcher.stop()

    answers = asyncio.run(scenario())
    assert answers == [["A"], ["B"], ["C"], ["D"], ["E"], ["F"]]
    assert calls == [["a"], ["b", "c", "d", "e"], ["f"]]


class Fragile:
    """The model, except that `predict` fails for a whole batch that holds BOOM."""

    def __init__(self, model: Any) -> None:
        self.model, self.calls = model, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def predict(self, texts: list[str], **kwargs: Any) -> list[dict]:
        self.calls.append(list(texts))
        if BOOM in texts:
            raise RuntimeError("the model cannot take this batch")
        return self.model.predict(texts, **kwargs)


@pytest.fixture(scope="module")
def fragile() -> Fragile:
    return Fragile(untrained("gpt_neo_tiny", seed=3))


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """uvicorn on a free loopback port, in a thread; yields the base URL."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)


def test_a_request_the_model_fails_on_fails_alone(fragile) -> None:
    # two texts fill a batch, so the two requests of a round always share one
    app = create_app(fragile, ServeSettings(max_batch_size=2, max_wait_ms=5000))
    good = ["Ada flew to Paris."]
    expected = fragile.model.predict(good)
    with serving(app) as url, ThreadPoolExecutor(2) as executor:
        clients = [httpx.Client(base_url=url, timeout=60, trust_env=False) for _ in range(2)]
        for _ in range(3):
            fragile.calls.clear()
            sent = [
                executor.submit(c.post, "/predict", json={"texts": t})
                for c, t in zip(clients, (good, [BOOM]), strict=True)
            ]
            ok, bad = (f.result() for f in sent)
            assert ok.status_code == 200 and ok.json()["predictions"] == expected, ok.text
            assert bad.status_code == 500, bad.text
            assert bad.json() == {
                "error": "internal error: RuntimeError: the model cannot take this batch",
                "error_type": "Backend",
            }
            assert len(fragile.calls) == 3 and sorted(fragile.calls[0]) == sorted(good + [BOOM])
        for client in clients:
            client.close()
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connection.auto_open = 0  # a closed connection fails the next request, no quiet reconnect
        connection.connect()
        statuses = []
        for texts in ([BOOM, "x"], good * 2):  # each fills a batch: no wait for company
            connection.request("POST", "/predict", body=json.dumps({"texts": texts}))
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
        connection.close()
    assert statuses == [500, 200]


def test_json_nested_100000_deep_is_a_400(fragile) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(fragile)) as client:  # the default 8 MiB body limit
        for body in (b"[" * 100_000 + b"]" * 100_000, b'{"texts": ' + b"[" * 100_000):
            response = client.post("/predict", content=body)
            assert response.status_code == 400, response.text
            assert response.json()["error"] == "request body is not valid JSON: nested too deeply"
