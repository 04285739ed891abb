"""Row 16 (a): what the default backbone's architecture costs on this CPU, against MiniLM.

GPT-Neo 125M is built from its published configuration with random weights
(`backbone=gpt_neo_125m_random`): the same compute and memory as the real model, no quality.
Each figure puts it next to MiniLM (`backbone=minilm`) measured the same way, alternating:

- training: forward, the two tasks' losses, backward, clipping and AdamW (benchmarks.training's
  plain loop) on a batch of exactly 16 x 128 tokens (random token ids, no padding, random
  labels), both models in this process, turns alternating; median samples/s;
- peak memory: the same training steps in a fresh child process per model (VmHWM);
- encoding: `SentenceEncoder.encode` of AG News titles (batch 32), turns alternating; the two
  tokenizers split a title into different numbers of tokens (both counts are reported);
- a cached `freeze=backbone` epoch: the real Trainer on the first CoNLL-2003 train sentences
  (validation on an eighth as many), epoch 1 fills the feature cache, the figure is the median of
  the later epochs (one model after the other: a Lightning fit cannot be interleaved).

    python -m benchmarks.gpt_neo train --backbone gpt_neo_125m_random --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from benchmarks.common import (
    BENCH_OVERRIDES,
    Budget,
    compose,
    emit,
    peak_rss_mib,
    quiet_environment,
    run_child,
    scratch_dir,
    use_data_dir,
)

BACKBONES = {"gpt_neo_125m": "gpt_neo_125m_random", "minilm": "minilm"}
NAMES = {"gpt_neo_125m": "GPT-Neo 125M (random weights)", "minilm": "MiniLM"}
BATCH, TOKENS = 16, 128
FULL_SIZES = {"train_steps": 3, "child_steps": 2, "encode_titles": 512, "encode_repeats": 3,
              "freeze_examples": 2000, "freeze_epochs": 3}
QUICK_SIZES = {"train_steps": 1, "child_steps": 1, "encode_titles": 64, "encode_repeats": 1,
               "freeze_examples": 128, "freeze_epochs": 2}


def sizes_for(budget: Budget) -> dict[str, int]:
    return QUICK_SIZES if budget.name == "quick" else FULL_SIZES


def training_setup(tmp: Path, backbone: str, data_dir: Path
                   ) -> tuple[Any, Any, dict[str, torch.Tensor]]:
    """(model, plain training loop, one 16 x 128 batch) for a backbone config name. The data
    module reads a few hundred examples only: it gives the heads their label spaces (the same
    as the full corpora's), the batch itself is synthetic."""
    from benchmarks.training import ReferenceLoop, build, optimizer_cfg

    conll = data_dir / "conll2003"
    overrides = [o for o in BENCH_OVERRIDES if not o.startswith("backbone=")]
    cfg = compose(tmp, [f"backbone={backbone}", *overrides,
                        f"tasks.ner.train_files=[{{path:'{conll / 'train.txt'}',stop:512}}]",
                        f"tasks.ner.val_files=[{{path:'{conll / 'valid.txt'}',stop:64}}]",
                        "tasks.topic.train_files.0.stop=512", "tasks.topic.val_files.0.stop=6064"])
    datamodule, model = build(cfg)
    model.train()
    generator = torch.Generator().manual_seed(0)
    vocab = len(model.net.encoder.tokenizer)
    batch: dict[str, torch.Tensor] = {
        "input_ids": torch.randint(0, vocab, (BATCH, TOKENS), generator=generator),
        "attention_mask": torch.ones(BATCH, TOKENS, dtype=torch.long),
    }
    for name, head in model.net.heads.items():
        classes = head.out.out_features
        shape = (BATCH, TOKENS) if head.reads == "token_states" else (BATCH,)
        batch[f"{name}.labels"] = torch.randint(0, classes, shape, generator=generator)
    loop = ReferenceLoop(model, optimizer_cfg(cfg), total_steps=100,
                         clip=cfg.trainer.get("gradient_clip_val"))
    return model, loop, batch


def timed_step(loop: Any, batch: dict[str, torch.Tensor]) -> float:
    start = time.perf_counter()
    loop.step(batch)
    return time.perf_counter() - start


def training_speed(data_dir: Path, sizes: dict[str, int]) -> dict[str, Any]:
    """Both models built in this process; one warm-up step each, then steps in turn (ABBA)."""
    with scratch_dir("gpt-neo-train") as tmp:
        setups = {key: training_setup(Path(tmp) / key, name, data_dir)[1:]
                  for key, name in BACKBONES.items()}
        times: dict[str, list[float]] = {key: [] for key in BACKBONES}
        for loop, batch in setups.values():
            timed_step(loop, batch)
        keys = list(BACKBONES)
        for step in range(sizes["train_steps"]):
            for key in keys if step % 2 == 0 else keys[::-1]:
                times[key].append(timed_step(*setups[key]))
    return {key: {"step_s": v, "median_step_s": statistics.median(v),
                  "samples_per_s": BATCH / statistics.median(v)} for key, v in times.items()}


def child_train(data_dir: Path, backbone: str, steps: int) -> dict[str, Any]:
    """Peak RSS of building one model and taking `steps` training steps (fresh process)."""
    use_data_dir(data_dir)
    with scratch_dir("gpt-neo-mem") as tmp:
        model, loop, batch = training_setup(Path(tmp), backbone, data_dir)
        built = peak_rss_mib()
        seconds = [timed_step(loop, batch) for _ in range(steps)]
    params = sum(p.numel() for p in model.parameters())
    return {"backbone": backbone, "steps": steps, "step_s": seconds, "parameters": params,
            "peak_rss_after_build_mib": built, "peak_rss_mib": peak_rss_mib()}


def encode_speed(data_dir: Path, sizes: dict[str, int]) -> dict[str, Any]:
    from benchmarks.memory import ag_titles
    from mtst.model.encoder import SentenceEncoder

    titles = ag_titles(data_dir)[: sizes["encode_titles"]]
    with scratch_dir("gpt-neo-encode") as tmp:
        encoders = {}
        for key, name in BACKBONES.items():
            cfg = compose(Path(tmp) / key, [f"backbone={name}"])
            encoders[key] = SentenceEncoder.from_pretrained(
                str(cfg.backbone.name_or_path), pooling=str(cfg.backbone.pooling),
                pretrained=bool(cfg.backbone.pretrained), max_length=128)
    tokens = {key: statistics.mean(len(ids) for ids in enc.tokenizer(
        titles, truncation=True, max_length=128)["input_ids"]) for key, enc in encoders.items()}
    for enc in encoders.values():
        enc.eval()
        enc.encode(titles[:32], batch_size=32, show_progress_bar=False)  # warm-up
    rates: dict[str, list[float]] = {key: [] for key in encoders}
    keys = list(encoders)
    for repeat in range(sizes["encode_repeats"]):
        for key in keys if repeat % 2 == 0 else keys[::-1]:
            start = time.perf_counter()
            encoders[key].encode(titles, batch_size=32, show_progress_bar=False)
            rates[key].append(len(titles) / (time.perf_counter() - start))
    return {key: {"sentences_per_s": statistics.median(v), "per_repeat": v,
                  "mean_tokens_per_title": tokens[key]} for key, v in rates.items()}


class EpochClock(Callback):
    """Wall time of every training epoch, its validation pass included."""

    def __init__(self) -> None:
        self.epoch_s: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epoch_s.append(time.perf_counter() - self._start)


def cached_epochs(data_dir: Path, sizes: dict[str, int]) -> dict[str, Any]:
    from benchmarks.training import build
    from mtst.training.pipeline import build_trainer

    conll = data_dir / "conll2003"
    n, epochs = sizes["freeze_examples"], sizes["freeze_epochs"]
    result: dict[str, Any] = {}
    for key, name in BACKBONES.items():
        with scratch_dir("gpt-neo-freeze") as tmp:
            overrides = [o for o in BENCH_OVERRIDES if not o.startswith("backbone=")]
            cfg = compose(Path(tmp), [
                f"backbone={name}", *overrides, "freeze=backbone", "~tasks.topic",
                f"tasks.ner.train_files=[{{path:'{conll / 'train.txt'}',stop:{n}}}]",
                f"tasks.ner.val_files=[{{path:'{conll / 'valid.txt'}',stop:{max(1, n // 8)}}}]",
                "tasks.ner.test_files=null", "data.batch_size=32"])
            datamodule, model = build(cfg)
            clock = EpochClock()
            trainer = build_trainer(cfg, max_epochs=epochs, min_epochs=epochs)
            trainer.callbacks.append(clock)
            trainer.fit(model, datamodule=datamodule)
        cache = getattr(model.freezer, "cache", None)
        result[key] = {"epoch_s": clock.epoch_s, "first_epoch_s": clock.epoch_s[0],
                       "later_epoch_s": statistics.median(clock.epoch_s[1:]),
                       "cache_mb": float(getattr(cache, "nbytes", 0) or 0) / 2**20}
    return {"examples": n, "val_examples": max(1, n // 8), "epochs": epochs, "batch_size": 32,
            **result}


def run(budget: Budget, data_dir: Path) -> dict[str, Any]:
    sizes = sizes_for(budget)
    memory = {key: run_child("benchmarks.gpt_neo", ["train", "--backbone", name, "--data-dir",
                                                    str(data_dir), "--steps",
                                                    str(sizes["child_steps"])], timeout=1200)
              for key, name in BACKBONES.items()}
    return {"batch": BATCH, "tokens": TOKENS, "sizes": sizes, "threads": torch.get_num_threads(),
            "train": training_speed(data_dir, sizes), "memory": memory,
            "encode": encode_speed(data_dir, sizes), "freeze": cached_epochs(data_dir, sizes)}


def ratios(section: dict[str, Any]) -> dict[str, float]:
    """GPT-Neo 125M over MiniLM for each figure (above 1: GPT-Neo is larger / slower)."""
    t, m, e, f = (section[k] for k in ("train", "memory", "encode", "freeze"))
    return {"samples_per_s": t["gpt_neo_125m"]["samples_per_s"] / t["minilm"]["samples_per_s"],
            "peak_rss": m["gpt_neo_125m"]["peak_rss_mib"] / m["minilm"]["peak_rss_mib"],
            "encode": e["gpt_neo_125m"]["sentences_per_s"] / e["minilm"]["sentences_per_s"],
            "cached_epoch": f["gpt_neo_125m"]["later_epoch_s"] / f["minilm"]["later_epoch_s"]}


def summary_rows(section: dict[str, Any]) -> list[list[Any]]:
    t, m, e, f = (section[k] for k in ("train", "memory", "encode", "freeze"))
    r = ratios(section)
    g, b = "gpt_neo_125m", "minilm"
    shown = (f"{r['samples_per_s']:.2f}× ({t[g]['samples_per_s']:.1f} vs {t[b]['samples_per_s']:.1f}); "
             f"{r['peak_rss']:.2f}× ({m[g]['peak_rss_mib']:,.0f} vs {m[b]['peak_rss_mib']:,.0f} MiB); "
             f"{r['encode']:.2f}× ({e[g]['sentences_per_s']:.0f} vs {e[b]['sentences_per_s']:.0f}); "
             f"{r['cached_epoch']:.2f}× ({f[g]['later_epoch_s']:.2f} vs {f[b]['later_epoch_s']:.2f} s)")
    return [["16", "GPT-Neo 125M (random weights) / MiniLM: training samples/s, peak RSS, encode "
             "sentences/s, cached freeze=backbone epoch s", shown, "—", "—"]]


def render(section: dict[str, Any], table: Any = None) -> str:
    t, m, e, f = (section[k] for k in ("train", "memory", "encode", "freeze"))
    s = section["sizes"]
    lines = [
        f"Both models in one process, {section['threads']} torch threads, fp32. Training: batches "
        f"of exactly {section['batch']} × {section['tokens']} tokens (random ids and labels, no "
        f"padding), forward + NER and topic losses + backward + clipping + AdamW, one warm-up step "
        f"each, then {s['train_steps']} step(s) each in turn. Peak RSS: a fresh process per model "
        f"building it and taking {s['child_steps']} such step(s). Encoding: {s['encode_titles']} AG "
        f"News titles, batch 32, {s['encode_repeats']} pass(es) each in turn. Cached epoch: "
        f"`freeze=backbone` through the Trainer on the first {f['examples']:,} CoNLL-2003 train "
        f"sentences (validation on {f['val_examples']:,}), batch {f['batch_size']}, "
        f"{f['epochs']} epochs; epoch 1 fills the cache, the figure is the median of the later ones.",
        "",
        "| measure | GPT-Neo 125M (random weights) | MiniLM | GPT-Neo / MiniLM |",
        "|---|---:|---:|---:|",
    ]
    g, b = "gpt_neo_125m", "minilm"
    r = ratios(section)
    rows = [
        ("parameters", f"{m[g]['parameters'] / 1e6:.1f} M", f"{m[b]['parameters'] / 1e6:.1f} M",
         f"{m[g]['parameters'] / m[b]['parameters']:.2f}×"),
        ("training samples/s (median)", f"{t[g]['samples_per_s']:.2f}", f"{t[b]['samples_per_s']:.2f}",
         f"{r['samples_per_s']:.2f}×"),
        ("training step, s (median)", f"{t[g]['median_step_s']:.2f}", f"{t[b]['median_step_s']:.2f}",
         f"{t[g]['median_step_s'] / t[b]['median_step_s']:.2f}×"),
        ("peak RSS, training, MiB", f"{m[g]['peak_rss_mib']:,.0f}", f"{m[b]['peak_rss_mib']:,.0f}",
         f"{r['peak_rss']:.2f}×"),
        ("encode sentences/s (median)", f"{e[g]['sentences_per_s']:.0f}",
         f"{e[b]['sentences_per_s']:.0f}", f"{r['encode']:.2f}×"),
        ("tokens per title (own tokenizer)", f"{e[g]['mean_tokens_per_title']:.1f}",
         f"{e[b]['mean_tokens_per_title']:.1f}", ""),
        ("freeze=backbone epoch 1 (fills the cache), s", f"{f[g]['first_epoch_s']:.1f}",
         f"{f[b]['first_epoch_s']:.1f}", f"{f[g]['first_epoch_s'] / f[b]['first_epoch_s']:.2f}×"),
        ("freeze=backbone later epoch (cached), s", f"{f[g]['later_epoch_s']:.2f}",
         f"{f[b]['later_epoch_s']:.2f}", f"{r['cached_epoch']:.2f}×"),
    ]
    lines += [f"| {a} | {x} | {y} | {z} |" for a, x, y, z in rows]
    lines += ["", "GPT-Neo's tokenizer here is the tiny BPE stand-in (GPT-2's cannot be fetched "
              "offline), so its encode and epoch figures are for that tokenizer's token counts; "
              "the training rows use the same 16 × 128 tokens for both models. Random weights: "
              "these rows say what the architecture costs, nothing about its quality."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("train",))
    parser.add_argument("--backbone", required=True, choices=sorted(BACKBONES.values()))
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    quiet_environment()
    emit(child_train(args.data_dir, args.backbone, args.steps))


if __name__ == "__main__":
    main()
