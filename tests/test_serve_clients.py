"""`mtst serve` driven by the clients people already use: `openai`, `huggingface_hub`'s
InferenceClient and plain httpx, against a real server process on a loopback port.

Embeddings must equal `mtst.load(...).encode` (cosine 0.9999 or more, unit length where the API
promises it), classification answers `model.predict`'s labels and entities, and each refusal
must reach the client as the exception (or status and message) that client raises for it.
"""

from __future__ import annotations

import numpy as np
import openai
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError

from tests.test_serve import LONG, Server, model, model_dir  # noqa: F401  (fixtures)

TEXTS = ["Ada Lovelace flew from London to Paris on Monday.", "x", "Zoë found São Paulo hot!", LONG]


@pytest.fixture(scope="module")
def server(model_dir):  # noqa: F811
    running = Server(model_dir, "--max-texts", "8", "--max-wait-ms", "5")
    yield running
    running.stop()


@pytest.fixture
def hub_online(monkeypatch):
    """huggingface_hub refuses every request under HF_HUB_OFFLINE (the tests' default), even to
    a loopback URL; these requests never leave the machine."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def assert_same_direction(got: np.ndarray, expected: np.ndarray) -> None:
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape
    cosines = (got * expected).sum(-1) / (
        np.linalg.norm(got, axis=-1) * np.linalg.norm(expected, axis=-1)
    )
    assert cosines.min() >= 0.9999, cosines


def openai_client(server: Server, path: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + path, api_key="x", max_retries=0, timeout=60)


def test_openai_client_embeddings_in_base64_and_float(server, model, model_dir) -> None:  # noqa: F811
    expected = model.encode(TEXTS)
    default = openai_client(server).embeddings.create(input=TEXTS, model="anything")  # base64
    floats = openai_client(server, "").embeddings.create(  # POST /embeddings
        input=TEXTS, model="anything", encoding_format="float", user="someone"
    )
    for response in (default, floats):
        vectors = np.array([row.embedding for row in response.data])
        assert_same_direction(vectors, expected)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert [row.index for row in response.data] == list(range(len(TEXTS)))
        assert response.model == model_dir.name  # the served folder's name, whatever was asked
    tokenizer, max_length = model.encoder.tokenizer, model.encoder.max_length
    tokens = sum(min(len(tokenizer(text)["input_ids"]), max_length) for text in TEXTS)
    assert default.usage.prompt_tokens == default.usage.total_tokens == tokens
    one = openai_client(server).embeddings.create(input=TEXTS[0], model="m", dimensions=64)
    assert len(one.data) == 1
    assert_same_direction(one.data[0].embedding, expected[0])


def test_openai_models_lists_the_served_model(server, model_dir) -> None:  # noqa: F811
    models = openai_client(server).models.list().data
    assert [m.id for m in models] == [model_dir.name] and models[0].owned_by == "mtst"


@pytest.mark.parametrize(
    ("kwargs", "error", "param", "words"),
    [
        ({"dimensions": 32}, openai.UnprocessableEntityError, "dimensions", "cannot be shortened"),
        ({"input": [[101, 7592]]}, openai.UnprocessableEntityError, "input", "holds token ids"),
        ({"input": [7592, 2088]}, openai.UnprocessableEntityError, "input", "holds token ids"),
        ({"input": ["ok", 3]}, openai.UnprocessableEntityError, "input", "input[1] must be a"),
        ({"input": ["t"] * 9}, openai.APIStatusError, "input", "over the limit of 8"),
        (
            {"extra_body": {"truncate": True}},
            openai.UnprocessableEntityError,
            "truncate",
            "unknown",
        ),
    ],
    ids=["dimensions", "token-arrays", "token-array", "not-a-string", "too-many", "unknown"],
)
def test_openai_refusals_reach_the_client_as_its_errors(server, kwargs, error, param, words):
    request = {"input": ["ok"], "model": "m", **kwargs}
    with pytest.raises(error) as caught:
        openai_client(server).embeddings.create(**request)
    assert caught.value.param == param and words in caught.value.body["message"], caught.value
    assert caught.value.type == "invalid_request_error"


def test_openai_shaped_errors_on_unknown_paths(server) -> None:
    response = server.client.get("/v1/nowhere")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "GET /v1/nowhere: Not Found"
    assert server.client.get("/nowhere").json()["error"] == "GET /nowhere: Not Found"  # TEI's


def test_inference_client_feature_extraction_at_the_root(server, model, hub_online) -> None:  # noqa: F811
    client = InferenceClient(server.url, timeout=60)
    unit = client.feature_extraction(TEXTS[0])  # TEI normalises by default
    assert unit.shape == (1, model.encoder.hidden_size)
    np.testing.assert_allclose(unit, model.encode(TEXTS[:1], normalize=True), atol=1e-5)
    raw = client.feature_extraction(TEXTS[2], normalize=False)
    np.testing.assert_allclose(raw, model.encode(TEXTS[2:3]), rtol=1e-4, atol=1e-5)
    with pytest.raises(HfHubHTTPError) as caught:  # LONG is over max_length sub-tokens
        client.feature_extraction(LONG)
    assert caught.value.response.status_code == 413
    assert "inputs[0] is" in caught.value.response.json()["error"]
    assert_same_direction(client.feature_extraction(LONG, truncate=True), model.encode([LONG]))


def test_inference_client_text_classification_on_each_task_route(server, model, hub_online):  # noqa: F811
    client = InferenceClient(server.url + "/tasks/topic", timeout=60)
    for text, prediction in zip(TEXTS, model.predict(TEXTS), strict=True):
        answer = client.text_classification(text, top_k=2)
        assert len(answer) == 2 and answer[0].label == prediction["topic"]["label"]
        assert abs(answer[0].score - prediction["topic"]["score"]) <= 1.01e-4
    every = client.text_classification(TEXTS[0])
    assert {e.label for e in every} == set(model.label_spaces["topic"].names)
    assert [e.score for e in every] == sorted((e.score for e in every), reverse=True)


def test_inference_client_token_classification_on_each_task_route(server, model, hub_online):  # noqa: F811
    client = InferenceClient(server.url + "/tasks/ner", timeout=60)
    for text, prediction in zip(TEXTS, model.predict(TEXTS), strict=True):
        got = [(e.entity_group, e.word, e.start, e.end) for e in client.token_classification(text)]
        assert got == [(e["type"], e["text"], e["start"], e["end"]) for e in prediction["ner"]]
        assert all(text[start:end] == word for _, word, start, end in got)
    kept = client.token_classification(LONG, ignore_labels=["DATE"])
    assert all(e.entity_group != "DATE" for e in kept)


def test_inference_client_sentence_similarity(server, model, hub_online) -> None:  # noqa: F811
    client = InferenceClient(server.url + "/tasks/sentence-similarity", timeout=60)
    source = "A ferry to the islands."
    got = client.sentence_similarity(source, other_sentences=TEXTS)
    unit = model.encode([source, *TEXTS], normalize=True)
    np.testing.assert_allclose(got, unit[1:] @ unit[0], atol=1e-5)


TASK_REFUSALS = [
    ("/tasks/topic", {"function_to_apply": "sigmoid"}, "only softmax"),
    ("/tasks/topic", {"top_k": 0}, "parameters.top_k"),
    ("/tasks/ner", {"aggregation_strategy": "none"}, "only simple"),
    ("/tasks/ner", {"stride": 16}, "parameters.stride"),
    ("/tasks/ner", {"top_k": 1}, "unknown field 'parameters.top_k'"),
]


@pytest.mark.parametrize(("route", "parameters", "words"), TASK_REFUSALS)
def test_task_routes_refuse_what_they_cannot_do(server, route, parameters, words) -> None:
    response = server.post(route, {"inputs": "Ada flew.", "parameters": parameters})
    assert response.status_code == 422 and words in response.json()["error"], response.text


def test_tei_embed_refusals_and_info(server, model, model_dir) -> None:  # noqa: F811
    old = server.post("/embed", {"texts": ["a"]})
    assert old.status_code == 422 and 'send {"inputs"' in old.json()["error"]
    assert "bare array" in old.json()["error"]
    too_long = server.post("/", {"inputs": ["ok", LONG]})
    assert too_long.status_code == 413 and too_long.json()["error_type"] == "Validation"
    assert too_long.json()["error"].startswith("inputs[1] is ")
    for field, value, words in (
        ("truncation_direction", "Left", "only Right"),
        ("prompt_name", "query", "no prompts"),
        ("dimensions", 8, "cannot be shortened"),
    ):
        response = server.post("/embed", {"inputs": "ok", field: value})
        assert response.status_code == 422 and words in response.json()["error"], response.text
    truncated = server.post(
        "/embed", {"inputs": [LONG], "truncate": True, "truncation_direction": "Right"}
    )
    assert_same_direction(np.array(truncated.json()), model.encode([LONG]))
    info = server.client.get("/info").json()
    assert info["model_id"] == model_dir.name and info["model_type"]["embedding"]["pooling"]
    assert info["max_input_length"] == model.encoder.max_length
    assert info["max_client_batch_size"] == 8 and info["model_dtype"] == "float32"
    assert info["max_concurrent_requests"] == 512  # --max-concurrent-requests' default
    assert info["mtst"]["task_routes"]["ner"] == {
        "route": "/tasks/ner",
        "pipeline_tag": "token-classification",
    }


def test_a_similarity_task_gets_no_classification_route() -> None:
    """In process: a task without a head has nothing to classify with."""
    from fastapi.testclient import TestClient

    from mtst.inference.loading import untrained
    from mtst.inference.server import ServeSettings, create_app

    base = untrained("gpt_neo_tiny", seed=3)
    tasks = {
        **base.tasks,
        "sts": {
            "type": "sentence_similarity",
            "head": None,
            "labels": {"kind": "pair", "names": []},
        },
    }
    with TestClient(
        create_app(untrained("gpt_neo_tiny", seed=3, tasks=tasks), ServeSettings(max_wait_ms=1))
    ) as client:
        routes = client.get("/info").json()["mtst"]["task_routes"]
        missing = client.post("/tasks/sts", json={"inputs": "a"})
        topic = client.post("/tasks/topic", json={"inputs": ["a", "b"]})
    assert set(routes) == {"topic", "ner", "sentence-similarity"}
    assert missing.status_code == 404
    assert topic.status_code == 200 and len(topic.json()) == 2  # one list per input
