"""Row 7 (b): mtst's shipped defaults against the loop a user writes in an afternoon.

Each side as its user runs it, on the same data, epochs and test sets: `experiment=minilm` as
shipped, and `NaiveLoop` (AdamW at one learning rate, nothing else), so the difference is what
the defaults buy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import QUIET_CALLBACKS, Budget, compose, keep_tasks, scratch_dir
from benchmarks.quality import _pick, evaluate
from benchmarks.training import ReferenceLoop, build

LOOP = {"lr": 5e-5, "batch_size": 32}
ROWS = {"ner": ("ner", 1, ("ner_f1",)), "topic": ("topic", 3, ("cls_acc", "cls_macro_f1"))}
EXAMPLES = {"full": {"ner": 4000, "topic": 6000}, "quick": {"ner": 128, "topic": 128}}


class NaiveLoop:
    """Forward, the tasks' cross-entropies, backward, AdamW at one learning rate; nothing else."""

    def __init__(self, model: torch.nn.Module, lr: float) -> None:
        self.model = model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

    def step(self, batch: dict[str, torch.Tensor]) -> None:
        ReferenceLoop.loss(batch, self.model(batch["input_ids"], batch["attention_mask"])).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def row_config(out: Path, row: str, budget: Budget, extra: tuple[str, ...] = ()) -> Any:
    """`experiment=minilm` on the row's task alone, its first training examples, its epochs."""
    from omegaconf import OmegaConf, open_dict

    task, epochs, _ = ROWS[row]
    quick = budget.name == "quick"
    cfg = compose(out, ["experiment=minilm", "data=conll_agnews", *QUIET_CALLBACKS,
                        f"trainer.max_epochs={epochs}",
                        *(["trainer.limit_val_batches=4", "trainer.limit_test_batches=4"] if quick else []),
                        *extra])
    keep_tasks(cfg, [task])
    with open_dict(cfg):
        first = cfg.tasks[task].train_files[0]
        entry = OmegaConf.to_container(first, resolve=True) if OmegaConf.is_config(first) else {"path": first}
        cfg.tasks[task].train_files = [{**entry, "stop": EXAMPLES["quick" if quick else "full"][row]}]
    return cfg


def framework_row(tmp: Path, row: str, budget: Budget) -> dict[str, Any]:
    from mtst.training.entry import train

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
    loop, steps = NaiveLoop(module.net, LOOP["lr"]), 0
    for _ in range(ROWS[row][1]):
        module.net.train()
        for batch in datamodule.train_dataloader():  # the sampler moves on to the next epoch
            loop.step(batch)
            steps += 1
    scores = evaluate(module.net, datamodule, 4 if budget.name == "quick" else 0)
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
