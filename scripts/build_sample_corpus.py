"""Build data/sample/{train,val,test}.jsonl and data/showcase.txt from the annotated sources.

The sources (data/sample/source/<class>.txt) hold one hand-written sentence per line with inline
entity markup `[Ada Lovelace](PERSON)`; see data/README.md. This script splits words with the same
rule mtst uses for raw text, turns spans into BIO tags, splits each class 70/15/15 with a fixed seed,
and writes the corpus statistics into data/README.md.

    python scripts/build_sample_corpus.py
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

from mtst.data.words import split_words

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "data" / "sample" / "source"
CLASSES = ["travel", "technology", "politics", "other"]
TYPES = ["PERSON", "LOC", "ORG", "DATE"]
MARKUP = re.compile(r"\[([^\[\]]+)\]\((" + "|".join(TYPES) + r")\)")
SPLITS = {"train": 0.70, "val": 0.15, "test": 0.15}
SEED = 13


def parse_line(line: str, where: str) -> tuple[str, list[str], list[str]]:
    """Markup line -> (plain text, words, BIO tags)."""
    text, spans, last = "", [], 0
    for match in MARKUP.finditer(line):
        text += line[last : match.start()]
        spans.append((len(text), len(text) + len(match.group(1)), match.group(2)))
        text += match.group(1)
        last = match.end()
    text += line[last:]
    if "[" in text or "]" in text:
        sys.exit(f"{where}: unbalanced or unknown entity markup")
    words = split_words(text)
    tags = ["O"] * len(words)
    for start, end, etype in spans:
        inside = [i for i, (_, ws, we) in enumerate(words) if ws >= start and we <= end]
        if not inside or words[inside[0]][1] != start or words[inside[-1]][2] != end:
            sys.exit(f"{where}: entity '{text[start:end]}' does not start and end on word boundaries")
        tags[inside[0]] = f"B-{etype}"
        for i in inside[1:]:
            tags[i] = f"I-{etype}"
    return text, [w for w, _, _ in words], tags


def read_class(label: str) -> list[dict]:
    path = SOURCE / f"{label}.txt"
    records = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        text, tokens, tags = parse_line(line, f"{path}:{number}")
        records.append({"text": text, "tokens": tokens, "ner_tags": tags, "label": label})
    return records


def split_records(records: list[dict]) -> dict[str, list[dict]]:
    shuffled = records[:]
    random.Random(SEED).shuffle(shuffled)
    n_train = round(len(shuffled) * SPLITS["train"])
    n_val = round(len(shuffled) * SPLITS["val"])
    return {
        "train": shuffled[:n_train],
        "val": shuffled[n_train : n_train + n_val],
        "test": shuffled[n_train + n_val :],
    }


def statistics(splits: dict[str, list[dict]]) -> str:
    rows = ["| split | sentences | " + " | ".join(CLASSES) + " | " + " | ".join(TYPES) + " | words (min-max) |"]
    rows.append("|" + "---|" * (3 + len(CLASSES) + len(TYPES)))
    for name, records in splits.items():
        classes = Counter(r["label"] for r in records)
        entities = Counter(t[2:] for r in records for t in r["ner_tags"] if t.startswith("B-"))
        lengths = [len(r["tokens"]) for r in records]
        rows.append(
            f"| {name} | {len(records)} | "
            + " | ".join(str(classes[c]) for c in CLASSES)
            + " | "
            + " | ".join(str(entities[t]) for t in TYPES)
            + f" | {min(lengths)}-{max(lengths)} |"
        )
    return "\n".join(rows)


def main() -> None:
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for label in CLASSES:
        for name, records in split_records(read_class(label)).items():
            splits[name].extend(records)
    for name, records in splits.items():
        random.Random(SEED).shuffle(records)
        with open(ROOT / "data" / "sample" / f"{name}.jsonl", "w", encoding="utf-8") as out:
            for index, record in enumerate(records):
                record = {"id": f"{name}-{index:04d}", **record}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    table = statistics(splits | {"all": [r for rs in splits.values() for r in rs]})
    readme = ROOT / "data" / "README.md"
    start, end = "<!-- stats -->", "<!-- /stats -->"
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    if start in text:
        head, _, rest = text.partition(start)
        tail = rest.partition(end)[2] if end in rest else rest
        readme.write_text(f"{head}{start}\n{table}\n{end}{tail}", encoding="utf-8")
    showcase = []
    for label in CLASSES:
        for line in (SOURCE / f"{label}.showcase.txt").read_text(encoding="utf-8").splitlines():
            if line.strip():
                showcase.append(f"{label}\t{line.strip()}")
    (ROOT / "data" / "showcase.txt").write_text("\n".join(showcase) + "\n", encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
