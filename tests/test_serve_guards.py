"""The guards in front of every route of `mtst serve` (mtst.inference.guards).

The API key (401 in each route family's error shape, /health open, the key compared in constant
time and never shown), the concurrency bound (429 with Retry-After while a gated model holds
requests in flight: no timing race). The 413 for a body over the limit:
tests/test_serve_body_limit.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from mtst.errors import MtstError
from mtst.inference import guards
from mtst.inference.loading import untrained
from mtst.inference.server import ServeSettings, create_app
from tests.serve_guard_helpers import Gated, status_line, wait_until
from tests.test_serve_failures import serving

KEY = "s3cret-Key_42"


@pytest.fixture(scope="module")
def model() -> Any:
    return untrained("gpt_neo_tiny", seed=3)


@pytest.fixture(scope="module")
def keyed(model) -> Iterator[TestClient]:
    with TestClient(create_app(model, ServeSettings(max_wait_ms=1, api_key=KEY))) as client:
        yield client


OPENAI = {"message", "type", "param", "code"}
ROUTES = [
    # (method, path, body, shape of its errors)
    ("GET", "/v1/models", None, "openai"),
    ("POST", "/v1/embeddings", {"input": "hi"}, "openai"),
    ("POST", "/embeddings", {"input": "hi"}, "openai"),
    ("GET", "/v1/no-such-route", None, "openai"),
    ("POST", "/predict", {"texts": ["hi"]}, "tei"),
    ("POST", "/embed", {"inputs": "hi"}, "tei"),
    ("GET", "/metadata", None, "tei"),
    ("GET", "/metrics", None, "tei"),
    ("GET", "/no-such-route", None, "tei"),
]
BAD_AUTH = {
    "missing": None,
    "wrong key": f"Bearer {KEY}x",
    "key prefix": f"Bearer {KEY[:-1]}",
    "other scheme": f"Basic {KEY}",
    "no token": "Bearer",
}


@pytest.mark.parametrize("auth", list(BAD_AUTH))
@pytest.mark.parametrize(("method", "path", "body", "shape"), ROUTES, ids=[r[1] for r in ROUTES])
def test_a_missing_or_wrong_key_is_a_401_in_the_routes_shape(
    keyed, method, path, body, shape, auth
) -> None:
    header = BAD_AUTH[auth]
    headers = {} if header is None else {"Authorization": header}
    response = keyed.request(method, path, json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    if shape == "openai":
        assert set(error) == OPENAI and error["type"] == "authentication_error", error
        message = error["message"]
    else:
        assert response.json()["error_type"] == "Unauthorized", response.text
        message = error
    assert KEY not in response.text and "\n" not in message
    if auth == "missing":
        assert "Authorization: Bearer <key>" in message


def test_the_right_key_opens_every_route_and_health_needs_none(keyed) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    assert keyed.post("/predict", json={"texts": ["hi"]}, headers=auth).status_code == 200
    response = keyed.post("/similarity", json={"a": ["hi"], "b": ["ho"]}, headers=auth)
    assert response.status_code == 200, response.text
    assert keyed.get("/metrics", headers=auth).status_code == 200
    assert keyed.get("/metadata", headers={"Authorization": f"bearer {KEY}"}).status_code == 200
    missing = keyed.get("/no-such-route", headers=auth)
    assert missing.status_code == 404  # past the key, the route's own answer
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        health = keyed.get("/health", headers=headers)
        assert health.status_code == 200 and health.json()["status"] == "ok"


def test_the_openai_client_and_inference_client_pass_the_key(model, monkeypatch) -> None:
    """How docs/serving.md says clients pass it: openai's `api_key=`, InferenceClient's `token=`
    or `api_key=` (each sends `Authorization: Bearer <key>`)."""
    import huggingface_hub.constants
    import openai
    from huggingface_hub import InferenceClient
    from huggingface_hub.errors import HfHubHTTPError

    # huggingface_hub refuses every request under HF_HUB_OFFLINE, even to a loopback URL
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with serving(create_app(model, ServeSettings(max_wait_ms=1, api_key=KEY))) as url:

        def embeddings(key: str) -> Any:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)
            return client.embeddings.create(input=["A ferry."], model="mtst")

        assert len(embeddings(KEY).data) == 1
        with pytest.raises(openai.AuthenticationError, match="invalid API key"):
            embeddings("wrong")
        for auth in ({"token": KEY}, {"api_key": KEY}):
            vector = InferenceClient(url, timeout=60, **auth).feature_extraction("A ferry.")
            assert vector.shape[0] == 1
        with pytest.raises(HfHubHTTPError) as caught:
            InferenceClient(url, timeout=60, token="wrong").feature_extraction("A ferry.")
        assert caught.value.response.status_code == 401


def test_without_a_key_no_route_asks_for_one(model) -> None:
    with TestClient(create_app(model, ServeSettings(max_wait_ms=1))) as client:
        assert client.post("/predict", json={"texts": ["hi"]}).status_code == 200
        assert client.get("/metadata").status_code == 200


def test_the_key_is_compared_in_constant_time_on_bytes(keyed, monkeypatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = guards.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(guards.hmac, "compare_digest", spy)
    assert keyed.get("/v1/models", headers={"Authorization": "Bearer guess"}).status_code == 401
    assert calls == [(b"guess", KEY.encode())]


def test_the_key_is_never_shown(keyed) -> None:
    settings = ServeSettings(api_key=KEY)
    assert KEY not in repr(settings) and "api_key" not in settings.limits()
    metadata = keyed.get("/metadata", headers={"Authorization": f"Bearer {KEY}"})
    assert KEY not in metadata.text and "api_key" not in metadata.json()["limits"]
    assert metadata.json()["limits"]["max_concurrent_requests"] == 512


def test_the_key_comes_from_the_flag_else_the_environment(monkeypatch) -> None:
    from mtst.cli.serve import api_key

    monkeypatch.delenv("MTST_API_KEY", raising=False)
    assert api_key(None) is None
    monkeypatch.setenv("MTST_API_KEY", "from-env")
    assert api_key(None) == "from-env"
    assert api_key("from-flag") == "from-flag"  # the flag wins
    monkeypatch.setenv("MTST_API_KEY", "")
    assert api_key(None) is None  # an empty variable is an unset one
    with pytest.raises(MtstError, match="--api-key is empty"):
        api_key("")
    for bad in ("two words", "caf\u00e9", "tab\there"):
        with pytest.raises(MtstError) as caught:
            api_key(bad)
        assert str(caught.value) == "--api-key must be printable ASCII without spaces"
    monkeypatch.setenv("MTST_API_KEY", "has space")
    with pytest.raises(MtstError, match="^MTST_API_KEY must be printable ASCII"):
        api_key(None)


def test_the_public_host_warning_says_whether_a_key_is_set() -> None:
    from mtst.cli.serve import exposure_warning

    assert exposure_warning("127.0.0.1", False) is None and exposure_warning("::1", True) is None
    open_warning = exposure_warning("0.0.0.0", False)
    assert "anyone who can reach this machine" in open_warning and "--api-key" in open_warning
    keyed_warning = exposure_warning("0.0.0.0", True)
    assert "anyone" not in keyed_warning and "asks for the API key" in keyed_warning


def test_serve_refuses_a_bad_concurrency_bound_or_key_with_one_line(tmp_path, capsys) -> None:
    from mtst.cli.main import main

    assert main(["serve", str(tmp_path), "--max-concurrent-requests", "0"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --max-concurrent-requests must be at least 1, got 0"
    )
    assert main(["serve", str(tmp_path), "--api-key", "not secret"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --api-key must be printable ASCII without spaces"


def test_past_the_concurrency_bound_a_request_gets_429_at_once(model) -> None:
    gated = Gated(model)
    app = create_app(gated, ServeSettings(max_concurrent_requests=2, max_wait_ms=0))
    batcher = app.state.batcher
    with serving(app) as url, ThreadPoolExecutor(2) as executor:
        # the third client's timeout is short: where the bound failed, its request would wait
        clients = [httpx.Client(base_url=url, timeout=t, trust_env=False) for t in (60, 60, 10)]
        held = [
            executor.submit(clients[i].post, "/predict", json={"texts": [f"text {i}"]})
            for i in range(2)
        ]
        try:
            wait_until(lambda: batcher.pending == 2, "both requests to reach the model")
            refused = clients[2].post("/predict", json={"texts": ["one too many"]})
            assert refused.status_code == 429, refused.text
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error_type"] == "Overloaded"
            assert "(--max-concurrent-requests)" in refused.json()["error"]
            openai = clients[2].post("/v1/embeddings", json={"input": "one too many"})
            assert openai.status_code == 429 and openai.headers["retry-after"] == "1"
            assert openai.json()["error"]["type"] == "rate_limit_error"
            # at once, without the body: only the headers of a 1 MB upload are ever sent
            status = status_line(
                url,
                b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000000\r\n\r\n",
            )
            assert status.startswith(b"HTTP/1.1 429"), status
            # neither /health nor /metrics counts against the bound
            assert clients[2].get("/health").status_code == 200
            assert clients[2].get("/metrics").status_code == 200
            assert not any(f.done() for f in held)
        finally:
            gated.gate.set()  # a failed assertion must not leave the server waiting for it
        assert [f.result().status_code for f in held] == [200, 200]
        again = clients[2].post("/predict", json={"texts": ["room again"]})
        assert again.status_code == 200, again.text
        for client in clients:
            client.close()
