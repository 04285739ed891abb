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
    scratch_dir,
    select_files,
    use_wnut,
)
from benchmarks.training import ReferenceLoop, build, optimizer_cfg

ROWS = {  # name -> (files kept from conf/data/conll_agnews.yaml, steps multiplier)
    "ner_only": ([0], 1),
    "topic_only": ([1], 1),
    "joint": ([0, 1], 2),
    "wnut17": (None, 1),
}


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
        select_files(cfg, keep)
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


def _pick(metrics: dict[str, float]) -> dict[str, float]:
    keys = {"test/ner_f1": "ner_f1", "test/cls_acc": "cls_acc", "test/cls_f1": "cls_macro_f1"}
    return {short: 100 * metrics[k] for k, short in keys.items() if metrics.get(k) is not None}


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


@torch.no_grad()
def test_predictions(model: Any, datamodule: Any, limit_batches: int = 0) -> dict[str, list]:
    """Over the DataModule's test batches: the tag of every NER sentence's words (first sub-token)
    and their gold tags, the topic of every classification row and its gold topic."""
    tags = datamodule.label_space.tags
    model.eval()
    out: dict[str, list] = {"ner_pred": [], "ner_gold": [], "cls_pred": [], "cls_gold": []}
    for i, batch in enumerate(datamodule.test_dataloader()):
        if limit_batches and i >= limit_batches:
            break
        result = model(batch["input_ids"], batch["attention_mask"])
        has_cls = batch["has_cls"]
        out["cls_pred"] += result["cls_logits"][has_cls].argmax(-1).tolist()
        out["cls_gold"] += batch["cls_labels"][has_cls].tolist()
        token_pred = result["ner_logits"].argmax(-1)
        for r in batch["has_ner"].nonzero().flatten().tolist():
            n = int(batch["num_words"][r])
            words = ["O"] * n
            seen = set()
            for pos, w in enumerate(batch["word_ids"][r].tolist()):
                if 0 <= w < n and w not in seen:
                    seen.add(w)
                    words[w] = tags[int(token_pred[r, pos])]
            out["ner_pred"].append(words)
            out["ner_gold"].append([tags[t] for t in batch["word_labels"][r, :n].tolist()])
    return out


def evaluate(model: Any, datamodule: Any, limit_batches: int = 0) -> dict[str, float]:
    """Accuracy / macro-F1 (scikit-learn) and entity F1 (seqeval) from first-sub-token predictions."""
    from seqeval.metrics import f1_score as entity_f1
    from sklearn.metrics import accuracy_score, f1_score

    p = test_predictions(model, datamodule, limit_batches)
    scores = {}
    if p["ner_gold"]:
        scores["ner_f1"] = 100 * entity_f1(p["ner_gold"], p["ner_pred"])
    if p["cls_gold"]:
        scores["cls_acc"] = 100 * accuracy_score(p["cls_gold"], p["cls_pred"])
        scores["cls_macro_f1"] = 100 * f1_score(p["cls_gold"], p["cls_pred"], average="macro")
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
