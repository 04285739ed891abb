"""The pair losses against their formulas written out by hand on tiny examples, the similarity
task's wiring of them, and training a similarity task raising its Spearman correlation."""

from __future__ import annotations

import json
import math
import random

import lightning as L
import pytest
import torch

from mtst.tasks import build_tasks
from mtst.tasks.losses import cosent_loss, cosine_mse_loss, ranking_loss
from tests.conftest import make_datamodule, make_module

# fp32 on any CPU: a few ulps of the loss' magnitude, well below what any change of formula moves
TOL = {"rel": 1e-5, "abs": 1e-6}


def cos(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v, strict=True)) / (math.hypot(*u) * math.hypot(*v))


def cosent_by_hand(cosines: list[float], gold: list[float], scale: float) -> float:
    """log(1 + sum over pairs with gold_i > gold_j of exp(scale * (cos_j - cos_i)))."""
    n = len(cosines)
    return math.log(
        1
        + sum(
            math.exp(scale * (cosines[j] - cosines[i]))
            for i in range(n)
            for j in range(n)
            if gold[i] > gold[j]
        )
    )


def ranking_by_hand(
    anchors: list[list[float]], positives: list[list[float]], scale: float
) -> float:
    """Mean over anchors of -log softmax_j(scale * cos(a_i, p_j)) at j = i."""
    total = 0.0
    for i, a in enumerate(anchors):
        logits = [scale * cos(a, p) for p in positives]
        total += math.log(sum(math.exp(x) for x in logits)) - logits[i]
    return total / len(anchors)


def mse_by_hand(cosines: list[float], gold: list[float]) -> float:
    return sum((c - s) ** 2 for c, s in zip(cosines, gold, strict=True)) / len(cosines)


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ---- the losses ---------------------------------------------------------------------------
COSINES = [0.1, 0.6, 0.3, -0.2]
GOLD = [2.0, 0.0, 1.0, 1.0]  # a tie (pairs 2 and 3): tied pairs are not compared


@pytest.mark.parametrize("scale", [1.0, 5.0, 20.0])
def test_cosent_is_its_formula(scale: float) -> None:
    expected = cosent_by_hand(COSINES, GOLD, scale)
    assert float(cosent_loss(t(COSINES), t(GOLD), scale)) == pytest.approx(expected, **TOL)


def test_cosent_reads_only_the_order_of_the_gold_scores() -> None:
    loss = float(cosent_loss(t(COSINES), t(GOLD), 5.0))
    rescaled = [10 * s - 3 for s in GOLD]
    assert float(cosent_loss(t(COSINES), t(rescaled), 5.0)) == pytest.approx(loss, **TOL)
    reversed_gold = [-s for s in GOLD]
    assert float(cosent_loss(t(COSINES), t(reversed_gold), 5.0)) == pytest.approx(
        cosent_by_hand(COSINES, reversed_gold, 5.0), **TOL
    )


def test_cosent_descends_toward_the_gold_order() -> None:
    """Cosines in the gold order cost less than the reverse, and the gradient raises the cosine
    of the pair with the highest gold score and lowers the lowest's."""
    ordered, inverted = [0.9, 0.1, 0.5], [0.1, 0.9, 0.5]
    gold = t([2.0, 0.0, 1.0])
    assert float(cosent_loss(t(ordered), gold, 5.0)) < float(cosent_loss(t(inverted), gold, 5.0))
    cosines = t(inverted).requires_grad_()
    cosent_loss(cosines, gold, 5.0).backward()
    assert float(cosines.grad[0]) < 0 < float(cosines.grad[1])


def test_cosent_with_no_ordered_pair_is_log_1() -> None:
    assert float(cosent_loss(t([0.3, -0.5]), t([1.0, 1.0]), 20.0)) == pytest.approx(0.0, abs=1e-7)


ANCHORS = [[1.0, 0.0, 0.5], [0.2, 1.0, -0.3], [-0.4, 0.3, 1.0]]
POSITIVES = [[0.8, 0.3, 0.1], [0.5, 0.6, 0.0], [-1.0, 0.2, 0.4]]


@pytest.mark.parametrize("scale", [1.0, 5.0, 20.0])
def test_the_ranking_loss_is_its_formula(scale: float) -> None:
    expected = ranking_by_hand(ANCHORS, POSITIVES, scale)
    # unnormalised inputs: the loss compares cosines, whatever the vectors' lengths
    anchors, positives = 3.0 * t(ANCHORS), 0.5 * t(POSITIVES)
    assert float(ranking_loss(anchors, positives, scale)) == pytest.approx(expected, **TOL)


def test_the_ranking_loss_prefers_each_anchors_own_positive() -> None:
    swapped = [POSITIVES[1], POSITIVES[0], POSITIVES[2]]
    assert float(ranking_loss(t(ANCHORS), t(POSITIVES), 5.0)) < float(
        ranking_loss(t(ANCHORS), t(swapped), 5.0)
    )


def test_cosine_mse_is_its_formula() -> None:
    gold = [1.0, 0.0, 0.25, 0.5]
    expected = mse_by_hand(COSINES, gold)
    assert float(cosine_mse_loss(t(COSINES), t(gold))) == pytest.approx(expected, **TOL)
    # float64 gold scores (what the collated batch holds) are compared in the cosines' dtype
    assert float(cosine_mse_loss(t(COSINES), torch.tensor(gold, dtype=torch.float64))) == (
        pytest.approx(expected, **TOL)
    )


# ---- the task's wiring ----------------------------------------------------------------------
FIRST = [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5], [0.3, -0.7]]
SECOND = [[0.9, 0.3], [1.0, 0.0], [-0.5, 1.0], [0.7, 1.0], [-1.0, 0.0], [0.4, 0.2]]
SCORES = [4.0, 1.0, 2.0, float("nan"), float("nan"), float("nan")]  # 3 scored, 3 anchor/positive


def pair_batch() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    rows = torch.arange(len(FIRST))
    batch = {
        "pair_rows": rows,
        "sts.has": torch.ones(len(FIRST), dtype=torch.bool),
        "sts.scores": torch.tensor(SCORES, dtype=torch.float64),
    }
    return batch, {"embeddings": t(FIRST), "embeddings_b": t(SECOND)}


@pytest.mark.parametrize("loss", ["cosent", "cosine_mse"])
def test_the_similarity_task_adds_the_scored_and_the_ranking_loss(loss: str) -> None:
    scale, max_score = 7.0, 4.0
    task = build_tasks(
        {
            "sts": {
                "type": "sentence_similarity",
                "loss": loss,
                "scale": scale,
                "max_score": max_score,
            }
        }
    )["sts"]
    cosines = [cos(a, b) for a, b in zip(FIRST[:3], SECOND[:3], strict=True)]
    scored = (
        cosent_by_hand(cosines, SCORES[:3], scale)
        if loss == "cosent"
        else mse_by_hand(cosines, [s / max_score for s in SCORES[:3]])
    )
    expected = scored + ranking_by_hand(FIRST[3:], SECOND[3:], scale)
    assert float(task.loss(*pair_batch())) == pytest.approx(expected, **TOL)


# ---- training raises Spearman -----------------------------------------------------------------
GROUPS = [
    ["ferry", "island", "beach", "harbour", "sail", "coast"],
    ["laptop", "phone", "server", "chip", "code", "screen"],
]
FILLER = ["the", "a", "very", "old", "new", "big", "small", "red"]


def group_pairs(n: int, seed: int = 0) -> list[dict]:
    """Half the pairs from one word group (score 1), half from the two (score 0). Surface words
    mislead: a score-0 pair shares its filler words, a score-1 pair has none in common, so an
    untrained encoder ranks them about backwards and training has much to raise."""
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        same = k % 2 == 0
        g1 = rng.randrange(2)
        g2 = g1 if same else 1 - g1
        filler_a = rng.sample(FILLER, 2)
        filler_b = rng.sample([w for w in FILLER if w not in filler_a], 2) if same else filler_a
        rows.append(
            {
                "sentence1": " ".join(rng.sample(GROUPS[g1], 2) + filler_a),
                "sentence2": " ".join(rng.sample(GROUPS[g2], 2) + filler_b),
                "score": 1.0 if same else 0.0,
            }
        )
    return rows


def spearman(module, dm, root) -> float:
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=root,
    )
    trainer.validate(module, datamodule=dm, verbose=False)
    return float(trainer.callback_metrics["val/sts/spearman"])


@pytest.mark.parametrize("loss", ["cosent", "cosine_mse", "ranking"])
def test_training_a_similarity_task_raises_its_spearman(tmp_path, loss: str) -> None:
    rows = group_pairs(32)
    scored = tmp_path / "scored.jsonl"
    scored.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    train = scored
    if loss == "ranking":  # anchor/positive pairs: the score-1 pairs without their score
        train = tmp_path / "anchors.jsonl"
        train.write_text(
            "".join(
                json.dumps({"anchor": r["sentence1"], "positive": r["sentence2"]}) + "\n"
                for r in rows
                if r["score"] == 1.0
            ),
            "utf-8",
        )
    tasks = {
        "sts": {
            "type": "sentence_similarity",
            "train_files": [str(train)],
            "val_files": [str(scored)],
            **({} if loss == "ranking" else {"loss": loss}),
        }
    }
    dm = make_datamodule(tasks, batch_size=16)
    module = make_module(
        dm,
        tasks=tasks,
        dropout=0.0,
        optimizer={"lr_backbone": 1e-3, "lr_head": 1e-3, "warmup_ratio": 0.0},
    )
    before = spearman(module, dm, tmp_path)
    L.Trainer(
        accelerator="cpu",
        max_steps=30,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    ).fit(module, datamodule=dm)
    after = spearman(module, dm, tmp_path)
    # binary gold scores, half each: a perfect ranking gives Spearman sqrt(3)/2 = 0.866
    assert after > before + 0.3 and after > 0.6, (before, after)
