"""Hugging Face inference task routes: `huggingface_hub.InferenceClient(URL + route)` works on each.

    POST /tasks/<task>  a task with a sentence head: text-classification
        {"inputs": str | [str], "parameters": {"top_k": k, "function_to_apply": "softmax"}}
        -> [[{"label", "score"}, ...], ...]: per input every label (or the top k), best first
    POST /tasks/<task>  a task with a token head: token-classification
        {"inputs": str | [str], "parameters": {"aggregation_strategy": "simple",
                                               "ignore_labels": [...]}}
        -> [{"entity_group", "score", "word", "start", "end"}, ...] for one string; one such list
           per input for a list
    POST /tasks/sentence-similarity  {"inputs": {"source_sentence": str, "sentences": [str]}}
        -> [cos(source, sentence_i), ...]

These are the bodies the client posts to a URL model (`{"inputs", "parameters"}`) and the
shapes it parses (`TextClassificationOutputElement`, `TokenClassificationOutputElement`; it
reads the first list of a text-classification answer). The answers are `model.predict`'s for
that task (the batch runs every head; a task route picks its own): labels, scores rounded as
`predict` rounds them, entities with exact character offsets. A task without a head (sentence
similarity shapes the embedding itself) has no route of its own; /tasks/sentence-similarity
answers with the embeddings' cosines (task names are identifiers, so a hyphenated name never
collides with one).

Reference: https://huggingface.co/docs/inference-providers/tasks/text-classification
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mtst.inference.requests import (
    RequestError,
    check_fields,
    check_texts,
    json_type,
    read_json,
)
from mtst.inference.service import ServeContext, answers_errors, cosine_matrix, embed

PIPELINES = {"sentence": "text-classification", "token": "token-classification"}
SIMILARITY_ROUTE = "/tasks/sentence-similarity"


def route_table(model: Any) -> dict[str, dict[str, str]]:
    """Each task route of the model: its path and the Hugging Face task it answers as."""
    table = {
        name: {"route": f"/tasks/{name}", "pipeline_tag": PIPELINES[spec["head"]]}
        for name, spec in model.tasks.items()
        if spec.get("head") in PIPELINES
    }
    table["sentence-similarity"] = {
        "route": SIMILARITY_ROUTE,
        "pipeline_tag": "sentence-similarity",
    }
    return table


def check_parameters(body: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    """`parameters` (absent, null or an object of `known` keys), without its null values."""
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError(
            422, f"field 'parameters' must be an object, got {json_type(parameters)}", "parameters"
        )
    for key in parameters:
        if key not in known:
            expected = ", ".join(known) or "none"
            raise RequestError(
                422, f"unknown field 'parameters.{key}'; expected {expected}", "parameters"
            )
    return {key: value for key, value in parameters.items() if value is not None}


def text_classification(answer: dict[str, Any], parameters: dict[str, Any]) -> list[dict]:
    """A sentence task's `{"label", "score", "scores"}` as HF's list of {label, score}, the
    predicted label first, then by score."""
    ranked = sorted(
        answer["scores"].items(), key=lambda item: (item[0] != answer["label"], -item[1])
    )
    top_k = parameters.get("top_k", len(ranked))
    return [{"label": label, "score": score} for label, score in ranked[:top_k]]


def check_text_classification(parameters: dict[str, Any]) -> None:
    top_k = parameters.get("top_k", 1)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise RequestError(422, "field 'parameters.top_k' must be an integer of 1 or more", "top_k")
    check_only_choice(
        parameters, "function_to_apply", "softmax", "the model's heads answer class probabilities"
    )


def token_classification(entities: list[dict], parameters: dict[str, Any]) -> list[dict]:
    """A token task's entities as HF's grouped entities."""
    ignored = set(parameters.get("ignore_labels", ()))
    return [
        {
            "entity_group": entity["type"],
            "score": entity["score"],
            "word": entity["text"],
            "start": entity["start"],
            "end": entity["end"],
        }
        for entity in entities
        if entity["type"] not in ignored
    ]


def check_token_classification(parameters: dict[str, Any]) -> None:
    check_only_choice(
        parameters,
        "aggregation_strategy",
        "simple",
        "the model tags words and groups them into entities",
    )


def check_only_choice(parameters: dict[str, Any], key: str, only: str, why: str) -> None:
    """A parameter of the HF task API with one value this server can honour: another is a 422
    naming the field, the value and why (absent means `only`)."""
    value = parameters.get(key, only)
    if value != only:
        raise RequestError(
            422, f"field 'parameters.{key}' is {value!r}; only {only} is available ({why})", key
        )
    ignored = parameters.get("ignore_labels", [])
    if not isinstance(ignored, list) or not all(isinstance(label, str) for label in ignored):
        raise RequestError(
            422, "field 'parameters.ignore_labels' must be a list of strings", "ignore_labels"
        )
    if "stride" in parameters:
        raise RequestError(
            422,
            "field 'parameters.stride' cannot be set: long texts are read in the model's own "
            "overlapping windows",
            "stride",
        )


CHECKS = {"sentence": check_text_classification, "token": check_token_classification}
ANSWERS = {"sentence": text_classification, "token": token_classification}
PARAMETERS = {
    "sentence": ("top_k", "function_to_apply"),
    "token": ("aggregation_strategy", "ignore_labels", "stride"),
}


def task_endpoint(context: ServeContext, task: str, head: str):
    """The endpoint of one task with a head."""

    async def endpoint(request: Request) -> JSONResponse:
        body = check_fields(
            await read_json(request, context.settings.max_body_bytes), ("inputs",), ("parameters",)
        )
        texts = check_texts(body, "inputs", context.settings, single=True)
        parameters = check_parameters(body, PARAMETERS[head])
        CHECKS[head](parameters)
        predictions = await context.batcher.submit("predict", texts)
        answers = [ANSWERS[head](prediction[task], parameters) for prediction in predictions]
        single = isinstance(body["inputs"], str) and head == "token"
        return JSONResponse(answers[0] if single else answers)

    return answers_errors(endpoint)


def router(context: ServeContext) -> APIRouter:
    """The task routes of one served model."""
    routes = APIRouter()
    for task, spec in context.model.tasks.items():
        if spec.get("head") in PIPELINES:
            routes.add_api_route(
                f"/tasks/{task}", task_endpoint(context, task, spec["head"]), methods=["POST"]
            )

    async def sentence_similarity(request: Request) -> JSONResponse:
        body = check_fields(
            await read_json(request, context.settings.max_body_bytes), ("inputs",), ("parameters",)
        )
        check_parameters(body, ())
        inputs = body["inputs"]
        if not isinstance(inputs, dict):
            raise RequestError(
                422,
                'field \'inputs\' must be an object {"source_sentence": ..., "sentences": [...]}'
                f", got {json_type(inputs)}",
                "inputs",
            )
        inputs = check_fields(inputs, ("source_sentence", "sentences"))
        if not isinstance(inputs["source_sentence"], str):
            raise RequestError(
                422,
                f"field 'source_sentence' must be a string, got {json_type(inputs['source_sentence'])}",
                "inputs",
            )
        source = check_texts(inputs, "source_sentence", context.settings, single=True)
        sentences = check_texts(inputs, "sentences", context.settings)
        rows = await embed(context, source + sentences, normalize=False)
        if not sentences:
            return JSONResponse([])
        vectors = np.stack([row.vector for row in rows])
        return JSONResponse(cosine_matrix(vectors[:1], vectors[1:])[0].tolist())

    routes.add_api_route(SIMILARITY_ROUTE, answers_errors(sentence_similarity), methods=["POST"])
    return routes
