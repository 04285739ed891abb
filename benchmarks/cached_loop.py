"""Row 16 (c): a later `freeze=backbone` epoch served from the feature cache, in mtst's Lightning
loop against a bare PyTorch loop over the same cached features.

The bare loop (`bare_epochs`) keeps the encoder's token states at the labelled sub-tokens, the rows
mtst's cache serves to the head, and then runs only head, loss, backward, clipping and AdamW:
the least a cached epoch can cost in PyTorch, so mtst / bare is what the framework adds.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import Budget, compose, frozen_conll_valid, scratch_dir
from benchmarks.machine import cpu_model
from benchmarks.training import EpochClock, build, fit, optimizer_cfg
from mtst.data.store import IGNORE

EPOCHS = 4  # the first fills the cache; the median of the others is the later epoch
AIM = 2.0
NO_SAVES = ["~callbacks.model_checkpoint", "~callbacks.step_checkpoint",
            "++trainer.enable_checkpointing=false", "trainer.limit_val_batches=0",
            "trainer.limit_test_batches=0"]


def overrides(conll: Path, stop: int | None) -> list[str]:
    return [*frozen_conll_valid(conll, stop), "tasks.ner.test_files=null",
            f"trainer.max_epochs={EPOCHS}", *NO_SAVES]


def mtst_epochs(cfg: Any) -> list[float]:
    """Each epoch's seconds in mtst's loop (the first fills the cache)."""
    datamodule, model = build(cfg)
    return fit(cfg, model, datamodule, EpochClock()).epoch_s


def bare_epochs(cfg: Any) -> list[float]:
    """Each epoch's seconds in the bare loop (the first encodes and keeps the labelled rows)."""
    from mtst.freezing.param_groups import named_groups
    from mtst.training.optim import use_fused, warmup_linear_decay

    datamodule, model = build(cfg)
    datamodule.setup("fit")
    encoder, head = model.net.encoder.eval(), copy.deepcopy(model.net.heads["ner"]).train()
    settings = optimizer_cfg(cfg)
    groups = named_groups("heads", head.named_parameters(), settings["lr_head"], settings["weight_decay"])
    optimizer = torch.optim.AdamW(groups, betas=tuple(settings["betas"]), eps=settings["eps"],
                                  fused=use_fused(settings.get("fused"), None))
    cached: list[tuple[torch.Tensor, torch.Tensor]] = []
    times = []
    start = time.perf_counter()
    with torch.no_grad():
        for batch in datamodule.train_dataloader():
            states, _ = encoder(batch["input_ids"], batch["attention_mask"])
            labels = batch["ner.labels"]
            rows = labels != IGNORE
            cached.append((states[rows].contiguous(), labels[rows]))
    total = len(cached) * (EPOCHS - 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear_decay(total, total // 10))
    times.append(time.perf_counter() - start)
    for _ in range(EPOCHS - 1):
        start = time.perf_counter()
        for states, labels in cached:
            loss = F.cross_entropy(head(states), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


def run(budget: Budget, data: dict[str, Path], repeats: int = 3) -> dict[str, Any]:
    conll = data.get("conll2003")
    if conll is None:
        return {"skipped": "CoNLL-2003 not found"}
    repeats, stop = (1, 256) if budget.name == "quick" else (repeats, None)
    epochs: dict[str, list[list[float]]] = {"mtst": [], "bare": []}
    load = [os.getloadavg()[0]]
    with scratch_dir("cached-loop") as tmp:
        cfg = compose(Path(tmp), overrides(conll, stop))
        for repeat in range(repeats):
            for side in (("mtst", "bare") if repeat % 2 == 0 else ("bare", "mtst")):
                epochs[side].append(mtst_epochs(cfg) if side == "mtst" else bare_epochs(cfg))
            load.append(os.getloadavg()[0])
    later = {side: [statistics.median(e[1:]) for e in runs] for side, runs in epochs.items()}
    ratios = [m / b for m, b in zip(later["mtst"], later["bare"], strict=True)]
    return {"command": "python -m benchmarks --only cached_loop", "examples": stop or 3250,
            "repeats": repeats, "epochs": EPOCHS, "cpu": cpu_model(), "load_1min": load,
            "aim": AIM, "epochs_s": epochs,
            "later_epoch_s": {side: statistics.median(v) for side, v in later.items()},
            "ratio": statistics.median(ratios), "repeat_ratios": ratios}
