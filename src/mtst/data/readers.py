"""Read training files (JSON array, JSONL, CoNLL columns, CSV/TSV) into raw records.

Readers only check structure (encoding, syntax, columns, and in JSON a lone surrogate, which no
tokenizer takes); field meaning is checked in ``validation`` so every format gets the same rules
and the same one-line errors. Lines are decoded by ``textfiles``, JSON parsed by ``jsontext``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtst.data.jsontext import JSONLimitError, find_lone_surrogate, may_hold_surrogate, parse_json
from mtst.data.textfiles import iter_lines, read_text
from mtst.errors import DataError

FORMATS = ("json", "jsonl", "conll", "csv", "tsv")
EXTENSIONS = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".conll": "conll",
    ".txt": "conll",
    ".iob": "conll",
    ".bio": "conll",
    ".csv": "csv",
    ".tsv": "tsv",
}


@dataclass(frozen=True)
class SourceSpec:
    """One file of a split and how to read it (a plain path or a dict in the config)."""

    path: str
    format: str
    text_column: str | int = "text"
    text_pair_column: str | int | None = None
    label_column: str | int | None = "label"
    label_map: dict[str, str] | None = None
    delimiter: str | None = None
    header: bool = True
    quoting: bool = True
    start: int = 0
    stop: int | None = None

    @classmethod
    def parse(cls, entry: Any) -> SourceSpec:
        """Accept ``"path"`` or ``{path, format?, text_column?, ...}``; infer format from the extension."""
        if isinstance(entry, (str, Path)):
            entry = {"path": str(entry)}
        if not isinstance(entry, Mapping) or "path" not in entry:
            raise DataError(
                "<config>", None, f"file entry {entry!r}: expected a path or a dict with 'path'"
            )
        opts = dict(entry)
        path = str(opts.pop("path"))
        unknown = sorted(set(opts) - set(cls.__dataclass_fields__))
        if unknown:
            raise DataError(
                path,
                None,
                f"unknown file option(s) {unknown}; allowed: "
                f"{sorted(set(cls.__dataclass_fields__) - {'path'})}",
            )
        fmt = opts.pop("format", None) or EXTENSIONS.get(Path(path).suffix.lower())
        if fmt not in FORMATS:
            raise DataError(
                path,
                None,
                f"format: cannot tell the format (got {fmt!r}); set format to "
                f"one of {', '.join(FORMATS)}",
            )
        if opts.get("label_map") is not None:
            opts["label_map"] = {str(k): str(v) for k, v in dict(opts["label_map"]).items()}
        for key in ("header", "quoting"):
            if key in opts and not isinstance(opts[key], bool):
                raise DataError(path, None, f"{key}: expected true or false, got {opts[key]!r}")
        for key in ("start", "stop"):
            value = opts.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise DataError(path, None, f"{key}: expected a record count >= 0, got {value!r}")
        if not opts.get("header", True):  # "1" from an env var or CLI override means column 1
            for key in ("text_column", "text_pair_column", "label_column"):
                if isinstance(opts.get(key), str) and opts[key].isdigit():
                    opts[key] = int(opts[key])
        return cls(path=path, format=fmt, **opts)


@dataclass
class RawRecord:
    """A record as read: ``data`` uses the JSON field names whatever the file format (a CoNLL
    tag column or a CSV label column is stored under the reading task's field); ``fields`` names
    a field as the file shows it (``tag (last column)``), for error messages."""

    path: str
    where: str
    data: dict[str, Any]
    fields: Mapping[str, str] = field(default_factory=dict)
    token_lines: list[int] | None = None


def _json_error(path: str, e: json.JSONDecodeError, line: int | None = None) -> DataError:
    return DataError(path, f"line {line or e.lineno}", f"invalid JSON: {e.msg} (column {e.colno})")


def read_json(path: str) -> Iterator[RawRecord]:
    """A JSON array is parsed whole (use JSONL for files that should stream)."""
    text = read_text(path)
    try:
        data = parse_json(text)
    except json.JSONDecodeError as e:
        raise _json_error(path, e) from None
    except JSONLimitError as e:
        raise DataError(path, None, f"invalid JSON: {e}") from None
    if not isinstance(data, list):
        raise DataError(
            path,
            None,
            f"expected a JSON array of records, got {type(data).__name__}"
            " (use a .jsonl file for one record per line)",
        )
    escaped = may_hold_surrogate(text)
    for i, obj in enumerate(data):
        yield _as_record(path, f"record {i}", obj, escaped)


def read_jsonl(path: str) -> Iterator[RawRecord]:
    for n, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            obj = parse_json(line)
        except json.JSONDecodeError as e:
            raise _json_error(path, e, n) from None
        except JSONLimitError as e:
            raise DataError(path, f"line {n}", f"invalid JSON: {e}") from None
        yield _as_record(path, f"line {n}", obj, may_hold_surrogate(line))


def _as_record(path: str, where: str, obj: Any, escaped: bool) -> RawRecord:
    """`escaped`: the JSON text holds a \\u escape, so a string may hold a lone surrogate."""
    if not isinstance(obj, dict):
        raise DataError(
            path,
            where,
            f'expected a record object {{"tokens": ..., "label": ...}}, got {type(obj).__name__}',
        )
    problem = find_lone_surrogate(obj) if escaped else None
    if problem:
        raise DataError(path, where, problem)
    return RawRecord(path, where, obj)


def read_conll(path: str, label_key: str = "ner_tags") -> Iterator[RawRecord]:
    """Token in the first column, BIO tag in the last (stored under ``label_key``); blank lines
    end sentences."""
    fields = {"tokens": "token (first column)", label_key: "tag (last column)"}
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    for n, line in iter_lines(path):
        cols = line.split("\t") if "\t" in line else line.split()
        if "\t" in line or "\ufeff" in line:
            cols = [c for c in (c.strip().strip("\ufeff") for c in cols) if c]
        if cols and cols[0] != "-DOCSTART-":
            if len(cols) < 2:
                raise DataError(
                    path,
                    f"line {n}",
                    "expected a token and a tag separated by a tab "
                    f"or spaces, got {len(cols)} column",
                )
            tokens.append(cols[0])
            tags.append(cols[-1])
            lines.append(n)
        elif tokens:  # a blank line or a document marker ends the sentence
            yield RawRecord(
                path, f"line {lines[0]}", {"tokens": tokens, label_key: tags}, fields, lines
            )
            tokens, tags, lines = [], [], []
    if tokens:
        yield RawRecord(
            path, f"line {lines[0]}", {"tokens": tokens, label_key: tags}, fields, lines
        )


def _column(spec: SourceSpec, header: list[str] | None, col: str | int, what: str) -> int:
    if isinstance(col, int) and not isinstance(col, bool):
        return col
    if header is None:
        raise DataError(
            spec.path,
            None,
            f"{what} {col!r}: a column name needs header: true; use a 0-based column index",
        )
    if col not in header:
        raise DataError(spec.path, "line 1", f"{what} {col!r}: no such column; header has {header}")
    return header.index(col)


def read_csv(spec: SourceSpec, label_key: str = "label", pair: bool = False) -> Iterator[RawRecord]:
    """Rows of a CSV/TSV file. Sentence rows: ``text_column`` (split into words later) and
    ``label_column`` (mapped by ``label_map``, stored under ``label_key``). Pair rows (``pair``):
    ``text_column`` and ``text_pair_column`` as ``sentence1``/``sentence2`` and ``label_column``
    as the score, or (``label_column`` null) as ``anchor``/``positive``. Columns past the ones
    read are ignored."""
    delimiter = spec.delimiter or ("\t" if spec.format == "tsv" else ",")
    quoting = csv.QUOTE_MINIMAL if spec.quoting else csv.QUOTE_NONE
    reader = csv.reader(
        (line for _, line in iter_lines(spec.path, keep_ends=True)),
        delimiter=delimiter,
        quoting=quoting,
    )
    header = [h.strip() for h in next(reader)] if spec.header else None
    scored = spec.label_column is not None
    first, second = ("sentence1", "sentence2") if scored else ("anchor", "positive")
    columns = {first if pair else "text": _column(spec, header, spec.text_column, "text_column")}
    if pair:
        if spec.text_pair_column is None:
            raise DataError(
                spec.path,
                None,
                "text_pair_column: a pair task needs the column of the second sentence",
            )
        columns[second] = _column(spec, header, spec.text_pair_column, "text_pair_column")
    if scored:
        columns[label_key] = _column(spec, header, spec.label_column, "label_column")
    option = {second: spec.text_pair_column, label_key: spec.label_column}
    fields = {key: f"column {option.get(key, spec.text_column)!r}" for key in columns}
    need = max(columns.values())
    prev = reader.line_num
    for row in reader:
        where, prev = f"line {prev + 1}", reader.line_num
        if not any(c.strip() for c in row):
            continue
        if len(row) <= need:
            raise DataError(
                spec.path,
                where,
                f"expected at least {need + 1} columns (delimiter {delimiter!r}), got {len(row)}",
            )
        data: dict[str, Any] = {key: row[i] for key, i in columns.items()}
        if label_key in data:
            value = data[label_key].strip()
            if spec.label_map is not None and value:
                if value not in spec.label_map:
                    raise DataError(
                        spec.path,
                        where,
                        f"{fields[label_key]}: {value!r} is not in "
                        f"label_map (keys: {', '.join(spec.label_map)})",
                    )
                value = spec.label_map[value]
            data[label_key] = value or None
        yield RawRecord(spec.path, where, data, fields)


def iter_source(
    spec: SourceSpec, label_key: str = "label", pair: bool = False
) -> Iterator[RawRecord]:
    """Records of one file, streamed, after its ``start``/``stop`` slice; none at all is an error.

    ``label_key`` is the field a CoNLL tag column or a CSV label column is stored under (JSON
    records keep their own fields); ``pair`` reads CSV rows as sentence pairs."""
    if spec.format == "json":
        records = read_json(spec.path)
    elif spec.format == "jsonl":
        records = read_jsonl(spec.path)
    elif spec.format == "conll":
        records = read_conll(spec.path, label_key)
    else:
        records = read_csv(spec, label_key, pair)
    count = 0
    for count, record in enumerate(records, 1):
        if count > spec.start and (spec.stop is None or count <= spec.stop):
            yield record
        elif spec.stop is not None and count > spec.stop:
            break
    if count == 0:
        raise DataError(spec.path, None, "holds no examples")
    if count <= spec.start or (spec.stop is not None and spec.stop <= spec.start):
        raise DataError(
            spec.path, None, f"start/stop ({spec.start}:{spec.stop}) select no examples"
        )


def read_source(spec: SourceSpec, label_key: str = "label", pair: bool = False) -> list[RawRecord]:
    return list(iter_source(spec, label_key, pair))
