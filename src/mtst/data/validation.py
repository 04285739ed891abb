"""Turn raw records into validated examples: field types, BIO well-formedness, label spaces.

Every problem is a one-line ``DataError`` naming file, line/record and field, because a
data mistake found mid-training wastes far more time than one found at start-up.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mtst.data.labels import OUTSIDE
from mtst.data.readers import RawRecord
from mtst.data.tasks import TaskData
from mtst.data.words import WORD_PATTERN, split_words
from mtst.errors import DataError

log = logging.getLogger(__name__)
_BIO_RE = re.compile(r"([BI])-(.+)")


@dataclass
class Example:
    """One validated example and the tasks it supervises: ``labels`` (class per ``label`` task),
    ``tags`` (BIO tag per word per ``tags`` task), ``scores`` (per ``pair`` task: the gold score,
    NaN for an anchor/positive pair). A pair keeps its sentences in ``text`` and ``text_b`` and
    has no words."""

    words: list[str]
    path: str
    where: str
    labels: dict[str, str] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    source: int = 0
    id: str | None = None
    text: str | None = None
    text_b: str | None = None
    spans: list[tuple[int, int]] | None = None
    token_lines: list[int] | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_pair(self) -> bool:
        return self.text_b is not None

    def supervises(self, task: str) -> bool:
        return task in self.labels or task in self.tags or task in self.scores

    def tag_where(self, i: int) -> str:
        """Location of word ``i`` (its own line for CoNLL files)."""
        return f"line {self.token_lines[i]}" if self.token_lines else self.where

    def field_name(self, name: str, i: int | None = None) -> str:
        base = self.fields.get(name, name)
        return base if i is None or self.token_lines else f"{base}[{i}]"


@dataclass
class Tally:
    """Counts of one kind of forgiven problem, so one summary warning is logged per split
    instead of one per record (``message`` takes ``count`` and ``first``)."""

    message: str
    count: int = 0
    first: str | None = None

    def add(self, place: str) -> None:
        self.count += 1
        self.first = self.first or place

    def warn(self, split: str) -> None:
        if self.count:
            log.warning("%s data: %s", split, self.message.format(count=self.count, first=self.first))


def bio_repairs() -> Tally:
    """I-X tags repaired to B-X."""
    return Tally("repaired {count} I-X tag(s) that followed neither B-X nor I-X to B-X (first at "
                 "{first}); set strict_bio=true to reject them instead")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _str_list(rec: RawRecord, name: str, value: Any) -> list[str]:
    fname = rec.fields.get(name, name)
    if not isinstance(value, list):
        raise DataError(rec.path, rec.where, f"{fname}: expected a list of strings, got {_type_name(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise DataError(rec.path, rec.where,
                            f"{fname}[{i}]: expected a string, got {_type_name(item)} {item!r}")
    return value


def _opt_str(rec: RawRecord, name: str, allow_int: bool = False) -> str | None:
    value = rec.data.get(name)
    if value is None:
        return None
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise DataError(rec.path, rec.where, f"{rec.fields.get(name, name)}: expected a string or "
                        f"null, got {_type_name(value)} {value!r}")
    return value


def _words(rec: RawRecord) -> tuple[list[str], list[tuple[int, int]] | None, str | None]:
    text = _opt_str(rec, "text")
    tokens = rec.data.get("tokens")
    if tokens is not None:
        words = _str_list(rec, "tokens", tokens)
        if not words:
            raise DataError(rec.path, rec.where, f"{rec.fields.get('tokens', 'tokens')}: empty list (a record needs "
                            "at least one token)")
        for i, w in enumerate(words):
            if not w.strip():
                where = f"line {rec.token_lines[i]}" if rec.token_lines else rec.where
                raise DataError(rec.path, where, f"{rec.fields.get('tokens', 'tokens')}[{i}]: empty or blank token "
                                f"{w!r}; tokens must hold a visible character")
        return words, None, text
    if text is None:
        raise DataError(rec.path, rec.where, "record has neither tokens (a list of strings) nor text")
    split = split_words(text)
    if not split:
        raise DataError(rec.path, rec.where, f"{rec.fields.get('text', 'text')}: no words in {text!r}")
    return [w for w, _, _ in split], [(s, e) for _, s, e in split], text


def check_bio(ex: Example, task: str, name: str, strict: bool, repairs: Tally) -> None:
    """Reject malformed tags; repair (or reject when strict) an I-X that does not continue X.
    ``name`` is the record field holding ``task``'s tags."""
    tags = ex.tags[task]
    prev = OUTSIDE
    for i, tag in enumerate(tags):
        if tag != OUTSIDE:
            m = _BIO_RE.fullmatch(tag)
            if m is None:
                raise DataError(ex.path, ex.tag_where(i), f"{ex.field_name(name, i)}: {tag!r} is "
                                "not a BIO tag (expected O, B-TYPE or I-TYPE; IOBES/IO schemes "
                                "must be converted to BIO)")
            if m.group(1) == "I" and prev not in (f"B-{m.group(2)}", tag):
                if strict:
                    raise DataError(ex.path, ex.tag_where(i), f"{ex.field_name(name, i)}: "
                                    f"{tag!r} follows {prev!r}; an I-X tag must follow B-X or I-X")
                tag = tags[i] = f"B-{m.group(2)}"
                repairs.add(f"{ex.path}:{ex.tag_where(i)}")
        prev = tag


def _label(rec: RawRecord, name: str) -> str | None:
    label = _opt_str(rec, name)
    if label is not None and not label.strip():
        raise DataError(rec.path, rec.where, f"{rec.fields.get(name, name)}: empty string; use null "
                        "(or omit it) for no label")
    return label


def _tags(rec: RawRecord, name: str, words: list[str], spans: list | None) -> list[str] | None:
    tags = rec.data.get(name)
    if tags is None:
        return None
    tags = list(_str_list(rec, name, tags))
    if len(tags) != len(words):
        unit = "tokens" if spans is None else f"words of text (split by {WORD_PATTERN})"
        raise DataError(rec.path, rec.where, f"{rec.fields.get(name, name)}: {len(tags)} tags for "
                        f"{len(words)} {unit}; expected one tag per token")
    return tags


def validate_record(rec: RawRecord, tasks: Sequence[TaskData], source: int = 0,
                    strict_bio: bool = False, repairs: Tally | None = None) -> Example:
    """Check one raw record's fields for the ``label``/``tags`` tasks that list its file and build
    an ``Example``; a task whose field is absent or null is not supervised by it (label spaces
    are checked later). Pair records go through ``validate_pair``."""
    words, spans, text = _words(rec)
    ex = Example(words=words, path=rec.path, where=rec.where, source=source,
                 id=_opt_str(rec, "id", allow_int=True), text=text, spans=spans,
                 token_lines=rec.token_lines, fields=rec.fields)
    for task in tasks:
        name = task.label_field
        if task.kind == "label":
            label = _label(rec, name)
            if label is not None:
                ex.labels[task.name] = label
        elif task.kind == "tags":
            tags = _tags(rec, name, words, spans)
            if tags is not None:
                ex.tags[task.name] = tags
                check_bio(ex, task.name, name, strict_bio, repairs if repairs is not None else bio_repairs())
    return ex


def text_examples(texts: Sequence[str], origin: str = "<input>") -> list[Example]:
    """Unlabelled examples for prediction: words by ``split_words``, character offsets kept."""
    out = []
    for i, text in enumerate(texts):
        rec = RawRecord(origin, f"text {i}", {"text": text})
        words, spans, _ = _words(rec)
        out.append(Example(words, origin, rec.where, text=text, spans=spans))
    return out


def _sentence(rec: RawRecord, name: str) -> str:
    value = rec.data.get(name)
    shown = rec.fields.get(name, name)
    if not isinstance(value, str):
        raise DataError(rec.path, rec.where, f"{shown}: expected a string, got {_type_name(value)}")
    if not value.strip():
        raise DataError(rec.path, rec.where, f"{shown}: empty sentence {value!r}")
    return value


def _score(rec: RawRecord, name: str) -> float:
    value = rec.data.get(name)
    shown = rec.fields.get(name, name)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise DataError(rec.path, rec.where, f"{shown}: {value!r} is not a number") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif value is None:
        raise DataError(rec.path, rec.where, f"{shown}: missing; a sentence1/sentence2 pair needs "
                        "a score (use anchor/positive for pairs without one)")
    else:
        raise DataError(rec.path, rec.where, f"{shown}: expected a number, got {_type_name(value)} "
                        f"{value!r}")
    if not math.isfinite(number):
        raise DataError(rec.path, rec.where, f"{shown}: {value!r} is not a finite number")
    return number


def validate_pair(rec: RawRecord, tasks: Sequence[TaskData], source: int = 0) -> Example:
    """A sentence pair for the ``pair`` tasks listing its file: ``sentence1``/``sentence2`` with
    a score in each task's field, or ``anchor``/``positive`` (score NaN: no gold similarity)."""
    if "sentence1" in rec.data or "sentence2" in rec.data:
        first, second, scored = "sentence1", "sentence2", True
    elif "anchor" in rec.data or "positive" in rec.data:
        first, second, scored = "anchor", "positive", False
    else:
        raise DataError(rec.path, rec.where, "a pair record needs sentence1 and sentence2 (with a "
                        f"score) or anchor and positive; got fields {sorted(rec.data)}")
    text, text_b = _sentence(rec, first), _sentence(rec, second)
    scores = {t.name: _score(rec, t.label_field) if scored else math.nan for t in tasks}
    return Example(words=[], path=rec.path, where=rec.where, scores=scores, source=source,
                   id=_opt_str(rec, "id", allow_int=True), text=text, text_b=text_b,
                   fields=rec.fields)
