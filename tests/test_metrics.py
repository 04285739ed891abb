"""Entity metrics from summed counts equal seqeval's figures."""

from __future__ import annotations

import random

from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from mtst.tasks.metrics import EntityF1

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def random_sequences(rng: random.Random, n: int) -> list[list[int]]:
    return [[rng.randrange(len(TAGS)) for _ in range(rng.randint(1, 12))] for _ in range(n)]


def test_counts_reproduce_seqeval_micro_and_per_type_scores() -> None:
    rng = random.Random(7)
    gold = random_sequences(rng, 60)
    pred = [[rng.randrange(len(TAGS)) for _ in seq] for seq in gold]
    metric = EntityF1(TAGS)
    metric.update(pred[:25], gold[:25])  # two updates, as over two batches
    metric.update(pred[25:], gold[25:])
    scores = metric.compute()
    g = [[TAGS[i] for i in s] for s in gold]
    p = [[TAGS[i] for i in s] for s in pred]
    assert abs(float(scores["f1"]) - f1_score(g, p)) < 1e-9
    assert abs(float(scores["precision"]) - precision_score(g, p)) < 1e-9
    assert abs(float(scores["recall"]) - recall_score(g, p)) < 1e-9
    report = classification_report(g, p, output_dict=True)
    for entity_type, row in metric.per_type().items():
        assert abs(row["f1"] - report[entity_type]["f1-score"]) < 1e-9
        assert row["support"] == report[entity_type]["support"]


def test_perfect_predictions_score_one_and_empty_gold_scores_zero() -> None:
    metric = EntityF1(TAGS)
    metric.update([[1, 2, 0, 3]], [[1, 2, 0, 3]])
    assert float(metric.compute()["f1"]) == 1.0
    metric.reset()
    metric.update([[0, 0]], [[0, 0]])
    assert float(metric.compute()["f1"]) == 0.0
