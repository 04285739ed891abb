"""Per-epoch time of `freeze=backbone` with and without the feature cache (one process).

    python -m benchmarks.freeze_cache                       # MiniLM on data/sample, 4 epochs
    python -m benchmarks.freeze_cache --epochs 6 --order cache,plain --threads 1
    python -m benchmarks.freeze_cache backbone=gpt_neo_tiny  # any extra Hydra overrides

Both sides train through the real config (`train.yaml` + overrides) with the same seed, data and
batches; an epoch clock times every epoch including its validation pass. Epoch 1 computes the
encoder outputs in both (the cached side also stores them), so the figure of merit is the median
time of epochs 2.. without the cache over the same with it (target: >= 10).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import compose
from benchmarks.epoch_clock import EpochClock


def run_side(tmp: Path, cache: bool, args: argparse.Namespace) -> dict[str, Any]:
    import lightning as L

    from mtst.model.backbone import load_tokenizer
    from mtst.training.pipeline import (
        backbone_settings,
        build_datamodule,
        build_model,
        configured_tasks,
    )

    overrides = [f"backbone={args.backbone}", "freeze=backbone", f"freeze.cache_features={cache}",
                 f"freeze.cache_dtype={args.cache_dtype}", f"data.batch_size={args.batch_size}",
                 *args.overrides]
    cfg = compose(tmp, overrides)
    L.seed_everything(cfg.seed)
    tasks = configured_tasks(cfg)
    datamodule = build_datamodule(cfg, load_tokenizer(**backbone_settings(cfg)), tasks)
    model = build_model(cfg, tasks, datamodule.label_spaces)
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


def later(side: dict[str, Any], key: str) -> float:
    """Median over epochs 2.. (epoch 1 computes the encoder outputs on both sides)."""
    return statistics.median(side[key][1:])


def speedups(plain: dict[str, Any], cache: dict[str, Any]) -> dict[str, float]:
    """No cache / cache: epoch time with validation and the training part after epoch 1, and what
    filling the cache costs epoch 1."""
    return {"speedup_epochs_2_on": later(plain, "epoch_s") / later(cache, "epoch_s"),
            "speedup_train_part": later(plain, "train_s") / later(cache, "train_s"),
            "first_epoch_ratio": cache["epoch_s"][0] / plain["epoch_s"][0]}


def main(argv: list[str] | None = None) -> int:
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
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.order.split(","):
            results[side] = run_side(Path(tmp) / side, side == "cache", args)
    plain, cache = results["plain"], results["cache"]
    heads_plain, heads_cache = plain.pop("head_weights"), cache.pop("head_weights")
    drift = max(float((heads_plain[name] - heads_cache[name]).abs().max()) for name in heads_plain)

    summary = {
        "backbone": args.backbone, "epochs": args.epochs, "torch_threads": torch.get_num_threads(),
        "cache_dtype": args.cache_dtype, "plain": plain, "cache": cache,
        **speedups(plain, cache), "max_head_weight_diff": drift,
    }
    print(f"freeze=backbone, backbone={args.backbone}, {args.epochs} epochs, "
          f"{summary['torch_threads']} torch threads, cache {args.cache_dtype} "
          f"({cache['cache_mb']:.1f} MB, {cache['cache_hits']} batches served)")
    print(f"{'':>10} {'epoch 1 (s)':>12} {'median 2.. (s)':>15} {'train part 2.. (s)':>19}")
    for name, side in (("no cache", plain), ("cache", cache)):
        print(f"{name:>10} {side['epoch_s'][0]:12.2f} {later(side, 'epoch_s'):15.3f} "
              f"{later(side, 'train_s'):19.3f}")
    print(f"speed-up, epochs 2.. (with validation): {summary['speedup_epochs_2_on']:.1f}x "
          f"(target >= 10x); training part only: {summary['speedup_train_part']:.1f}x")
    print(f"epoch 1 with cache / without: {summary['first_epoch_ratio']:.2f}; final val/score "
          f"{plain['val_score']:.4f} vs {cache['val_score']:.4f}; max |head weight diff| {drift:.2e}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
