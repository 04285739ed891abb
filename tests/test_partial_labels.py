"""Partial labels with three tasks (topic, ner and a third sentence task, `mood`): rows that carry
only some tasks, and batches where one task is absent entirely. An absent task's loss is exactly
0, adds nothing to the (finite) total and sends no gradient to its head or its log-variance; the
total is the weighted sum of the present tasks' losses, recomputed here by hand in float64."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import SAMPLE, make_datamodule, make_module, sample_tasks

TASKS = ("topic", "ner", "mood")
WEIGHTS = {"topic": 0.5, "ner": 2.0, "mood": 1.5}  # distinct: a task counted twice would show
FIELDS = {"topic": "label", "ner": "ner_tags", "mood": "mood"}


def three_tasks(val_file: Path) -> dict[str, dict[str, Any]]:
    """topic + ner + `mood` (its own field, two classes), all reading `val_file` only."""
    tasks = sample_tasks(train=[], val=[str(val_file)], test=[])
    tasks["mood"] = {"type": "sentence_classification", "train_files": [],
                     "val_files": [str(val_file)], "test_files": [], "field": "mood",
                     "labels": ["calm", "excited"]}
    for name, weight in WEIGHTS.items():
        tasks[name]["weight"] = weight
    return tasks


def records(carries: list[set[str]]) -> list[dict[str, Any]]:
    """Sample records, record i labelled for the tasks in carries[i] only (text and tokens kept)."""
    lines = (SAMPLE / "train.jsonl").read_text(encoding="utf-8").splitlines()[: len(carries)]
    out = []
    for i, (line, tasks) in enumerate(zip(lines, carries, strict=True)):
        record = {**json.loads(line), "mood": "calm" if i % 2 else "excited"}
        for task in set(TASKS) - tasks:
            del record[FIELDS[task]]
        out.append(record)
    return out


def one_batch(tmp_path: Path, name: str, carries: list[set[str]]):
    """(tasks, datamodule, the whole file as one validation batch) for records labelled per
    `carries` (and the task config it was read with)."""
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records(carries)), encoding="utf-8")
    tasks = three_tasks(path)
    dm = make_datamodule(tasks, stage="validate", batch_size=len(carries))
    (batch,) = list(dm.val_dataloader())
    order = batch["example_index"].tolist()
    for task in TASKS:  # the data layer kept the partial labels row by row
        expected = [task in carries[i] for i in order]
        assert batch[f"{task}.has"].tolist() == expected, task
    return tasks, dm, batch


# rows labelled for some tasks only: every task present in the batch, none on every row
MIXED = [set(TASKS), {"ner"}, {"mood"}, {"topic", "mood"}, {"ner", "topic"}, {"mood"},
         set(TASKS), {"ner"}, {"topic"}]


def absent(task: str) -> list[set[str]]:
    """Rows with every combination of the other tasks, none labelled for `task`."""
    others = [t for t in TASKS if t != task]
    return [set(others), {others[0]}, {others[1]}, set(others), {others[0]}, {others[1]}]


def float64_module(tasks: dict[str, dict[str, Any]], dm, weighting: str | None = None):
    """The module in float64 (GPT-Neo still takes attention scores in fp32), in eval mode: no
    dropout, so the outputs scored by the module and by hand are the same forward pass."""
    model = make_module(dm, tasks=tasks, weighting=weighting, dropout=0.0).double()
    model.eval()
    return model


def by_hand(batch, outputs) -> dict[str, torch.Tensor]:
    """Each present task's mean cross-entropy over its labelled rows (tokens), in float64."""
    losses = {}
    for task in TASKS:
        rows = batch[f"{task}.has"]
        if not rows.any():
            continue
        logits, labels = outputs[task][rows].double(), batch[f"{task}.labels"][rows]
        if logits.dim() == 3:  # token task: the labelled sub-tokens of its rows
            logits, labels = logits.reshape(-1, logits.size(-1)), labels.reshape(-1)
            keep = labels != -100
            logits, labels = logits[keep], labels[keep]
        assert len(labels) and bool((labels >= 0).all()), task
        losses[task] = F.cross_entropy(logits, labels)
    return losses


def head_grads(model) -> dict[str, torch.Tensor | None]:
    return {task: model.net.heads[task].out.weight.grad for task in TASKS}


def test_rows_with_some_tasks_give_the_weighted_sum_and_reach_every_head(tmp_path) -> None:
    tasks, dm, batch = one_batch(tmp_path, "mixed", MIXED)
    model = float64_module(tasks, dm)
    outputs = model.encode_batch(batch)
    total, per_task = model.compute_loss(batch, outputs)
    assert total.dtype == torch.float64 and bool(torch.isfinite(total))
    expected = by_hand(batch, outputs)
    assert per_task.keys() == set(TASKS)
    for task in TASKS:
        torch.testing.assert_close(per_task[task], expected[task], rtol=1e-12, atol=0)
    weighted = sum(WEIGHTS[t] * expected[t] for t in TASKS)
    torch.testing.assert_close(total, weighted, rtol=1e-12, atol=0)
    total.backward()
    for task, grad in head_grads(model).items():
        assert grad is not None and float(grad.abs().max()) > 0, task


@pytest.mark.parametrize("missing", TASKS)
def test_an_absent_task_adds_exactly_nothing(tmp_path, missing: str) -> None:
    tasks, dm, batch = one_batch(tmp_path, f"no_{missing}", absent(missing))
    model = float64_module(tasks, dm)
    outputs = model.encode_batch(batch)
    raw = model.tasks[missing].loss(batch, outputs)
    assert raw.item() == 0.0 and not torch.isnan(raw)  # exactly zero, not NaN
    total, per_task = model.compute_loss(batch, outputs)
    assert bool(torch.isfinite(total))
    assert missing not in per_task  # nothing logged for a task the batch does not have
    expected = by_hand(batch, outputs)
    assert expected.keys() == set(TASKS) - {missing}
    weighted = sum(WEIGHTS[t] * loss for t, loss in expected.items())
    torch.testing.assert_close(total, weighted, rtol=1e-12, atol=0)
    total.backward()
    for task, grad in head_grads(model).items():
        if task == missing:
            assert grad is None or not bool(grad.any()), "the absent task's head gets no gradient"
        else:
            assert grad is not None and float(grad.abs().max()) > 0, task


@pytest.mark.parametrize("missing", TASKS)
def test_uncertainty_weighting_leaves_the_absent_tasks_log_variance_alone(tmp_path,
                                                                          missing: str) -> None:
    tasks, dm, batch = one_batch(tmp_path, f"no_{missing}", absent(missing))
    model = float64_module(tasks, dm, weighting="uncertainty")
    log_vars = model.weighting.log_vars
    assert log_vars.shape == (3,) and list(model.tasks) == list(TASKS)
    with torch.no_grad():
        log_vars.copy_(torch.tensor([0.3, -0.2, 0.5], dtype=log_vars.dtype))
    outputs = model.encode_batch(batch)
    total, _ = model.compute_loss(batch, outputs)
    expected = by_hand(batch, outputs)
    s = dict(zip(TASKS, log_vars.detach(), strict=True))
    # Kendall et al.: exp(-s_i) * w_i * L_i + s_i over the present tasks only
    weighted = sum(torch.exp(-s[t]) * WEIGHTS[t] * loss + s[t] for t, loss in expected.items())
    assert bool(torch.isfinite(total))
    torch.testing.assert_close(total, weighted, rtol=1e-12, atol=0)
    total.backward()
    for i, task in enumerate(TASKS):
        if task == missing:
            assert log_vars.grad[i].item() == 0.0, "an absent task's log-variance does not move"
        else:  # d/ds (exp(-s) * w * L + s) = 1 - exp(-s) * w * L
            want = 1 - torch.exp(-s[task]) * WEIGHTS[task] * expected[task].detach()
            torch.testing.assert_close(log_vars.grad[i], want, rtol=1e-12, atol=1e-15)
    assert head_grads(model)[missing] is None or not bool(head_grads(model)[missing].any())
