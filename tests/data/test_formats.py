"""Readers: JSON, JSONL, CoNLL and CSV/TSV give the same examples; labels and word splitting."""

from __future__ import annotations

import pytest

from mtst.data.labels import LabelSpace
from mtst.data.sources import infer_label_spaces, load_split
from mtst.data.words import split_words
from mtst.errors import MtstError
from tests.data.conftest import two_tasks

ROWS = [
    {"tokens": ["Ann", "flew", "to", "Rome"], "ner_tags": ["B-PERSON", "O", "O", "B-LOC"],
     "label": "travel", "id": "a"},
    {"tokens": ["New", "phones"], "ner_tags": None, "label": "technology", "id": 7},
    {"tokens": ["Bob", "Smith"], "ner_tags": ["B-PERSON", "I-PERSON"]},
]


def load(*entries, strict_bio=False):
    return load_split(two_tasks(train=list(entries)), "train", strict_bio)


def tags(ex):
    return ex.tags.get("ner")


def label(ex):
    return ex.labels.get("topic")


def test_json_and_jsonl_agree(write):
    a = load(write("a.json", ROWS))
    b = load(write("b.jsonl", ROWS))
    for x, y, row in zip(a, b, ROWS, strict=True):
        assert x.words == y.words == row["tokens"]
        assert tags(x) == tags(y) == row.get("ner_tags")
        assert label(x) == label(y) == row.get("label")
    assert [x.id for x in a] == ["a", "7", None]
    assert [x.where for x in a] == ["record 0", "record 1", "record 2"]
    assert [x.where for x in b] == ["line 1", "line 2", "line 3"]


def test_text_only_record_keeps_offsets(write):
    text = "Dr. Amara Okafor visited São Paulo — twice!"
    ex = load(write("t.jsonl", [{"text": text, "label": "travel"}]))[0]
    assert tags(ex) is None and ex.words == [w for w, _, _ in split_words(text)]
    assert [text[s:e] for s, e in ex.spans] == ex.words


def test_text_with_tags_aligns_to_split_words(write):
    row = {"text": "Ann met O'Brien.", "ner_tags": ["B-PERSON", "O", "B-PERSON", "O"]}
    ex = load(write("t.jsonl", [row]))[0]
    assert ex.words == ["Ann", "met", "O'Brien", "."]


@pytest.mark.parametrize(("text", "words"), [
    ("state-of-the-art U.S. trip", ["state-of-the-art", "U.S", ".", "trip"]),
    ("it's 3.5km, $20!", ["it's", "3.5km", ",", "$", "20", "!"]),
    ("naïve 😀 café", ["naïve", "😀", "café"]),
    ("rock’n’roll -- ok", ["rock’n’roll", "-", "-", "ok"]),
])
def test_split_words_rule(text, words):
    got = split_words(text)
    assert [w for w, _, _ in got] == words
    assert all(text[s:e] == w for w, s, e in got)


def test_conll_quirks(write):
    content = (
        "\ufeff-DOCSTART- -X- -X- O\n\n"
        "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
        "\ufeff\n"                       # stray line holding only a BOM: a sentence break
        "Peter\tB-PER\nBlackburn\tI-PER\n"
        "  \t \n\n\n"
        "-DOCSTART- -X- O\n"
        "Rome B-LOC\n"
    )
    path = write("x.conll", content)
    exs = load(path)
    assert [e.words for e in exs] == [["EU", "rejects"], ["Peter", "Blackburn"], ["Rome"]]
    assert [tags(e) for e in exs] == [["B-ORG", "O"], ["B-PER", "I-PER"], ["B-LOC"]]
    assert all(label(e) is None for e in exs)
    assert exs[1].token_lines == [6, 7] and exs[2].where == "line 12"


def test_csv_with_header_and_names(write):
    path = write("t.csv", 'id,headline,topic\n1,"Trip to Rome, Italy",travel\n2,"New ""AI"" chip",technology\n')
    exs = load({"path": path, "text_column": "headline", "label_column": "topic"})
    assert [label(e) for e in exs] == ["travel", "technology"]
    assert exs[0].words == ["Trip", "to", "Rome", ",", "Italy"]
    assert exs[1].words[:3] == ["New", '"', "AI"]
    assert tags(exs[0]) is None


def test_csv_without_header_label_map_and_multiline(write):
    path = write("ag.csv", '"3","Stocks fall","x"\n"1","Talks\nresume","y"\n"3","Oil up","z"\n')
    exs = load({"path": path, "header": False, "text_column": 1, "label_column": 0,
                "label_map": {1: "World", "3": "Business"}})
    assert [label(e) for e in exs] == ["Business", "World", "Business"]
    assert [e.where for e in exs] == ["line 1", "line 2", "line 4"]


def test_tsv_and_explicit_delimiter(write):
    a = load({"path": write("t.tsv", "text\tlabel\nhello there\tother\n")})
    b = load({"path": write("t.txt", "text;label\nhello there;other\n"), "format": "csv",
              "delimiter": ";"})
    assert a[0].words == b[0].words == ["hello", "there"] and label(a[0]) == label(b[0]) == "other"


def test_mixed_formats_in_one_split_get_source_ids(write):
    # topic lists a.jsonl and c.csv, ner a.jsonl and b.conll: sources in order of first
    # appearance (task order, then file order), a.jsonl read once for both tasks
    exs = load(write("a.jsonl", ROWS), write("b.conll", "Ann B-PER\n\nBob B-PER\n"),
               {"path": write("c.csv", "text,label\nhi,other\n")})
    assert [e.source for e in exs] == [0, 0, 0, 1, 2, 2]
    assert [e.path.rsplit("/", 1)[1] for e in exs] == ["a.jsonl"] * 3 + ["c.csv"] + ["b.conll"] * 2
    assert [sorted((*e.labels, *e.tags)) for e in exs[:3]] == [["ner", "topic"], ["topic"], ["ner"]]


def test_start_stop_slice(write):
    path = write("a.jsonl", ROWS)
    exs = load({"path": path, "start": 1, "stop": 3})
    assert [e.words[0] for e in exs] == ["New", "Bob"]


def test_label_space_tags_and_roundtrip():
    space = LabelSpace("tags", ["X", "Y"], "ner")
    assert space.ids == ["O", "B-X", "I-X", "B-Y", "I-Y"] and space.to_id["I-Y"] == 4
    classes = LabelSpace("label", ["b", "a"], "topic")
    assert classes.to_id == {"b": 0, "a": 1}
    for s in (space, classes, LabelSpace("pair")):
        assert LabelSpace.from_dict(s.to_dict()) == s
    with pytest.raises(MtstError, match="tasks.topic.labels: duplicate"):
        LabelSpace("label", ["a", "a"], "topic")


def test_label_inference_sorted_and_partial(write):
    rows = [{"text": "x", "label": "zeta"}, {"tokens": ["a", "b"], "ner_tags": ["B-ORG", "B-LOC"]},
            {"text": "y", "label": "alpha"}, {"tokens": ["a"], "ner_tags": ["B-ORG"], "label": "zeta"}]
    path = write("a.jsonl", rows)
    tasks = two_tasks(train=path, classes=None, entity_types=None)
    exs = load(path)
    spaces = infer_label_spaces(exs, tasks)
    assert spaces["topic"].names == ["alpha", "zeta"] and spaces["ner"].names == ["LOC", "ORG"]
    assert infer_label_spaces(list(reversed(exs)), tasks) == spaces
    keep = infer_label_spaces(exs, two_tasks(train=path, classes=["zeta", "alpha", "beta"],
                                             entity_types=None))
    assert keep["topic"].names == ["zeta", "alpha", "beta"] and keep["ner"].names == ["LOC", "ORG"]


def test_text_examples_for_prediction():
    from mtst.data.validation import text_examples
    from mtst.errors import DataError

    texts = ["Ann flew to Rome.", "naïve 😀"]
    exs = text_examples(texts)
    assert [e.tags for e in exs] == [{}, {}] and exs[1].words == ["naïve", "😀"]
    assert [[t[s:e] for s, e in ex.spans] for t, ex in zip(texts, exs, strict=True)] == [
        ex.words for ex in exs]
    with pytest.raises(DataError, match=r"<input>:text 1: text: no words"):
        text_examples(["ok", "  "])


def test_csv_option_types(write):
    from mtst.data.readers import SourceSpec
    from mtst.errors import DataError

    path = write("ag.csv", '"2","Cup final"\n')
    exs = load({"path": path, "header": False, "text_column": "1", "label_column": "0"})
    assert exs[0].words == ["Cup", "final"] and label(exs[0]) == "2"
    with pytest.raises(DataError, match="header: expected true or false"):
        SourceSpec.parse({"path": path, "header": "no"})
    with pytest.raises(DataError, match="start: expected a record count >= 0"):
        SourceSpec.parse({"path": path, "start": "10"})
