"""Row 7 (b): mtst's shipped defaults against the loop a user writes in an afternoon.

Same data, same number of epochs, same test sets; each side as its user runs it:
- mtst: `experiment=minilm` as shipped (its batch size, learning rates, warm-up and decay,
  clipping, head dropout, and model selection on the validation split with `best.ckpt`);
- plain loop: the same network and batches of 32 from the same DataModule, AdamW at 5e-5 for
  every parameter (heads included), no schedule, no clipping, no validation, tested after the
  last step (`NaiveLoop`).
Tasks: NER alone on the first 4,000 CoNLL-2003 train sentences for 1 epoch, tested on
CoNLL-2003 test; topics alone on AG News titles (rows 0-5,999) for 3 epochs, tested on rows
6,800-7,599. Scores: the framework's own test metrics, and for the loop seqeval / scikit-learn
on first-sub-token predictions (`benchmarks.quality.evaluate`), both in points.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Budget, compose, keep_tasks, scratch_dir
from benchmarks.quality import _pick, evaluate
from benchmarks.training import ReferenceLoop, build

LOOP = {"lr": 5e-5, "batch_size": 32}
# name -> (task kept, epochs, metric keys shown)
ROWS = {"ner": ("ner", 1, ("ner_f1",)), "topic": ("topic", 3, ("cls_acc", "cls_macro_f1"))}
EXAMPLES = {"full": {"ner": 4000, "topic": 6000}, "quick": {"ner": 128, "topic": 128}}


class NaiveLoop:
    """forward, the tasks' cross-entropies, backward, AdamW over all parameters at one
    learning rate; nothing else."""

    def __init__(self, model: torch.nn.Module, lr: float) -> None:
        self.model = model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

    def step(self, batch: dict[str, torch.Tensor]) -> None:
        out = self.model(batch["input_ids"], batch["attention_mask"])
        ReferenceLoop.loss(batch, out).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def row_config(out: Path, row: str, budget: Budget, extra: tuple[str, ...] = ()) -> Any:
    """`experiment=minilm` on the row's task alone, its first training examples, its epochs."""
    from omegaconf import OmegaConf, open_dict

    task, epochs, _ = ROWS[row]
    quick = budget.name == "quick"
    cfg = compose(out, ["experiment=minilm", "data=conll_agnews", "trainer.accelerator=cpu",
                        "trainer.enable_progress_bar=false", "~callbacks.rich_progress_bar",
                        "~callbacks.model_summary", f"trainer.max_epochs={epochs}",
                        *(["trainer.limit_val_batches=4", "trainer.limit_test_batches=4"] if quick else []),
                        *extra])
    keep_tasks(cfg, [task])
    with open_dict(cfg):
        first = cfg.tasks[task].train_files[0]
        entry = OmegaConf.to_container(first, resolve=True) if OmegaConf.is_config(first) else {"path": first}
        cfg.tasks[task].train_files = [{**entry, "stop": EXAMPLES["quick" if quick else "full"][row]}]
    return cfg


def framework_row(tmp: Path, row: str, budget: Budget) -> dict[str, Any]:
    from mtst.training.pipeline import train

    cfg = row_config(tmp / f"mtst-{row}", row, budget)
    start = time.perf_counter()
    metrics = train(cfg)
    opt = cfg.model.optimizer
    settings = {"batch_size": int(cfg.data.batch_size), "lr_head": float(opt.lr_head),
                "lr_backbone": float(opt.lr_backbone), "warmup_ratio": float(opt.warmup_ratio),
                "clip": cfg.trainer.gradient_clip_val, "dropout": float(cfg.tasks[ROWS[row][0]].dropout)}
    return {"seconds": time.perf_counter() - start, "settings": settings, **_pick(metrics)}


def loop_row(tmp: Path, row: str, budget: Budget) -> dict[str, Any]:
    cfg = row_config(tmp / f"loop-{row}", row, budget, (f"data.batch_size={LOOP['batch_size']}",))
    start = time.perf_counter()
    datamodule, module = build(cfg)
    datamodule.setup("test")
    model = module.net
    loop = NaiveLoop(model, LOOP["lr"])
    loader = datamodule.train_dataloader()
    steps = 0
    for _ in range(ROWS[row][1]):
        model.train()
        for batch in loader:  # the sampler moves to the next epoch's order by itself
            loop.step(batch)
            steps += 1
    scores = evaluate(model, datamodule, 4 if budget.name == "quick" else 0)
    return {"seconds": time.perf_counter() - start, "batch_size": LOOP["batch_size"],
            "steps": steps, **scores}


def run(budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    if "conll2003" not in data or "ag_news" not in data:
        return {"skipped": "CoNLL-2003 or AG News not found"}
    rows: dict[str, dict[str, Any]] = {}
    with scratch_dir("defaults-vs-loop") as tmp:
        for row in ROWS:
            rows[f"{row}_mtst"] = framework_row(Path(tmp), row, budget)
            rows[f"{row}_loop"] = loop_row(Path(tmp), row, budget)
    return {"examples": EXAMPLES["quick" if budget.name == "quick" else "full"], "loop": LOOP,
            "epochs": {r: ROWS[r][1] for r in ROWS}, "rows": rows}


def deltas(section: dict[str, Any]) -> dict[str, float]:
    """mtst − loop, in points, for every metric shown."""
    rows = section["rows"]
    return {key: rows[f"{r}_mtst"][key] - rows[f"{r}_loop"][key]
            for r, (_, _, keys) in ROWS.items() for key in keys}


def summary_rows(section: dict[str, Any]) -> list[list[Any]]:
    d = deltas(section)
    shown = "; ".join(f"{k} {v:+.2f}" for k, v in d.items())
    return [["7 (b)", "mtst defaults (experiment=minilm) − plain loop, test points", shown,
             "≥ 0 on each", "yes" if min(d.values()) >= 0 else "**no**"]]


NAMES = {"ner_f1": "entity F1", "cls_acc": "accuracy", "cls_macro_f1": "macro-F1"}


def render(section: dict[str, Any], table: Any = None) -> str:
    n, e, loop = section["examples"], section["epochs"], section["loop"]
    m = section["rows"]["ner_mtst"]["settings"]
    lines = [f"NER: first {n['ner']:,} CoNLL-2003 train sentences, {e['ner']} epoch, CoNLL-2003 test. "
             f"Topics: {n['topic']:,} AG News titles, {e['topic']} epochs, rows 6,800-7,599. "
             f"mtst: `python train.py experiment=minilm data=conll_agnews trainer.max_epochs=E` with "
             f"the other task removed (batch {m['batch_size']}, heads {m['lr_head']:g}, encoder "
             f"{m['lr_backbone']:g}, {m['warmup_ratio']:.0%} warm-up then linear decay, clipping "
             f"{m['clip']}, head dropout {m['dropout']:g}, `best.ckpt` by validation score). Plain loop: AdamW at "
             f"{loop['lr']:g} for every parameter, batch {loop['batch_size']}, no schedule, no "
             "clipping, no validation, tested after its last step.", "",
             "| task | side | metric | test score | seconds |", "|---|---|---|---:|---:|"]
    for r, (_, _, keys) in ROWS.items():
        for side in ("mtst", "loop"):
            row = section["rows"][f"{r}_{side}"]
            for key in keys:
                lines.append(f"| {r} | {'mtst defaults' if side == 'mtst' else 'plain loop'} | "
                             f"{NAMES[key]} | {row[key]:.2f} | {row['seconds']:.0f} |")
    lines += ["", "mtst − plain loop (points): " + "; ".join(
        f"{NAMES[k]} ({k.split('_')[0]}) {v:+.2f}" for k, v in deltas(section).items()) + "."]
    return "\n".join(lines)
