"""Prediction on raw text: exact entity offsets on tricky strings, BIO decoding, sliding windows.

The model is untrained; its NER head bias is forced so that one chosen tag wins everywhere,
which makes the expected entities known in advance.
"""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from mtst.data.words import split_words
from mtst.inference.model import MultiTaskModel
from mtst.inference.predict import word_spans
from mtst.model.encoder import SentenceEncoder
from mtst.tasks.token_classification import decode_entities
from tests.conftest import force_tag

TRICKY = [
    "Zoë  flew to   São Paulo 🙂!!",
    "O'Brien's state-of-the-art U.S.-based co. (Ltd.)",
    "\tleading and trailing spaces   ",
    "naïve café — Ελληνικά 東京 👩‍👩‍👧 rocks",
    "a,b;c:d...e",
]


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> MultiTaskModel:
    torch.manual_seed(0)
    encoder = SentenceEncoder.from_pretrained(
        str(tiny_model_dir), pooling="weighted_mean", max_length=24
    )
    tasks = {
        "topic": {
            "type": "sentence_classification",
            "head": "sentence",
            "dropout": 0.1,
            "labels": {"kind": "label", "names": ["travel", "other"]},
        },
        "ner": {
            "type": "token_classification",
            "head": "token",
            "dropout": 0.1,
            "labels": {"kind": "tags", "names": ["PER", "LOC"]},
        },
    }
    return MultiTaskModel(encoder, tasks).eval()


def test_one_key_per_task_with_a_head(model) -> None:
    (result,) = model.predict("Ada flew to Paris")
    assert set(result) == {"text", "topic", "ner"}


def test_every_word_is_an_entity_with_exact_offsets(model) -> None:
    force_tag(model, "B-LOC")
    results = model.predict(TRICKY)
    for text, result in zip(TRICKY, results, strict=True):
        assert result["text"] == text
        words = split_words(text)
        assert [(e["start"], e["end"]) for e in result["ner"]] == [(s, e) for _, s, e in words]
        for entity in result["ner"]:
            assert text[entity["start"] : entity["end"]] == entity["text"]
            assert entity["type"] == "LOC"
            assert entity["score"] == pytest.approx(1.0, abs=1e-3)


def test_inside_tags_join_words_across_spaces_and_punctuation(model) -> None:
    force_tag(model, "I-PER")  # stray I-X starts an entity, then continues it
    for text, result in zip(TRICKY, model.predict(TRICKY), strict=True):
        words = split_words(text)
        (entity,) = result["ner"]
        assert (entity["start"], entity["end"]) == (words[0][1], words[-1][2])
        assert entity["text"] == text[words[0][1] : words[-1][2]] == text.strip()


def test_empty_and_whitespace_texts_give_a_topic_and_no_entities(model) -> None:
    force_tag(model, "B-PER")
    results = model.predict(["", "   ", "\n\t "])
    for result in results:
        assert result["ner"] == []
        assert result["topic"]["label"] in ("travel", "other")
        assert sum(result["topic"]["scores"].values()) == pytest.approx(1.0, abs=1e-3)
        assert result["topic"]["score"] == max(result["topic"]["scores"].values())
    force_tag(model, "O")
    assert all(r["ner"] == [] for r in model.predict(TRICKY))


def test_long_text_uses_sliding_windows_and_loses_no_word(model, caplog) -> None:
    force_tag(model, "B-LOC")
    text = " ".join(f"word{i}" for i in range(120))  # far beyond max_length=24 sub-tokens
    with caplog.at_level(logging.WARNING, logger="mtst"):
        (result,) = model.predict([text])
    assert "overlapping windows" in caplog.text
    assert [e["text"] for e in result["ner"]] == text.split()


def test_batch_and_single_predictions_agree(model) -> None:
    mixed = copy.deepcopy(model)
    tag = mixed.label_spaces["ner"].to_id
    with torch.no_grad():  # O against B-PER, decided by each token's state: words of both kinds
        head = mixed.heads["ner"].out
        keep = torch.zeros_like(head.bias, dtype=torch.bool)
        keep[[tag["O"], tag["B-PER"]]] = True
        head.weight.mul_(100.0 * keep[:, None])
        head.bias.copy_(torch.where(keep, 0.0, -1e4))
    together = mixed.predict(TRICKY, batch_size=3)
    alone = [mixed.predict(t)[0] for t in TRICKY]
    n_words = sum(len(split_words(t)) for t in TRICKY)
    n_entities = sum(len(r["ner"]) for r in alone)  # one per B-PER word
    assert 0 < n_entities < n_words  # noqa: SIM300 (a range)
    for a, b in zip(together, alone, strict=True):
        assert a["topic"]["label"] == b["topic"]["label"]
        assert a["topic"]["score"] == pytest.approx(b["topic"]["score"], abs=2e-4)
        assert [(e["start"], e["end"], e["type"]) for e in a["ner"]] == [
            (e["start"], e["end"], e["type"]) for e in b["ner"]
        ]
        assert [e["score"] for e in a["ner"]] == pytest.approx(
            [e["score"] for e in b["ner"]], abs=2e-4
        )


def test_decode_entities_bio_rules() -> None:
    text = "Ada Lovelace met Bob in Paris London"
    spans = split_words(text)
    tags = ["B-PER", "I-PER", "O", "I-PER", "O", "B-LOC", "I-PER"]
    entities = decode_entities(text, spans, tags, [0.9, 0.7, 1.0, 0.5, 1.0, 0.8, 0.6])
    assert [(e["text"], e["type"], e["score"]) for e in entities] == [
        ("Ada Lovelace", "PER", 0.8),
        ("Bob", "PER", 0.5),
        ("Paris", "LOC", 0.8),
        ("London", "PER", 0.6),
    ]


def test_word_spans_cover_all_words_within_budget() -> None:
    counts = [3, 1, 4, 1, 5, 9, 2, 6, 0, 3, 5]
    spans = word_spans(counts, budget=10)
    covered = {w for s, e in spans for w in range(s, e)}
    assert covered == set(range(len(counts)))
    assert spans[0][0] == 0 and spans[-1][1] == len(counts)
    for s, e in spans:
        assert sum(counts[s:e]) <= 10 or e - s == 1
    assert all(b[0] > a[0] for a, b in zip(spans, spans[1:], strict=False))  # always progresses
    assert word_spans([2, 2], budget=10) == [(0, 2)]
    assert word_spans([30, 1], budget=10) == [(0, 1), (1, 2)]  # an over-long word alone


HOSTILE_LINES = [
    # (the bad JSONL line, what the one-line error says about it)
    (b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not valid JSON (nested too deeply)"),
    (b'{"text": "fine", "n": ' + b"7" * 5000 + b"}", "not valid JSON (a number of 5000 digits"),
    (b'{"text": "ab\\ud800cd"}', "text: character 3 is a lone surrogate (U+D800)"),
    (b'{"text": "ok", "label": "\\udfff"}', "label: character 1 is a lone surrogate (U+DFFF)"),
]


@pytest.mark.parametrize(
    ("line", "expected"), HOSTILE_LINES, ids=["deep", "digits", "text", "label"]
)
def test_hostile_predict_input_is_one_line_naming_file_and_line(
    tmp_path, capsys, line, expected
) -> None:
    """Before: a RecursionError, ValueError or (from the tokenizer) TypeError traceback, exit 1."""
    from mtst.cli.main import main
    from mtst.errors import DataError
    from mtst.inference.inputs import read_labelled

    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"text": "fine"}\n\n' + line + b"\n")
    assert main(["predict", "--untrained", "gpt_neo_tiny", "--input", str(source)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {source}:line 3: {expected}"), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    with pytest.raises(
        DataError, match=r"^.*:line 3: "
    ) as caught:  # plot-embeddings reads the same way
        read_labelled(source)
    assert expected in str(caught.value)


def test_an_escaped_surrogate_pair_is_one_character(tmp_path) -> None:
    from mtst.inference.inputs import read_texts

    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "smile \\ud83d\\ude00", "note": "caf\\u00e9"}\n', encoding="utf-8")
    assert read_texts(source) == ["smile 😀"]
