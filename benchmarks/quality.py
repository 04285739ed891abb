"""Row 7: test-set quality of MiniLM fine-tuned on real data under one fixed CPU budget.

Framework rows run `mtst.training.entry.train`; reference rows run the plain loop on the same
batches and score with seqeval / scikit-learn, an independent check of the project's metrics.
The joint row trains twice the steps, round robin, so each task sees as many batches as alone.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import common
from benchmarks.common import BENCH_OVERRIDES, Budget
from benchmarks.training import ReferenceLoop, build, optimizer_cfg

ROWS = {"ner_only": (["ner"], 1), "topic_only": (["topic"], 1), "joint": (["topic", "ner"], 2),
        "wnut17": (None, 1)}  # name -> (tasks kept from conf/data/conll_agnews.yaml, steps x)
PLAN = [("ner_only", "framework"), ("ner_only", "reference"), ("topic_only", "framework"),
        ("topic_only", "reference"), ("joint", "framework"), ("wnut17", "framework")]
# scores in points: `<task>_f1` (token task), `<task>_acc` / `<task>_macro_f1` (sentence task);
# `topic` keeps the `cls_` prefix under which results.json has always recorded it
RESULT_PREFIX = {"topic": "cls"}
DELTAS = {  # name -> (row, row it is compared with, score): framework - reference, joint - single
    "framework_vs_reference_ner_f1": ("ner_only/framework", "ner_only/reference", "ner_f1"),
    "framework_vs_reference_cls_acc": ("topic_only/framework", "topic_only/reference", "cls_acc"),
    "framework_vs_reference_cls_f1": ("topic_only/framework", "topic_only/reference", "cls_macro_f1"),
    "joint_vs_single_ner_f1": ("joint/framework", "ner_only/framework", "ner_f1"),
    "joint_vs_single_cls_acc": ("joint/framework", "topic_only/framework", "cls_acc"),
    "joint_vs_single_cls_f1": ("joint/framework", "topic_only/framework", "cls_macro_f1")}


def row_config(tmp: Path, name: str, budget: Budget, data: dict[str, Path]) -> Any:
    keep, mult = ROWS[name]
    cfg = common.compose(tmp, [*BENCH_OVERRIDES, *common.fixed_steps(
        budget.quality_steps * mult, budget.quality_test_batches),
        *(["data.sampling=round_robin"] if name == "joint" else [])])
    if keep is None:
        common.use_wnut(cfg, data["wnut17"])
    else:
        common.keep_tasks(cfg, keep)
    return cfg


def result_key(task: str, metric: str) -> str:
    """`ner`, `f1` -> `ner_f1`; `topic`, `acc` -> `cls_acc`; `topic`, `macro_f1` -> `cls_macro_f1`."""
    return f"{RESULT_PREFIX.get(task, task)}_{metric}"


def _pick(metrics: dict[str, float]) -> dict[str, float]:
    """The framework's `test/<task>/<metric>` values under the row's result keys."""
    out = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "test" and parts[2] in ("acc", "f1") and value is not None:
            sentence = f"test/{parts[1]}/acc" in metrics  # a sentence task: accuracy and macro-F1
            metric = "macro_f1" if sentence and parts[2] == "f1" else parts[2]
            out[result_key(parts[1], metric)] = 100 * value
    return out


def framework_row(tmp: Path, name: str, budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    from mtst.training.entry import train

    cfg = row_config(tmp, name, budget, data)
    start = time.perf_counter()
    metrics = train(cfg)
    return {"steps": int(cfg.trainer.max_steps), "seconds": time.perf_counter() - start,
            **_pick(metrics)}


def reference_row(tmp: Path, name: str, budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    """The plain loop on the same config, batches and optimizer; metrics computed by hand."""
    cfg = row_config(tmp, name, budget, data)
    steps = int(cfg.trainer.max_steps)
    start = time.perf_counter()
    datamodule, model = build(cfg)
    datamodule.setup("test")
    loop = ReferenceLoop(model, optimizer_cfg(cfg), steps, cfg.trainer.get("gradient_clip_val"))
    model.train()
    epochs = (batch for _ in itertools.count() for batch in datamodule.train_dataloader())
    for batch in itertools.islice(epochs, steps):  # each epoch the sampler's next order
        loop.step(batch)
    return {"steps": steps, "seconds": time.perf_counter() - start,
            **evaluate(model, datamodule, budget.quality_test_batches)}


def head_kinds(model: Any) -> dict[str, str]:
    """Task -> head kind (`sentence` / `token`) of a module, a network or an ONNX model."""
    return {name: spec["head"] for name, spec in getattr(model, "net", model).tasks.items()
            if spec.get("head")}


@torch.no_grad()
def test_predictions(model: Any, datamodule: Any, limit_batches: int = 0) -> dict[str, dict[str, list]]:
    """Per task with a head, over the DataModule's test batches: `pred` and `gold`, the class of
    each labelled row (sentence task) or the tags of each labelled sentence's words, read at
    their first sub-token (token task)."""
    kinds = head_kinds(model)
    model.eval()
    out: dict[str, dict[str, list]] = {name: {"pred": [], "gold": []} for name in kinds}
    for i, batch in enumerate(datamodule.test_dataloader()):
        if limit_batches and i >= limit_batches:
            break
        result = model(batch["input_ids"], batch["attention_mask"])
        for name, kind in kinds.items():
            has, pred, gold = batch[f"{name}.has"], out[name]["pred"], out[name]["gold"]
            if kind == "sentence":
                pred += result[name][has].argmax(-1).tolist()
                gold += batch[f"{name}.labels"][has].tolist()
                continue
            tags, token_pred = datamodule.label_spaces[name].ids, result[name].argmax(-1)
            for r in has.nonzero().flatten().tolist():
                n = int(batch["num_words"][r])
                words: list[str | None] = [None] * n
                for pos, w in enumerate(batch["word_ids"][r].tolist()):
                    if 0 <= w < n and words[w] is None:
                        words[w] = tags[int(token_pred[r, pos])]
                pred.append([w or "O" for w in words])
                gold.append([tags[t] for t in batch[f"{name}.word_labels"][r, :n].tolist()])
    return out


def evaluate(model: Any, datamodule: Any, limit_batches: int = 0) -> dict[str, float]:
    """Accuracy / macro-F1 (scikit-learn), entity F1 (seqeval) of `test_predictions`, per task."""
    from seqeval.metrics import f1_score as entity_f1
    from sklearn.metrics import accuracy_score, f1_score

    scores, kinds = {}, head_kinds(model)
    for name, p in test_predictions(model, datamodule, limit_batches).items():
        if not p["gold"]:
            continue
        if kinds[name] == "token":
            scores[result_key(name, "f1")] = 100 * entity_f1(p["gold"], p["pred"])
        else:
            scores[result_key(name, "acc")] = 100 * accuracy_score(p["gold"], p["pred"])
            scores[result_key(name, "macro_f1")] = 100 * f1_score(p["gold"], p["pred"], average="macro")
    return scores


def run(budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for name, side in PLAN:
        if name != "wnut17" or "wnut17" in data:
            with common.scratch_dir(f"quality-{name}") as tmp:
                fn = framework_row if side == "framework" else reference_row
                rows[f"{name}/{side}"] = fn(Path(tmp), name, budget, data)
    deltas = {label: rows[a][key] - rows[b][key] for label, (a, b, key) in DELTAS.items()
              if key in rows.get(a, {}) and key in rows.get(b, {})}
    return {"steps_per_task": budget.quality_steps, "batch_size": 32,
            "test_batches": budget.quality_test_batches or "all", "rows": rows, "deltas": deltas}
