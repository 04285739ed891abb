"""Row 7: test-set quality of MiniLM fine-tuned on real data under one fixed CPU budget.

Budget: `quality_steps` optimizer steps of batch 32 per task. Single-task rows train that many
steps; the joint row trains twice as many with `sampling=round_robin`, so each task sees exactly
as many batches as in its single-task row (differences then come from sharing the encoder, not
from seeing fewer examples). No validation or model selection: every row is tested after its
last step. Framework rows run `mtst.training.pipeline.train` on the composed Hydra config; the
reference rows run the plain loop of row 1 on the same DataModule batches, and score with
seqeval / scikit-learn directly (an independent check of the project's metrics).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    BENCH_OVERRIDES,
    Budget,
    compose,
    keep_tasks,
    scratch_dir,
    use_wnut,
)
from benchmarks.training import ReferenceLoop, build, optimizer_cfg

ROWS = {  # name -> (tasks kept from conf/data/conll_agnews.yaml, steps multiplier)
    "ner_only": (["ner"], 1),
    "topic_only": (["topic"], 1),
    "joint": (["topic", "ner"], 2),
    "wnut17": (None, 1),
}
# A row's scores, in points, are named `<task>_f1` for a token task and `<task>_acc` /
# `<task>_macro_f1` for a sentence task; the `topic` task keeps the `cls_` prefix under which
# benchmarks/results.json has always recorded it (sections.py and details.py read those keys).
RESULT_PREFIX = {"topic": "cls"}


def row_config(tmp: Path, name: str, budget: Budget, data: dict[str, Path]) -> Any:
    keep, mult = ROWS[name]
    steps = budget.quality_steps * mult
    overrides = [*BENCH_OVERRIDES, f"++trainer.max_steps={steps}", "trainer.max_epochs=-1",
                 "trainer.min_epochs=0", "trainer.limit_val_batches=0"]
    if budget.quality_test_batches:
        overrides.append(f"trainer.limit_test_batches={budget.quality_test_batches}")
    if name == "joint":
        overrides.append("data.sampling=round_robin")
    cfg = compose(tmp, overrides)
    if keep is not None:
        keep_tasks(cfg, keep)
    else:
        use_wnut(cfg, data["wnut17"])
    return cfg


def framework_row(tmp: Path, name: str, budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    from mtst.training.pipeline import train

    cfg = row_config(tmp, name, budget, data)
    start = time.perf_counter()
    metrics = train(cfg)
    return {"steps": int(cfg.trainer.max_steps), "seconds": time.perf_counter() - start,
            **_pick(metrics)}


def result_key(task: str, metric: str) -> str:
    """`ner`, `f1` -> `ner_f1`; `topic`, `acc` -> `cls_acc`; `topic`, `f1` -> `cls_macro_f1`."""
    return f"{RESULT_PREFIX.get(task, task)}_{metric}"


def _pick(metrics: dict[str, float]) -> dict[str, float]:
    """The framework's `test/<task>/<metric>` values under the row's result keys."""
    out = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != "test" or parts[2] not in ("acc", "f1") or value is None:
            continue
        _, task, metric = parts
        sentence = f"test/{task}/acc" in metrics  # a sentence task: accuracy and macro-F1
        out[result_key(task, "macro_f1" if sentence and metric == "f1" else metric)] = 100 * value
    return out


def reference_row(tmp: Path, name: str, budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    """The plain loop on the same config, batches and optimizer; metrics computed by hand."""
    cfg = row_config(tmp, name, budget, data)
    steps = int(cfg.trainer.max_steps)
    start = time.perf_counter()
    datamodule, model = build(cfg)
    datamodule.setup("test")
    loop = ReferenceLoop(model, optimizer_cfg(cfg), steps,
                         cfg.trainer.get("gradient_clip_val"))
    loader = datamodule.train_dataloader()
    model.train()
    done = 0
    while done < steps:
        for batch in loader:  # the sampler moves to the next epoch's order by itself
            loop.step(batch)
            done += 1
            if done == steps:
                break
    scores = evaluate(model, datamodule, budget.quality_test_batches)
    return {"steps": steps, "seconds": time.perf_counter() - start, **scores}


def head_kinds(model: Any) -> dict[str, str]:
    """Task -> head kind (`sentence` / `token`) of a module, a network or an ONNX model."""
    tasks = getattr(model, "net", model).tasks
    return {name: spec["head"] for name, spec in tasks.items() if spec.get("head")}


@torch.no_grad()
def test_predictions(model: Any, datamodule: Any, limit_batches: int = 0) -> dict[str, dict[str, list]]:
    """Over the DataModule's test batches, per task with a head: `pred` and `gold`, the class
    of every row labelled for a sentence task, or the tags of every labelled sentence's words
    (first sub-token) for a token task."""
    kinds = head_kinds(model)
    spaces = datamodule.label_spaces
    model.eval()
    out: dict[str, dict[str, list]] = {name: {"pred": [], "gold": []} for name in kinds}
    for i, batch in enumerate(datamodule.test_dataloader()):
        if limit_batches and i >= limit_batches:
            break
        result = model(batch["input_ids"], batch["attention_mask"])
        for name, kind in kinds.items():
            has = batch[f"{name}.has"]
            if kind == "sentence":
                out[name]["pred"] += result[name][has].argmax(-1).tolist()
                out[name]["gold"] += batch[f"{name}.labels"][has].tolist()
                continue
            tags, token_pred = spaces[name].ids, result[name].argmax(-1)
            for r in has.nonzero().flatten().tolist():
                n = int(batch["num_words"][r])
                words = ["O"] * n
                seen = set()
                for pos, w in enumerate(batch["word_ids"][r].tolist()):
                    if 0 <= w < n and w not in seen:
                        seen.add(w)
                        words[w] = tags[int(token_pred[r, pos])]
                out[name]["pred"].append(words)
                gold = batch[f"{name}.word_labels"][r, :n].tolist()
                out[name]["gold"].append([tags[t] for t in gold])
    return out


def evaluate(model: Any, datamodule: Any, limit_batches: int = 0) -> dict[str, float]:
    """Accuracy / macro-F1 (scikit-learn) and entity F1 (seqeval) from first-sub-token
    predictions, per task, under the row's result keys (see `RESULT_PREFIX`)."""
    from seqeval.metrics import f1_score as entity_f1
    from sklearn.metrics import accuracy_score, f1_score

    scores = {}
    kinds = head_kinds(model)
    for name, p in test_predictions(model, datamodule, limit_batches).items():
        if not p["gold"]:
            continue
        if kinds[name] == "token":
            scores[result_key(name, "f1")] = 100 * entity_f1(p["gold"], p["pred"])
        else:
            scores[result_key(name, "acc")] = 100 * accuracy_score(p["gold"], p["pred"])
            scores[result_key(name, "macro_f1")] = 100 * f1_score(p["gold"], p["pred"], average="macro")
    return scores


PLAN = [("ner_only", "framework"), ("ner_only", "reference"), ("topic_only", "framework"),
        ("topic_only", "reference"), ("joint", "framework"), ("wnut17", "framework")]


def run(budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for name, side in PLAN:
        if name == "wnut17" and "wnut17" not in data:
            continue
        with scratch_dir(f"quality-{name}") as tmp:
            fn = framework_row if side == "framework" else reference_row
            rows[f"{name}/{side}"] = fn(Path(tmp), name, budget, data)
    return {"steps_per_task": budget.quality_steps, "batch_size": 32,
            "test_batches": budget.quality_test_batches or "all", "rows": rows,
            "deltas": _deltas(rows)}


def _deltas(rows: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Framework - reference (target |.| <= 0.5) and joint - single-task (target >= -1), in points."""
    out = {}
    pairs = [("ner_only/framework", "ner_only/reference", "ner_f1", "framework_vs_reference_ner_f1"),
             ("topic_only/framework", "topic_only/reference", "cls_acc",
              "framework_vs_reference_cls_acc"),
             ("topic_only/framework", "topic_only/reference", "cls_macro_f1",
              "framework_vs_reference_cls_f1"),
             ("joint/framework", "ner_only/framework", "ner_f1", "joint_vs_single_ner_f1"),
             ("joint/framework", "topic_only/framework", "cls_acc", "joint_vs_single_cls_acc"),
             ("joint/framework", "topic_only/framework", "cls_macro_f1", "joint_vs_single_cls_f1")]
    for a, b, key, label in pairs:
        if key in rows.get(a, {}) and key in rows.get(b, {}):
            out[label] = rows[a][key] - rows[b][key]
    return out
