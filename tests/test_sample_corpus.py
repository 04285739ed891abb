"""The bundled sample corpus validates strictly and covers every class and entity type per split."""

from __future__ import annotations

from collections import Counter

import pytest

from mtst.data.labels import DEFAULT_CLASSES, DEFAULT_ENTITY_TYPES, LabelSpace
from mtst.data.sources import check_label_spaces, load_split
from mtst.tasks import build_tasks
from tests.conftest import sample_tasks

TASKS = {name: task.data for name, task in build_tasks(sample_tasks()).items()}
SPACES = {"topic": LabelSpace("label", DEFAULT_CLASSES), "ner": LabelSpace("tags", DEFAULT_ENTITY_TYPES)}


class Record:
    """One sample record as the checks below read it: its words, class and tags."""

    def __init__(self, example) -> None:
        self.words, self.label, self.tags = example.words, example.labels.get("topic"), example.tags.get("ner")


def split(name: str) -> list[Record]:
    # strict_bio: an I-X that does not continue X is an error here, not repaired
    examples = load_split(TASKS, name, strict_bio=True)
    check_label_spaces(examples, TASKS, SPACES, {})
    return [Record(ex) for ex in examples]


@pytest.mark.parametrize("name", ["train", "val", "test"])
def test_every_split_validates_and_covers_all_classes_and_types(name: str) -> None:
    examples = split(name)
    assert {ex.label for ex in examples} == set(DEFAULT_CLASSES)
    types = {tag[2:] for ex in examples for tag in ex.tags if tag != "O"}
    assert types == set(DEFAULT_ENTITY_TYPES)
    assert all(ex.tags is not None and ex.label is not None for ex in examples)


def test_corpus_size_balance_and_variety() -> None:
    examples = [ex for name in ("train", "val", "test") for ex in split(name)]
    assert len(examples) >= 480
    classes = Counter(ex.label for ex in examples)
    assert min(classes.values()) >= 120, classes
    entities = Counter(tag[2:] for ex in examples for tag in ex.tags if tag.startswith("B-"))
    assert min(entities.values()) >= 150, entities
    multi_word = sum(
        1 for ex in examples for i, tag in enumerate(ex.tags)
        if tag.startswith("B-") and i + 1 < len(ex.tags) and ex.tags[i + 1].startswith("I-")
    )
    assert multi_word >= 100
    lengths = [len(ex.words) for ex in examples]
    assert min(lengths) >= 3 and max(lengths) <= 40
    texts = [" ".join(ex.words) for ex in examples]
    assert len(set(texts)) == len(texts), "duplicate sentences"


def test_split_proportions_are_70_15_15() -> None:
    sizes = {name: len(split(name)) for name in ("train", "val", "test")}
    total = sum(sizes.values())
    assert abs(sizes["train"] / total - 0.70) < 0.02
    assert abs(sizes["val"] / total - 0.15) < 0.02
    assert abs(sizes["test"] / total - 0.15) < 0.02
