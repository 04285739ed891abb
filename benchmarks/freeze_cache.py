"""Row 4, and a tool: `freeze=backbone` epoch time with and without the feature cache.

    python -m benchmarks.freeze_cache                       # MiniLM on data/sample, 4 epochs
    python -m benchmarks.freeze_cache --epochs 6 --order cache,plain --threads 1
    python -m benchmarks.freeze_cache backbone=gpt_neo_tiny  # any extra Hydra overrides

Epoch 1 runs the encoder on both sides (the cached one also stores its outputs), so the figure
of merit is the median of epochs 2.. without the cache over the same with it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import Budget, compose, conll_subset, scratch_dir


def run_side(tmp: Path, cache: bool, args: argparse.Namespace) -> dict[str, Any]:
    import lightning as L

    from benchmarks.training import EpochClock, build

    cfg = compose(tmp, [f"backbone={args.backbone}", "freeze=backbone",
                        f"freeze.cache_features={cache}", f"freeze.cache_dtype={args.cache_dtype}",
                        f"data.batch_size={args.batch_size}", *args.overrides])
    datamodule, model = build(cfg)
    clock = EpochClock()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=args.epochs, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[clock])
    trainer.fit(model, datamodule=datamodule)
    cached = model.freezer.cache
    return {"epoch_s": clock.epoch_s, "train_s": clock.train_s,
            "cache_mb": cached.nbytes / 2**20 if cached else 0.0,
            "cache_hits": cached.hits if cached else 0,
            "val_score": float(trainer.callback_metrics.get("val/score", float("nan"))),
            "head_weights": {name: head.out.weight.detach().clone()
                             for name, head in model.net.heads.items()}}


def speedups(plain: dict[str, Any], cache: dict[str, Any]) -> dict[str, float]:
    """No cache / cache over the medians of epochs 2.., and what filling the cache costs epoch 1."""
    def later(side: dict[str, Any], key: str) -> float:
        return statistics.median(side[key][1:])

    return {"speedup_epochs_2_on": later(plain, "epoch_s") / later(cache, "epoch_s"),
            "speedup_train_part": later(plain, "train_s") / later(cache, "train_s"),
            "first_epoch_ratio": cache["epoch_s"][0] / plain["epoch_s"][0]}


def sides(args: argparse.Namespace, order: tuple[str, ...] = ("plain", "cache")) -> dict[str, Any]:
    """Both sides, `order` first to last; the heads' largest weight difference between them."""
    with scratch_dir("freeze") as tmp:
        result = {side: run_side(Path(tmp) / side, side == "cache", args) for side in order}
    heads = [result[side].pop("head_weights") for side in ("plain", "cache")]
    drift = max(float((heads[0][n] - heads[1][n]).abs().max()) for n in heads[0])
    return {**result, **speedups(result["plain"], result["cache"]), "max_head_weight_diff": drift}


def run(budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    overrides = ["data=conll_agnews", *conll_subset(data["conll2003"], budget.freeze_examples)]
    args = argparse.Namespace(backbone="minilm", epochs=budget.freeze_epochs, batch_size=32,
                              cache_dtype="float16", overrides=overrides)
    result = sides(args)
    return {"examples": budget.freeze_examples, "val_examples": max(1, budget.freeze_examples // 8),
            "epochs": budget.freeze_epochs, "batch_size": 32, "cache_dtype": "float16",
            "no_cache": result.pop("plain"), **result, "target_speedup": 10.0}


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--cache-dtype", default="float16")
    parser.add_argument("--order", default="plain,cache", help="which side runs first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both sides")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (epoch 1 fills the cache)")
    if args.threads:
        torch.set_num_threads(args.threads)
    summary = {"backbone": args.backbone, "epochs": args.epochs,
               "torch_threads": torch.get_num_threads(), "cache_dtype": args.cache_dtype,
               **sides(args, tuple(args.order.split(",")))}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
