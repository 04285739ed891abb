"""Turn raw records into validated examples: field types, BIO well-formedness, label spaces.

Every problem is a one-line ``DataError`` naming file, line/record and field, because a
data mistake found mid-training wastes far more time than one found at start-up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mtst.data.labels import OUTSIDE, LabelSpace
from mtst.data.readers import RawRecord, SourceSpec, iter_source
from mtst.data.words import WORD_PATTERN, split_words
from mtst.errors import DataError

log = logging.getLogger(__name__)
_BIO_RE = re.compile(r"([BI])-(.+)")


@dataclass
class Example:
    """One validated example; ``tags is None`` / ``label is None`` mean no supervision for that task."""

    words: list[str]
    tags: list[str] | None
    label: str | None
    path: str
    where: str
    source: int = 0
    id: str | None = None
    text: str | None = None
    spans: list[tuple[int, int]] | None = None
    token_lines: list[int] | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    def tag_where(self, i: int) -> str:
        """Location of word ``i`` (its own line for CoNLL files)."""
        return f"line {self.token_lines[i]}" if self.token_lines else self.where

    def field_name(self, name: str, i: int | None = None) -> str:
        base = self.fields.get(name, name)
        return base if i is None or self.token_lines else f"{base}[{i}]"


@dataclass
class BioRepairs:
    """Counts I-X tags repaired to B-X, so one summary warning can be logged per split."""

    count: int = 0
    first: str | None = None

    def add(self, place: str) -> None:
        self.count += 1
        self.first = self.first or place

    def warn(self, split: str) -> None:
        if self.count:
            log.warning(
                "%s data: repaired %d I-X tag(s) that followed neither B-X nor I-X to B-X (first at %s);"
                " set strict_bio=true to reject them instead", split, self.count, self.first)


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
            raise DataError(rec.path, rec.where, f"{rec.fields['tokens']}: empty list (a record needs "
                            "at least one token)")
        for i, w in enumerate(words):
            if not w.strip():
                where = f"line {rec.token_lines[i]}" if rec.token_lines else rec.where
                raise DataError(rec.path, where, f"{rec.fields['tokens']}[{i}]: empty or blank token "
                                f"{w!r}; tokens must hold a visible character")
        return words, None, text
    if text is None:
        raise DataError(rec.path, rec.where, "record has neither tokens (a list of strings) nor text")
    split = split_words(text)
    if not split:
        raise DataError(rec.path, rec.where, f"{rec.fields.get('text', 'text')}: no words in {text!r}")
    return [w for w, _, _ in split], [(s, e) for _, s, e in split], text


def check_bio(ex: Example, strict: bool, repairs: BioRepairs) -> None:
    """Reject malformed tags; repair (or reject when strict) an I-X that does not continue X."""
    assert ex.tags is not None
    prev = OUTSIDE
    for i, tag in enumerate(ex.tags):
        if tag != OUTSIDE:
            m = _BIO_RE.fullmatch(tag)
            if m is None:
                raise DataError(ex.path, ex.tag_where(i), f"{ex.field_name('ner_tags', i)}: {tag!r} is "
                                "not a BIO tag (expected O, B-TYPE or I-TYPE; IOBES/IO schemes "
                                "must be converted to BIO)")
            if m.group(1) == "I" and prev not in (f"B-{m.group(2)}", tag):
                if strict:
                    raise DataError(ex.path, ex.tag_where(i), f"{ex.field_name('ner_tags', i)}: "
                                    f"{tag!r} follows {prev!r}; an I-X tag must follow B-X or I-X")
                tag = ex.tags[i] = f"B-{m.group(2)}"
                repairs.add(f"{ex.path}:{ex.tag_where(i)}")
        prev = tag


def validate_record(rec: RawRecord, source: int = 0, strict_bio: bool = False,
                    repairs: BioRepairs | None = None, require_supervision: bool = True) -> Example:
    """Check one raw record's fields and build an ``Example`` (label spaces are checked later)."""
    words, spans, text = _words(rec)
    label = _opt_str(rec, "label")
    if label is not None and not label.strip():
        raise DataError(rec.path, rec.where, f"{rec.fields.get('label', 'label')}: empty string; "
                        "use null (or omit it) for no topic label")
    tags = rec.data.get("ner_tags")
    if tags is not None:
        tags = list(_str_list(rec, "ner_tags", tags))
        if len(tags) != len(words):
            unit = "tokens" if spans is None else f"words of text (split by {WORD_PATTERN})"
            raise DataError(rec.path, rec.where, f"{rec.fields['ner_tags']}: {len(tags)} tags for "
                            f"{len(words)} {unit}; expected one tag per token")
    if require_supervision and tags is None and label is None:
        raise DataError(rec.path, rec.where, "record has no supervision: give ner_tags (one per token) "
                        "and/or label")
    ex = Example(words=words, tags=tags, label=label, path=rec.path, where=rec.where, source=source,
                 id=_opt_str(rec, "id", allow_int=True), text=text, spans=spans,
                 token_lines=rec.token_lines, fields=rec.fields)
    if tags is not None:
        check_bio(ex, strict_bio, repairs if repairs is not None else BioRepairs())
    return ex


def text_examples(texts: Sequence[str], origin: str = "<input>") -> list[Example]:
    """Unlabelled examples for prediction: words by ``split_words``, character offsets kept."""
    out = []
    for i, text in enumerate(texts):
        rec = RawRecord(origin, f"text {i}", {"text": text})
        words, spans, _ = _words(rec)
        out.append(Example(words, None, None, origin, rec.where, text=text, spans=spans))
    return out


def iter_split(specs: Sequence[SourceSpec], split: str, strict_bio: bool = False,
               require_supervision: bool = True) -> Iterator[Example]:
    """Read and validate every file of a split, streamed; source index = position in ``specs``."""
    if not specs:
        raise DataError(f"<{split} files>", None, f"no files listed for the {split} split")
    repairs = BioRepairs()
    for i, spec in enumerate(specs):
        for rec in iter_source(spec):
            yield validate_record(rec, i, strict_bio, repairs, require_supervision)
    repairs.warn(split)


def load_split(specs: Sequence[SourceSpec], split: str, strict_bio: bool = False,
               require_supervision: bool = True) -> list[Example]:
    return list(iter_split(specs, split, strict_bio, require_supervision))


def infer_label_space(examples: Iterable[Example], classes: Sequence[str] | None,
                      entity_types: Sequence[str] | None) -> LabelSpace:
    """Fill the null parts of the label space from (training) examples, sorted for stable ids."""
    seen_classes: set[str] = set()
    seen_types: set[str] = set()
    for ex in examples:
        if ex.label is not None:
            seen_classes.add(ex.label)
        for tag in ex.tags or ():
            if tag != OUTSIDE:
                seen_types.add(tag[2:])
    for name, given, seen in (("classes", classes, seen_classes), ("entity_types", entity_types, seen_types)):
        if given is None and not seen:
            log.warning("labels.%s is null but the training files hold no such labels; using the "
                        "default list", name)
    return LabelSpace.infer(seen_classes, seen_types, classes, entity_types)


def check_label_space(examples: Iterable[Example], space: LabelSpace, note: str = "") -> None:
    """Every class and tag must be in ``space``; the message lists the allowed ones."""
    suffix = f" ({note})" if note else ""
    for ex in examples:
        if ex.label is not None and ex.label not in space.class_to_id:
            raise DataError(ex.path, ex.where, f"{ex.field_name('label')}: {ex.label!r} is not a known "
                            f"class; allowed: {', '.join(space.classes)}{suffix}")
        for i, tag in enumerate(ex.tags or ()):
            if tag not in space.tag_to_id:
                raise DataError(ex.path, ex.tag_where(i), f"{ex.field_name('ner_tags', i)}: {tag!r} is "
                                f"not in the label space; allowed: {', '.join(space.tags)}{suffix}")
