"""Every data problem is a one-line DataError naming the file, the line/record and the field."""

from __future__ import annotations

import logging

import pytest

from mtst.data.labels import DEFAULT_CLASSES, DEFAULT_ENTITY_TYPES, LabelSpace
from mtst.data.readers import SourceSpec, read_source
from mtst.data.sources import check_label_spaces, load_split
from mtst.errors import DataError
from tests.data.conftest import two_tasks

GOOD = {"tokens": ["Ann", "flew"], "ner_tags": ["B-PERSON", "O"], "label": "travel"}
SPACES = {
    "topic": LabelSpace("label", DEFAULT_CLASSES, "topic"),
    "ner": LabelSpace("tags", DEFAULT_ENTITY_TYPES, "ner"),
}


def load(path: str, strict_bio: bool = False, **opts) -> list:
    return load_split(two_tasks(train={"path": path, **opts}), "train", strict_bio)


def error_of(path: str, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        examples = load(path, **kwargs)
        check_label_spaces(examples, two_tasks(), SPACES)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(path)
    return msg


def jsonl_with_bad_second(write, bad: object) -> str:
    return write("d.jsonl", [GOOD, bad, GOOD])


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.jsonl")
    assert "file not found" in error_of(path)


@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_empty_file(write, content):
    assert "empty" in error_of(write("e.jsonl", content))


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("a.json", "[]"),
        ("c.conll", "-DOCSTART- -X- -X- O\n\n"),
    ],
)
def test_file_without_examples(write, name, content):
    assert "no examples" in error_of(write(name, content))


def test_split_without_files():
    with pytest.raises(DataError, match="no files listed for the train split"):
        load_split(two_tasks(), "train")


def test_invalid_jsonl_line(write):
    path = write("bad.jsonl", '{"tokens": ["a"], "label": "travel"}\n\n{"tokens": [\n')
    msg = error_of(path)
    assert ":line 3:" in msg and "invalid JSON" in msg


def test_invalid_json_array_names_line(write):
    path = write(
        "bad.json", '[\n {"label": "travel", "text": "a"},\n {"label": "travel" "text": "b"}\n]'
    )
    msg = error_of(path)
    assert ":line 3:" in msg and "invalid JSON" in msg


def test_json_top_level_not_array(write):
    assert "JSON array" in error_of(write("obj.json", {"tokens": ["a"]}))


def test_record_not_object_jsonl(write):
    msg = error_of(jsonl_with_bad_second(write, ["Ann", "flew"]))
    assert ":line 2:" in msg and "expected a record object" in msg and "list" in msg


def test_record_not_object_json_array_uses_index(write):
    msg = error_of(write("arr.json", [GOOD, GOOD, "text"]))
    assert ":record 2:" in msg and "str" in msg


@pytest.mark.parametrize(
    ("bad", "field", "expect"),
    [
        ({"tokens": "Ann flew", "label": "travel"}, "tokens", "list of strings"),
        ({"tokens": ["Ann", 3], "label": "travel"}, "tokens[1]", "expected a string"),
        ({"tokens": ["Ann"], "ner_tags": "O", "label": "travel"}, "ner_tags", "list of strings"),
        ({"tokens": ["Ann"], "ner_tags": [None]}, "ner_tags[0]", "expected a string"),
        ({"tokens": ["Ann"], "label": 3}, "label", "string or null"),
        ({"text": 5, "label": "travel"}, "text", "string or null"),
        ({"text": "Ann", "label": "travel", "id": [1]}, "id", "string or null"),
    ],
)
def test_wrong_field_types(write, bad, field, expect):
    msg = error_of(jsonl_with_bad_second(write, bad))
    assert ":line 2:" in msg and f" {field}:" in msg and expect in msg


def test_length_mismatch(write):
    msg = error_of(
        jsonl_with_bad_second(write, {"tokens": ["a", "b", "c"], "ner_tags": ["O", "O"]})
    )
    assert ":line 2:" in msg and "ner_tags" in msg and "2 tags for 3 tokens" in msg


def test_length_mismatch_against_text_words(write):
    bad = {"text": "Ann flew to Rome.", "ner_tags": ["B-PERSON", "O", "O", "B-LOC"]}
    msg = error_of(jsonl_with_bad_second(write, bad))
    assert "4 tags for 5 words of text" in msg


@pytest.mark.parametrize(
    "bad",
    [
        {"tokens": [], "label": "travel"},
        {"tokens": ["a", "  "], "label": "travel"},
        {"text": "   ", "label": "travel"},
    ],
)
def test_empty_tokens(write, bad):
    msg = error_of(jsonl_with_bad_second(write, bad))
    assert ":line 2:" in msg and ("tokens" in msg or "text" in msg)


def test_unknown_class_lists_allowed(write):
    msg = error_of(jsonl_with_bad_second(write, {"text": "a b", "label": "sport"}))
    assert ":line 2: label: 'sport' is not a class of task topic; allowed: " in msg
    assert all(c in msg for c in DEFAULT_CLASSES)


def test_unknown_entity_type_lists_allowed(write):
    msg = error_of(jsonl_with_bad_second(write, {"tokens": ["a", "b"], "ner_tags": ["O", "B-GPE"]}))
    assert ":line 2: ner_tags[1]: 'B-GPE' is not a tag of task ner" in msg
    assert all(t in msg for t in SPACES["ner"].ids)


@pytest.mark.parametrize("tag", ["PERSON", "X-PERSON", "S-LOC", "B-", "b-LOC"])
def test_malformed_bio(write, tag):
    msg = error_of(jsonl_with_bad_second(write, {"tokens": ["a", "b"], "ner_tags": ["O", tag]}))
    assert ":line 2:" in msg and "ner_tags[1]" in msg and "not a BIO tag" in msg


def test_dangling_inside_repaired_with_one_counted_warning(write, caplog):
    rows = [
        {"tokens": ["a", "b"], "ner_tags": ["O", "I-LOC"]},
        {"tokens": ["a", "b", "c"], "ner_tags": ["I-ORG", "I-ORG", "O"]},
        {"tokens": ["a", "b"], "ner_tags": ["B-LOC", "I-ORG"]},
        GOOD,
    ]
    path = write("d.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="mtst.data"):
        examples = load(path)
    assert [ex.tags["ner"] for ex in examples[:3]] == [
        ["O", "B-LOC"],
        ["B-ORG", "I-ORG", "O"],
        ["B-LOC", "B-ORG"],
    ]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "repaired 3" in warnings[0].getMessage() and "line 1" in warnings[0].getMessage()


def test_dangling_inside_rejected_when_strict(write):
    path = jsonl_with_bad_second(write, {"tokens": ["a", "b"], "ner_tags": ["B-LOC", "I-ORG"]})
    msg = error_of(path, strict_bio=True)
    assert ":line 2:" in msg and "ner_tags[1]" in msg and "'I-ORG' follows 'B-LOC'" in msg


@pytest.mark.parametrize(
    "bad",
    [
        {"tokens": ["a", "b"]},
        {"text": "just text"},
        {"tokens": ["a"], "ner_tags": None, "label": None},
    ],
)
def test_record_without_supervision_is_skipped_and_counted(write, caplog, bad):
    path = write("d.jsonl", [GOOD, bad, GOOD, bad, bad])
    with caplog.at_level(logging.WARNING, logger="mtst.data"):
        examples = load(path)
    assert [ex.where for ex in examples] == ["line 1", "line 3"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "skipped 3 record(s)" in warnings[0] and f"first at {path}:line 2" in warnings[0]


def test_file_without_any_supervised_record(write):
    msg = error_of(write("d.jsonl", [{"text": "a b"}, {"tokens": ["c"], "label": None}]))
    assert "no record supervises its task(s) topic, ner" in msg and "label, ner_tags" in msg


def test_record_without_words(write):
    msg = error_of(jsonl_with_bad_second(write, {"label": "travel"}))
    assert ":line 2:" in msg and "neither tokens" in msg


def test_non_utf8_names_line(write):
    good = b'{"text": "ok", "label": "travel"}\n'
    path = write("latin.jsonl", good * 2 + b'{"text": "caf\xe9", "label": "travel"}\n')
    msg = error_of(path)
    assert ":line 3:" in msg and "UTF-8" in msg and "0xe9" in msg


def test_conll_error_names_token_line(write):
    path = write("x.conll", "-DOCSTART- O\n\nAnn B-PERSON\nflew O\n\nRome B-LOC\nis O\nbig I-LOC\n")
    msg = error_of(path, strict_bio=True)
    assert ":line 8:" in msg and "tag (last column)" in msg
    msg = error_of(write("y.conll", "Ann B-PERSON\nRome B-GPE\n"))
    assert ":line 2:" in msg and "'B-GPE'" in msg


def test_conll_single_column(write):
    msg = error_of(write("z.conll", "Ann B-PERSON\nflew\n"))
    assert ":line 2:" in msg and "token and a tag" in msg


def test_csv_errors(write):
    path = write("t.csv", "label,text\ntravel,a trip\npolitics\n")
    msg = error_of(path)
    assert ":line 3:" in msg and "columns" in msg
    msg = error_of(write("u.csv", "label,text\ntravel,a trip\n"), text_column="body")
    assert "text_column 'body'" in msg and "['label', 'text']" in msg
    msg = error_of(
        write("v.csv", "1,a\n5,b\n"),
        header=False,
        text_column=1,
        label_column=0,
        label_map={"1": "travel"},
    )
    assert ":line 2:" in msg and "column 0" in msg and "'5'" in msg and "label_map" in msg
    msg = error_of(write("w.csv", "1,a\n"), header=False)
    assert "header" in msg and "text_column" in msg


def test_unknown_format(write):
    path = write("data.xml", "<a/>")
    with pytest.raises(DataError, match="format"):
        read_source(SourceSpec.parse(path))


def test_file_kinds_a_task_cannot_read(write):
    from mtst.data.sources import split_sources
    from mtst.data.tasks import TaskData

    conll = SourceSpec.parse(write("x.conll", "Ann B-PER\n"))
    with pytest.raises(DataError, match=r"x.conll: task topic \(kind label\) cannot read a CoNLL"):
        split_sources({"topic": TaskData("topic", "label", files={"train": (conll,)})}, "train")
    csv = SourceSpec.parse(write("x.csv", "text,label\na,b\n"))
    with pytest.raises(DataError, match=r"x.csv: task ner \(kind tags\) cannot read a CSV"):
        split_sources({"ner": TaskData("ner", "tags", files={"train": (csv,)})}, "train")
    both = {name: TaskData(name, "label", files={"val": (csv,)}) for name in ("a", "b")}
    with pytest.raises(DataError, match="x.csv: listed under tasks a, b: a CSV file has one label"):
        split_sources(both, "val")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "s.jsonl",
            '{"text": "ok", "label": "travel"}\n{"text": "ab\\ud800cd", "label": "travel"}\n',
            ":line 2: text: character 3 is a lone surrogate (U+D800)",
        ),
        (
            "s.jsonl",
            '{"tokens": ["Ann", "\\uDFFFx"], "ner_tags": ["B-PERSON", "O"]}\n',
            ":line 1: tokens[1]: character 1 is a lone surrogate (U+DFFF)",
        ),
        (
            "s.json",
            '[{"text": "ok", "label": "travel"}, {"text": "x", "label": "trav\\udbffel"}]',
            ":record 1: label: character 5 is a lone surrogate (U+DBFF)",
        ),
    ],
)
def test_a_lone_surrogate_names_line_and_field(write, name, content, expected):
    """Before: a TypeError traceback from the tokenizer, long after the file was read."""
    path = write(name, content)
    assert error_of(path).startswith(path + expected)


def test_an_escaped_surrogate_pair_is_read_as_one_character(write):
    path = write("pair.jsonl", '{"text": "smile \\ud83d\\ude00", "label": "travel"}\n')
    (example,) = load(path)
    assert example.text == "smile \U0001f600"


@pytest.mark.parametrize("name", ["n.jsonl", "n.json"])
def test_a_number_over_the_parsers_digit_limit_is_invalid_json(write, name):
    record = '{"text": "ok", "label": "travel", "n": ' + "9" * 5000 + "}"
    path = write(name, record + "\n" if name.endswith("jsonl") else f"[\n{record}\n]")
    where = ":line 1:" if name.endswith("jsonl") else ":"
    assert error_of(path).startswith(f"{path}{where} invalid JSON: a number of 5000 digits")
