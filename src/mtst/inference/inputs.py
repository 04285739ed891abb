"""Texts for prediction and plots, read from .txt or .jsonl files and checked line by line.

`.txt`: one text per line (for plots, an optional `label<TAB>text` as in data/showcase.txt).
`.jsonl` / `.ndjson`: one JSON object per line with a string `text` field (and `label` for plots).
Every problem is one `DataError` line naming the file, the line and the field: also JSON the
parser refuses for its limits (nesting, digits) and a lone surrogate (`\\ud800`) anywhere in a
record, checked as for training files (`mtst.data.jsontext`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtst.data.jsontext import JSONLimitError, find_lone_surrogate, may_hold_surrogate, parse_json
from mtst.data.textfiles import check_file, utf8_error
from mtst.errors import DataError

JSONL_SUFFIXES = (".jsonl", ".ndjson")


def read_file(path: str | Path) -> str:
    """The whole file as text; a missing file or bytes that are not UTF-8 are the same one-line
    errors as for training data (the line and column of the first bad byte)."""
    path = check_file(str(path))
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(path, None, f"cannot read the file ({err.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise utf8_error(str(path)) from None


def split_lines(text: str) -> list[str]:
    """Lines split on newlines only (not on the other separators str.splitlines knows, which
    may sit inside a text); a final newline does not add an empty line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _records(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    records = []
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = parse_json(line)
        except json.JSONDecodeError as err:
            raise DataError(
                path, f"line {number}", f"not valid JSON ({err.msg}, column {err.colno})"
            ) from None
        except JSONLimitError as err:
            raise DataError(path, f"line {number}", f"not valid JSON ({err})") from None
        if not isinstance(record, dict):
            raise DataError(
                path, f"line {number}", f"expected a JSON object, got {type(record).__name__}"
            )
        problem = find_lone_surrogate(record) if may_hold_surrogate(line) else None
        if problem:  # the tokenizer would fail on it with a TypeError, and printing it too
            raise DataError(path, f"line {number}", problem)
        records.append((number, record))
    return records


def _text_field(path: Path, number: int, record: dict[str, Any], field: str) -> str:
    if field not in record:
        raise DataError(path, f"line {number}", f"field '{field}' is missing")
    value = record[field]
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        raise DataError(path, f"line {number}", f"field '{field}': expected a string, got {kind}")
    return value


def read_texts(path: str | Path, text_field: str = "text") -> list[str]:
    """Texts to predict: every line of a .txt file (empty lines too, so outputs line up with
    inputs), or the `text_field` of every object in a .jsonl file."""
    path = Path(path)
    content = read_file(path)
    if path.suffix.lower() in JSONL_SUFFIXES:
        return [_text_field(path, n, r, text_field) for n, r in _records(path, content)]
    return split_lines(content)


def read_labelled(
    path: str | Path, label_field: str | None = "label", text_field: str = "text"
) -> tuple[list[str], list[str] | None]:
    """Sentences and their labels for plots; labels is None when no sentence has one.

    Blank lines are skipped. In .txt files a line `label<TAB>text` carries a label.
    """
    path = Path(path)
    content = read_file(path)
    texts: list[str] = []
    labels: list[str | None] = []
    if path.suffix.lower() in JSONL_SUFFIXES:
        for number, record in _records(path, content):
            texts.append(_text_field(path, number, record, text_field))
            value = record.get(label_field) if label_field else None
            if isinstance(value, (dict, list)):
                raise DataError(path, f"line {number}", f"field '{label_field}': expected a string")
            labels.append(None if value is None else str(value))
    else:
        for line in split_lines(content):
            if not line.strip():
                continue
            label, tab, text = line.partition("\t")
            texts.append(text if tab else line)
            labels.append(label.strip() or None if tab and label_field else None)
    if not any(label is not None for label in labels):
        return texts, None
    return texts, [label if label is not None else "(none)" for label in labels]
