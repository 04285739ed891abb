"""GET /metrics (mtst.inference.telemetry): Prometheus text that prometheus-client's own parser
reads, counters that move with the requests (by route template and status, never the raw path),
the gauges of work in progress while a gated model holds requests, two applications in one
process counting apart, and `mtst serve` itself: the model load time, and with --workers 2 one
scrape that sees both workers (multiprocess mode).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mtst.inference.export import export_model
from mtst.inference.loading import untrained
from mtst.inference.server import ServeSettings, create_app
from tests.serve_guard_helpers import Gated, wait_until
from tests.test_serve import Server
from tests.test_serve_failures import serving

Samples = dict[tuple[str, frozenset], float]


def scrape(client: Any, **headers: str) -> Samples:
    """Every sample of a /metrics answer, keyed by name and labels."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def model() -> Any:
    return untrained("gpt_neo_tiny", seed=3)


@pytest.fixture(scope="module")
def client(model) -> Iterator[TestClient]:
    with TestClient(create_app(model, ServeSettings(max_wait_ms=1))) as client:
        yield client


def test_counters_move_by_route_template_and_status(client) -> None:
    before = scrape(client)
    for texts in (["one", "two"], ["three"], ["four", "five", "six"]):
        assert client.post("/predict", json={"texts": texts}).status_code == 200
    assert client.post("/predict", json={"texts": [3]}).status_code == 422
    assert client.get("/predict").status_code == 405
    for path in ("/no-such-route", "/v1/no-such-route", "/random/a8f3"):
        assert client.get(path).status_code == 404
    assert client.post("/similarity", json={"a": ["a"], "b": ["b"]}).status_code == 200
    for _ in range(3):
        assert client.get("/health").status_code == 200
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "mtst_requests_total"
    assert moved(requests, route="/predict", status="200") == 3
    assert moved(requests, route="/predict", status="422") == 1
    assert moved(requests, route="/predict", status="405") == 1
    assert moved(requests, route="unmatched", status="404") == 3  # one label for every 404
    assert moved(requests, route="/similarity", status="200") == 1
    assert moved(requests, route="/metrics", status="200") == 1  # the first scrape
    routes = {dict(labels).get("route") for _, labels in after}
    assert "/health" not in routes and not {"/no-such-route", "/random/a8f3"} & routes
    assert moved("mtst_request_duration_seconds_count", route="/predict") == 5
    assert moved("mtst_request_duration_seconds_bucket", route="/predict", le="+Inf") == 5
    assert moved("mtst_request_duration_seconds_sum", route="/predict") > 0
    # 6 texts of /predict and 2 of /similarity, in at least 4 model calls
    assert moved("mtst_batch_texts_sum") == 8
    assert moved("mtst_batch_texts_count") >= 4
    assert value(after, "mtst_queue_texts") == 0
    assert value(after, "mtst_requests_in_flight") == 0  # a scrape does not count itself


def test_two_apps_in_one_process_count_apart(model) -> None:
    with (
        TestClient(create_app(model, ServeSettings(max_wait_ms=1))) as first,
        TestClient(create_app(model, ServeSettings(max_wait_ms=1))) as second,
    ):
        for _ in range(2):
            first.post("/predict", json={"texts": ["x"]})
        requests = "mtst_requests_total"
        assert value(scrape(first), requests, route="/predict", status="200") == 2
        assert value(scrape(second), requests, route="/predict", status="200") == 0


def test_the_gauges_show_the_work_in_progress(model) -> None:
    gated = Gated(model)
    app = create_app(gated, ServeSettings(max_wait_ms=0))
    with serving(app) as url, ThreadPoolExecutor(2) as executor:
        clients = [httpx.Client(base_url=url, timeout=60, trust_env=False) for _ in range(3)]
        held = [
            executor.submit(clients[i].post, "/predict", json={"texts": ["a"] * (i + 1)})
            for i in range(2)
        ]
        try:
            wait_until(lambda: app.state.batcher.pending == 3, "three texts to reach the batcher")
            busy = scrape(clients[2])
            assert value(busy, "mtst_queue_texts") == 3
            assert value(busy, "mtst_requests_in_flight") == 2
        finally:
            gated.gate.set()  # a failed assertion must not leave the server waiting for it
        assert [f.result().status_code for f in held] == [200, 200]
        idle = scrape(clients[2])
        assert value(idle, "mtst_queue_texts") == 0 and value(idle, "mtst_requests_in_flight") == 0
        for client in clients:
            client.close()


def test_metrics_ask_for_the_key_too(model) -> None:
    with TestClient(create_app(model, ServeSettings(api_key="k3y"))) as client:
        assert client.get("/metrics").status_code == 401
        scrape(client, authorization="Bearer k3y")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve_metrics") / "export"
    export_model(untrained("gpt_neo_tiny", seed=3), out)
    return out


def test_serve_reports_its_model_load_time_and_takes_the_key_from_the_environment(
    model_dir, monkeypatch
) -> None:
    monkeypatch.setenv("MTST_API_KEY", "env-k3y")
    server = Server(model_dir)
    try:
        auth = {"Authorization": "Bearer env-k3y"}
        assert server.client.get("/metadata").status_code == 401
        assert server.client.get("/metadata", headers=auth).status_code == 200
        samples = scrape(server.client, **auth)
        assert 0 < value(samples, "mtst_model_load_seconds") < 120
    finally:
        assert server.stop() == 0
    output = server.process.stdout.read() + server.process.stderr.read()
    assert "env-k3y" not in output


@pytest.mark.slow
def test_one_scrape_sees_every_worker(model_dir, tmp_path, monkeypatch) -> None:
    """--workers 2: each worker is a process with its own counters; the model load time has one
    series per worker (label pid), so a scrape showing two of them has read both workers. The
    parent removes the metrics folder it made once the workers are gone."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the parent makes the metrics folder
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    server = Server(model_dir, "--workers", "2")
    try:

        def workers_seen() -> int:
            samples = scrape(server.client)
            return sum(1 for name, _ in samples if name == "mtst_model_load_seconds")

        wait_until(lambda: workers_seen() == 2, "both workers to report", timeout_s=120)
        assert len(list(tmp_path.glob("mtst-metrics-*"))) == 1
        for i in range(8):  # a new connection each: either worker may take it
            response = httpx.post(
                f"{server.url}/predict", json={"texts": [f"text {i}"]}, trust_env=False, timeout=60
            )
            assert response.status_code == 200
        for _ in range(4):  # whichever worker answers the scrape, it counts all 8
            with httpx.Client(base_url=server.url, trust_env=False, timeout=60) as fresh:
                samples = scrape(fresh)
            assert value(samples, "mtst_requests_total", route="/predict", status="200") == 8
            assert value(samples, "mtst_request_duration_seconds_count", route="/predict") == 8
            assert value(samples, "mtst_batch_texts_sum") == 8
    finally:
        assert server.stop() == 0
    assert not list(tmp_path.glob("mtst-metrics-*"))


def test_the_multiprocess_folder_is_read_on_scrape(tmp_path) -> None:
    """In a fresh interpreter with PROMETHEUS_MULTIPROC_DIR set (as a worker of --workers N
    starts), the values go to files there and a scrape reads them back."""
    script = (
        "from mtst.inference.telemetry import Telemetry\n"
        "t = Telemetry()\n"
        "t.observe_request('/predict', 200, 0.01)\n"
        "t.model_load_seconds.set(2.5)\n"
        "print(t.scrape()[0].decode())\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.glob("*.db"))
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(done.stdout)
        for s in family.samples
    }
    assert value(samples, "mtst_requests_total", route="/predict", status="200") == 1
    loads = [v for (name, _), v in samples.items() if name == "mtst_model_load_seconds"]
    assert loads == [2.5]
