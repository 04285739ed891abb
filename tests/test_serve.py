"""`mtst serve` as a real server process on a free loopback port, talked to over HTTP.

Every endpoint, every class of bad input (status code and one-line JSON error), results equal to
`model.predict` / `model.encode` for the same texts, concurrent requests each getting their own
results, and SIGTERM with requests in flight (all answered, exit code 0).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

import mtst
from mtst.inference.export import export_model
from mtst.inference.loading import untrained

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 120  # upper bound on a server start (imports and model load) on a loaded machine
LONG = " ".join(f"Paris{i} and Lyon" for i in range(60))  # ~180 words: several windows
TEXTS = [
    "Ada Lovelace flew from London to Paris on Monday.",
    "x",
    "",
    "Zoë  found São Paulo 🙂 hot!",
    LONG,
    "The senate will vote on the budget in March.",
]


class Server:
    """`mtst serve` in a child process; its port is read from the line it prints."""

    def __init__(self, model_dir: Path, *extra: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
        command = [
            sys.executable,
            "-m",
            "mtst.cli.main",
            "serve",
            str(model_dir),
            "--port",
            "0",
            "--threads",
            "1",
            *extra,
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        self.url = self._read_url()
        self.client = httpx.Client(base_url=self.url, timeout=60, trust_env=False)
        deadline = time.monotonic() + STARTUP_S
        while True:  # bounded: every worker answers /health, or the test fails at the deadline
            try:
                if self.client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and self.process.poll() is None, self.stderr()
            time.sleep(0.2)

    def _read_url(self) -> str:
        line: list[str] = []
        reader = threading.Thread(
            target=lambda: line.append(self.process.stdout.readline()), daemon=True
        )
        reader.start()
        reader.join(STARTUP_S)
        assert line and line[0].startswith("mtst serve: http://127.0.0.1:"), self.stderr()
        return line[0].split()[2]

    def stderr(self) -> str:
        if self.process.poll() is None:
            return "(server still running)"
        return self.process.stderr.read()

    def post(self, path: str, payload: object) -> httpx.Response:
        return self.client.post(path, json=payload)

    def stop(self) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        finally:
            if self.process.poll() is None:
                self.process.kill()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "export"
    export_model(untrained("gpt_neo_tiny", seed=3), out)
    return out


@pytest.fixture(scope="module")
def model(model_dir):
    return mtst.load(model_dir)


@pytest.fixture(scope="module")
def server(model_dir):
    running = Server(
        model_dir,
        "--max-texts",
        "8",
        "--max-chars",
        "3000",
        "--max-body-bytes",
        "40000",
        "--max-wait-ms",
        "30",
    )
    yield running
    running.stop()


def assert_same(got: object, expected: object, path: str = "") -> None:
    """Equal, except that scores may differ by one unit of their 4th decimal: a text batched
    with other texts is padded differently, which moves fp32 sums by ~1e-7."""
    if isinstance(expected, float) and not isinstance(got, bool):
        assert isinstance(got, float | int) and abs(got - expected) <= 1.01e-4, (
            path,
            got,
            expected,
        )
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and list(got) == list(expected), (path, got, expected)
        for key in expected:
            assert_same(got[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), (path, got, expected)
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    else:
        assert got == expected, (path, got, expected)


def test_health_and_metadata(server, model) -> None:
    health = server.client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    meta = server.client.get("/metadata").json()
    spaces = model.label_spaces
    assert list(meta["tasks"]) == ["topic", "ner"]  # the keys of each prediction
    assert meta["tasks"]["topic"] == {
        "type": "sentence_classification",
        "labels": spaces["topic"].names,
    }
    assert meta["tasks"]["ner"]["labels"] == spaces["ner"].entity_types
    assert meta["tasks"]["ner"]["tags"] == spaces["ner"].ids
    assert meta["max_length"] == model.encoder.max_length == 128
    assert meta["backbone"]["model_type"] == "gpt_neo"
    assert meta["backbone"]["name_or_path"] == "package:mtst/assets/gpt_neo_tiny"
    assert meta["mtst_version"] == mtst.__version__
    assert meta["limits"]["max_texts"] == 8 and meta["backend"] == "torch"


def test_predict_returns_what_model_predict_returns(server, model) -> None:
    response = server.post("/predict", {"texts": TEXTS})
    assert response.status_code == 200
    got = response.json()["predictions"]
    expected = model.predict(TEXTS)
    assert_same(got, expected)
    assert set(got[0]) == set(expected[0]) == {"text", "topic", "ner"}
    long_entities = got[TEXTS.index(LONG)]["ner"]
    assert (
        long_entities and long_entities[-1]["end"] > len(LONG) - 10
    )  # sliding window: the end is read
    for text, result in zip(TEXTS, got, strict=True):
        assert result["text"] == text
        assert all(text[e["start"] : e["end"]] == e["text"] for e in result["ner"])


def test_embed_and_similarity_match_encode(server, model) -> None:
    expected = model.encode(TEXTS)
    # LONG is past max_length sub-tokens: TEI refuses it unless told to truncate
    raw = server.post("/embed", {"inputs": TEXTS, "normalize": False, "truncate": True}).json()
    np.testing.assert_allclose(np.array(raw), expected, rtol=1e-4, atol=1e-5)
    unit = np.array(server.post("/embed", {"inputs": TEXTS, "truncate": True}).json())  # unit
    np.testing.assert_allclose(unit, model.encode(TEXTS, normalize=True), rtol=1e-4, atol=1e-5)
    a, b = TEXTS[:2], TEXTS[2:]
    matrix = np.array(server.post("/similarity", {"a": a, "b": b}).json()["similarity"])
    cos = (
        model.encode(a, normalize=True) @ model.encode(b, normalize=True).T
    )  # "" embeds to 0: cos 0
    assert matrix.shape == (2, 4)
    np.testing.assert_allclose(matrix, cos, atol=1e-5)
    assert server.post("/similarity", {"a": ["same words"], "b": ["same words"]}).json()[
        "similarity"
    ][0][0] == pytest.approx(1.0, abs=1e-6)


def test_empty_lists_give_empty_results(server) -> None:
    assert server.post("/predict", {"texts": []}).json() == {"predictions": []}
    assert server.post("/embed", {"inputs": []}).json() == []
    assert server.post("/similarity", {"a": [], "b": ["x"]}).json() == {"similarity": []}
    assert server.post("/similarity", {"a": ["x", "y"], "b": []}).json() == {"similarity": [[], []]}


BAD = [
    # (method, path, body bytes or JSON, status, words the error must hold)
    ("POST", "/predict", b'{"texts": ["a", }', 400, "not valid JSON"),
    ("POST", "/predict", b'{"texts": ["caf\xe9"]}', 400, "not valid UTF-8"),
    ("POST", "/predict", ["a", "b"], 422, "must be a JSON object, got array"),
    (
        "POST",
        "/predict",
        {"texts": "one text"},
        422,
        "'texts' must be a list of strings, got string",
    ),
    ("POST", "/predict", {"texts": ["ok", 3]}, 422, "texts[1] must be a string, got number"),
    ("POST", "/predict", {"text": ["ok"]}, 422, "unknown field 'text'; expected texts"),
    ("POST", "/predict", {}, 422, "field 'texts' is missing"),
    (
        "POST",
        "/embed",
        {"inputs": ["ok"], "normalize": "yes"},
        422,
        "'normalize' must be true or false",
    ),
    ("POST", "/similarity", {"a": ["ok"]}, 422, "field 'b' is missing"),
    (
        "POST",
        "/similarity",
        {"a": ["ok"], "b": None},
        422,
        "'b' must be a list of strings, got null",
    ),
    (
        "POST",
        "/predict",
        {"texts": ["t"] * 9},
        413,
        "holds 9 texts, over the limit of 8 (--max-texts)",
    ),
    (
        "POST",
        "/embed",
        {"inputs": ["ok", "y" * 3001]},
        413,
        "inputs[1] has 3001 characters, over the limit",
    ),
    ("POST", "/predict", {"texts": ["z" * 2999] * 14}, 413, "over the limit of 40000 bytes"),
    # each of these five was a 500 before (TypeError, RecursionError, ValueError)
    (
        "POST",
        "/predict",
        {"texts": ["ok", "ab\ud800cd"]},
        422,
        "texts[1]: character 3 is a lone surrogate (U+D800)",
    ),
    (
        "POST",
        "/similarity",
        {"a": ["ok"], "b": ["\udfff"]},
        422,
        "b[0]: character 1 is a lone surrogate",
    ),
    ("POST", "/predict", b'{"t\\ud800": 1}', 422, "unknown field 't\\ud800'; expected texts"),
    (
        "POST",
        "/predict",
        b'{"texts": ' + b"[" * 2000 + b"]" * 2000 + b"}",
        400,
        "request body is not valid JSON: nested too deeply",
    ),
    (
        "POST",
        "/predict",
        b'{"texts": [' + b"1" * 5000 + b"]}",
        400,
        "request body is not valid JSON: a number of 5000 digits",
    ),
    ("GET", "/nowhere", None, 404, "GET /nowhere: Not Found"),
    ("GET", "/predict", None, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"), BAD, ids=[f"{b[3]}-{b[4][:24]}" for b in BAD]
)
def test_bad_input_gets_its_status_and_a_one_line_error(
    server, method, path, body, status, words
) -> None:
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    response = server.client.request(method, path, content=content)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error and "\n" not in error, error
    assert server.client.get("/health").status_code == 200  # and the server keeps serving


def test_a_body_over_the_limit_is_refused_while_it_streams(server) -> None:
    """Without a Content-Length (a chunked upload) the limit applies to the bytes read so far; the
    body (spaces) is not JSON, so a 413 rather than a 400 shows it was refused before parsing."""
    response = server.client.post("/predict", content=(b" " * 1000 for _ in range(100)))
    assert response.status_code == 413, response.text
    assert response.json()["error"] == (
        "request body is over the limit of 40000 bytes (--max-body-bytes)"
    )
    assert server.client.get("/health").status_code == 200


def test_concurrent_requests_each_get_their_own_results_in_order(server, model) -> None:
    pool = [f"Request {i} goes from Paris to city number {i}." for i in range(12)] + TEXTS[:4]
    requests = [[pool[(3 * r + k) % len(pool)] for k in range(1 + r % 3)] for r in range(24)]
    expected = dict(zip(pool, model.predict(pool), strict=True))
    before = server.client.get("/health").json()["batches"]
    with ThreadPoolExecutor(8) as executor:
        clients = [httpx.Client(base_url=server.url, timeout=60, trust_env=False) for _ in range(8)]
        futures = [
            executor.submit(clients[r % 8].post, "/predict", json={"texts": texts})
            for r, texts in enumerate(requests)
        ]
        responses = [f.result() for f in futures]
        for client in clients:
            client.close()
    for texts, response in zip(requests, responses, strict=True):
        assert response.status_code == 200
        assert_same(response.json()["predictions"], [expected[t] for t in texts])
    batches = server.client.get("/health").json()["batches"] - before
    assert 1 <= batches < len(requests)  # texts of different requests shared batches


def test_a_bad_request_never_fails_the_good_one_sent_with_it(server, model) -> None:
    """Each round sends a good request and one holding a lone surrogate at the same moment (the
    server waits 30 ms for company, so the two would share a batch): before, the good one got the
    bad one's 500 in every round."""
    good, expected = ["Ada flew to Paris."], model.predict(["Ada flew to Paris."])
    bodies = [
        json.dumps({"texts": texts}).encode() for texts in (good, ["ab\ud800cd"])
    ]  # \u escapes
    clients = [httpx.Client(base_url=server.url, timeout=60, trust_env=False) for _ in bodies]
    with ThreadPoolExecutor(2) as executor:
        for _ in range(12):
            barrier = threading.Barrier(2)

            def send(i: int, barrier=barrier) -> httpx.Response:
                barrier.wait()
                return clients[i].post("/predict", content=bodies[i])

            ok, bad = executor.map(send, range(2))
            assert ok.status_code == 200, ok.text
            assert_same(ok.json()["predictions"], expected)
            assert bad.status_code == 422 and bad.json()["error"].startswith("texts[0]: "), bad.text
    for client in clients:
        client.close()


def test_bad_input_keeps_the_connection_open(server) -> None:
    """Every 500 closed the keep-alive connection. The bodies that were 500s are answered on
    one connection now (auto_open off: http.client may not quietly open another)."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.auto_open = 0
    connection.connect()
    sock, statuses = connection.sock, []
    for body in (
        b'{"texts": ["\\ud800"]}',
        b"[" * 2000,
        b"[" + b"2" * 5000 + b"]",
        b'{"texts": ["ok"]}',
    ):
        connection.request(
            "POST", "/predict", body=body, headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
    assert statuses == [422, 400, 400, 200] and connection.sock is sock
    connection.close()


def test_sigterm_answers_the_requests_in_flight_then_exits_0(model_dir, model) -> None:
    # texts wait up to 3 s for company, so the requests are still in the server at SIGTERM
    server = Server(model_dir, "--max-wait-ms", "3000", "--max-batch-size", "64")
    requests = [[f"Sentence {i} about Rome."] * (1 + i % 2) for i in range(6)]
    executor = ThreadPoolExecutor(6)
    clients = [httpx.Client(base_url=server.url, timeout=60, trust_env=False) for _ in requests]
    futures = [
        executor.submit(c.post, "/predict", json={"texts": t})
        for c, t in zip(clients, requests, strict=True)
    ]
    deadline = time.monotonic() + 30
    while server.client.get("/health").json()["pending_texts"] < sum(map(len, requests)):
        assert time.monotonic() < deadline, "the requests never reached the server"
        time.sleep(0.02)
    server.process.send_signal(signal.SIGTERM)
    assert not any(f.done() for f in futures)
    responses = [f.result() for f in futures]
    assert server.process.wait(60) == 0, server.stderr()
    for texts, response in zip(requests, responses, strict=True):
        assert response.status_code == 200
        assert_same(response.json()["predictions"], model.predict(texts))
    with pytest.raises(httpx.TransportError):  # and it no longer listens
        httpx.get(f"{server.url}/health", timeout=5, trust_env=False)
    executor.shutdown()
    for client in clients:
        client.close()
    server.client.close()


def test_serve_refuses_bad_settings_and_paths_with_one_line(tmp_path, capsys) -> None:
    from mtst.cli.main import main

    assert main(["serve", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert "missing' does not exist" in capsys.readouterr().err
    assert main(["serve", str(tmp_path), "--max-batch-size", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --max-batch-size must be at least 1, got 0"
    assert main(["serve", str(tmp_path), "--quantized"]) == 2
    assert "--quantized needs --backend onnx" in capsys.readouterr().err


def test_serve_listens_on_loopback_by_default() -> None:
    from mtst.cli.main import build_parser

    args = build_parser().parse_args(["serve", "somewhere"])
    assert args.host == "127.0.0.1" and args.port == 8000 and args.max_batch_size == 32


@pytest.mark.slow
def test_two_workers_serve_and_drain(model_dir, model) -> None:
    server = Server(model_dir, "--workers", "2")
    with ThreadPoolExecutor(4) as executor:
        responses = list(executor.map(lambda t: server.post("/predict", {"texts": [t]}), TEXTS))
    for text, response in zip(TEXTS, responses, strict=True):
        assert_same(response.json()["predictions"], model.predict([text]))
    assert server.stop() == 0


def test_default_threads_share_the_usable_cores_among_workers(monkeypatch) -> None:
    from mtst.cli.serve import default_threads

    for cores, workers, expected in ((2, 1, 2), (1, 1, 1), (16, 1, 16), (16, 2, 8), (4, 8, 1)):
        monkeypatch.setattr(
            "os.sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False
        )
        assert default_threads(workers) == expected, (cores, workers)


def test_a_model_with_a_third_task_is_served_with_one_key_per_task() -> None:
    """In process: the app knows no task names, so a third task shows up in /metadata and in
    every prediction exactly as `model.predict` gives it."""
    from fastapi.testclient import TestClient

    from mtst.inference.server import ServeSettings, create_app

    base = untrained("gpt_neo_tiny", seed=3)
    tasks = {
        **base.tasks,
        "mood": {
            "type": "sentence_classification",
            "head": "sentence",
            "dropout": 0.1,
            "labels": {"kind": "label", "names": ["calm", "tense"]},
        },
    }
    three = untrained("gpt_neo_tiny", seed=3, tasks=tasks)
    with TestClient(create_app(three, ServeSettings(max_wait_ms=1))) as client:
        meta = client.get("/metadata").json()
        got = client.post("/predict", json={"texts": TEXTS[:4]}).json()["predictions"]
    assert list(meta["tasks"]) == ["topic", "ner", "mood"]
    assert meta["tasks"]["mood"] == {"type": "sentence_classification", "labels": ["calm", "tense"]}
    assert_same(got, three.predict(TEXTS[:4]))
    assert all(list(r) == ["text", "topic", "ner", "mood"] for r in got)
    assert set(got[0]["mood"]["scores"]) == {"calm", "tense"}
