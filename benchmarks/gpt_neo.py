"""Row 16 (a): what the default backbone's architecture costs on this CPU, against MiniLM.

GPT-Neo 125M with random weights (`backbone=gpt_neo_125m_random`) has the real model's compute and
memory, no quality; each figure is measured the same way on MiniLM beside it.

    python -m benchmarks.gpt_neo train --backbone gpt_neo_125m_random --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch

from benchmarks import common, machine

BACKBONES = {"gpt_neo_125m": "gpt_neo_125m_random", "minilm": "minilm"}
BATCH, TOKENS = 16, 128
FULL_SIZES = {"train_steps": 3, "child_steps": 2, "encode_titles": 512, "encode_repeats": 3,
              "freeze_examples": 2000, "freeze_epochs": 3}
QUICK_SIZES = {"train_steps": 1, "child_steps": 1, "encode_titles": 64, "encode_repeats": 1,
               "freeze_examples": 128, "freeze_epochs": 2}
OVERRIDES = [o for o in common.BENCH_OVERRIDES if not o.startswith("backbone=")]


def training_setup(tmp: Path, backbone: str, data_dir: Path) -> tuple[Any, Any]:
    """(model, `step()` of the plain loop on one 16 x 128 batch) for a backbone config name. The
    data module reads a few hundred examples only, for the heads' label spaces."""
    from benchmarks.training import ReferenceLoop, build, optimizer_cfg

    conll = data_dir / "conll2003"
    cfg = common.compose(tmp, [f"backbone={backbone}", *OVERRIDES,
                               f"tasks.ner.train_files=[{common.conll_file(conll / 'train.txt', 512)}]",
                               f"tasks.ner.val_files=[{common.conll_file(conll / 'valid.txt', 64)}]",
                               "tasks.topic.train_files.0.stop=512",
                               "tasks.topic.val_files.0.stop=6064"])
    _, model = build(cfg)
    model.train()
    generator = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(0, len(model.net.encoder.tokenizer), (BATCH, TOKENS),
                                        generator=generator),
             "attention_mask": torch.ones(BATCH, TOKENS, dtype=torch.long)}
    for name, head in model.net.heads.items():
        shape = (BATCH, TOKENS) if head.reads == "token_states" else (BATCH,)
        batch[f"{name}.labels"] = torch.randint(0, head.out.out_features, shape, generator=generator)
    loop = ReferenceLoop(model, optimizer_cfg(cfg), total_steps=100,
                         clip=cfg.trainer.get("gradient_clip_val"))
    return model, lambda: loop.step(batch)


def training_speed(data_dir: Path, sizes: dict[str, int]) -> dict[str, Any]:
    """Both models built in this process; one warm-up step each, then steps in turn (ABBA)."""
    with common.scratch_dir("gpt-neo-train") as tmp:
        steps = {key: training_setup(Path(tmp) / key, name, data_dir)[1]
                 for key, name in BACKBONES.items()}
        common.alternate(steps, 1)  # a warm-up step each
        times = common.alternate(steps, sizes["train_steps"])
    return {key: {"step_s": v, "median_step_s": statistics.median(v),
                  "samples_per_s": BATCH / statistics.median(v)} for key, v in times.items()}


def child_train(data_dir: Path, backbone: str, steps: int) -> dict[str, Any]:
    """Peak RSS of building one model and taking `steps` training steps (fresh process)."""
    common.use_data_dir(data_dir)
    with common.scratch_dir("gpt-neo-mem") as tmp:
        model, step = training_setup(Path(tmp), backbone, data_dir)
        built = machine.peak_rss_mib()
        seconds = common.alternate({"step": step}, steps)["step"]
    return {"backbone": backbone, "steps": steps, "step_s": seconds,
            "parameters": sum(p.numel() for p in model.parameters()),
            "peak_rss_after_build_mib": built, "peak_rss_mib": machine.peak_rss_mib()}


def encode_speed(data_dir: Path, sizes: dict[str, int]) -> dict[str, Any]:
    from mtst.model.encoder import SentenceEncoder

    titles = common.ag_titles(data_dir, sizes["encode_titles"])
    with common.scratch_dir("gpt-neo-encode") as tmp:
        encoders = {}
        for key, name in BACKBONES.items():
            cfg = common.compose(Path(tmp) / key, [f"backbone={name}"])
            encoders[key] = SentenceEncoder.from_pretrained(
                str(cfg.backbone.name_or_path), pooling=str(cfg.backbone.pooling),
                pretrained=bool(cfg.backbone.pretrained), max_length=128).eval()
    tokens = {key: statistics.mean(len(ids) for ids in enc.tokenizer(
        titles, truncation=True, max_length=128)["input_ids"]) for key, enc in encoders.items()}
    runs = {key: lambda texts, e=enc: e.encode(texts, batch_size=32, show_progress_bar=False)
            for key, enc in encoders.items()}
    common.alternate(runs, 1, titles[:32])  # warm-up
    rates = {k: [len(titles) / s for s in v]
             for k, v in common.alternate(runs, sizes["encode_repeats"], titles).items()}
    return {key: {"sentences_per_s": statistics.median(v), "per_repeat": v,
                  "mean_tokens_per_title": tokens[key]} for key, v in rates.items()}


def cached_epochs(data_dir: Path, sizes: dict[str, int]) -> dict[str, Any]:
    from benchmarks.training import EpochClock, build, fit

    n, epochs = sizes["freeze_examples"], sizes["freeze_epochs"]
    result: dict[str, Any] = {}
    for key, name in BACKBONES.items():
        with common.scratch_dir("gpt-neo-freeze") as tmp:
            cfg = common.compose(Path(tmp), [f"backbone={name}", *OVERRIDES, "freeze=backbone",
                                             *common.conll_subset(data_dir / "conll2003", n),
                                             "data.batch_size=32"])
            datamodule, model = build(cfg)
            clock = fit(cfg, model, datamodule, EpochClock(), max_epochs=epochs, min_epochs=epochs)
        cache = getattr(model.freezer, "cache", None)
        result[key] = {"epoch_s": clock.epoch_s, "first_epoch_s": clock.epoch_s[0],
                       "later_epoch_s": statistics.median(clock.epoch_s[1:]),
                       "cache_mb": float(getattr(cache, "nbytes", 0) or 0) / 2**20}
    return {"examples": n, "val_examples": max(1, n // 8), "epochs": epochs, "batch_size": 32,
            **result}


def run(budget: common.Budget, data_dir: Path) -> dict[str, Any]:
    sizes = QUICK_SIZES if budget.name == "quick" else FULL_SIZES
    memory = {key: common.run_child("benchmarks.gpt_neo", [
        "train", "--backbone", name, "--data-dir", str(data_dir), "--steps",
        str(sizes["child_steps"])], timeout=1200) for key, name in BACKBONES.items()}
    return {"batch": BATCH, "tokens": TOKENS, "sizes": sizes, "threads": torch.get_num_threads(),
            "train": training_speed(data_dir, sizes), "memory": memory,
            "encode": encode_speed(data_dir, sizes), "freeze": cached_epochs(data_dir, sizes)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("train",))
    parser.add_argument("--backbone", required=True, choices=sorted(BACKBONES.values()))
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    common.quiet_environment()
    common.emit(child_train(args.data_dir, args.backbone, args.steps))


if __name__ == "__main__":
    main()
