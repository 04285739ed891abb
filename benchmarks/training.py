"""Rows 1-2: the Lightning training step against a hand-written PyTorch loop, and FLOP efficiency.

Both sides train the same `MultiTaskModule` (reset to the same weights and RNG seed before each
repeat), on the same batches from the same DataModule, with the same AdamW groups, schedule and
gradient clipping. Repeats alternate sides (framework, plain, framework, plain, ...) so machine
load hits both alike; the figures are medians of per-repeat samples/s.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn

from benchmarks.common import (
    BENCH_OVERRIDES,
    Budget,
    compose,
    median,
    python_profile,
    scratch_dir,
    torch_profile,
)
from benchmarks.hotspots import adamw_step_ms, phase_breakdown
from mtst.freezing.param_groups import head_and_backbone_groups
from mtst.training.optim import use_fused, warmup_linear_decay

IGNORE = -100
FIT_KWARGS = {"enable_checkpointing": False, "enable_model_summary": False, "limit_val_batches": 0,
              "num_sanity_val_steps": 0, "min_epochs": 0, "max_epochs": -1}


class ReferenceLoop:
    """The loop a user writes by hand: forward, one masked cross-entropy per task with a head,
    clip, AdamW, schedule."""

    def __init__(self, model: nn.Module, optimizer_cfg: dict[str, Any], total_steps: int,
                 clip: float | None = 1.0) -> None:
        cfg = dict(optimizer_cfg)
        self.model, self.clip = model, clip
        self.optimizer = torch.optim.AdamW(head_and_backbone_groups(model, cfg),
                                           betas=tuple(cfg.get("betas", (0.9, 0.999))),
                                           eps=cfg.get("eps", 1e-8),
                                           # as build_optimizer (fp32: fused by default)
                                           fused=use_fused(cfg.get("fused"), None))
        warmup = int(cfg.get("warmup_steps") or round(cfg.get("warmup_ratio", 0.1) * total_steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_linear_decay(total_steps, warmup))

    @staticmethod
    def loss(batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of the cross-entropies of the tasks this batch has labels for (every output but
        the embeddings is a task's logits: [B, C] per sentence or [B, T, C] per token)."""
        total = out["embeddings"].new_zeros(())
        for name, logits in out.items():
            labels = batch.get(f"{name}.labels")
            if name == "embeddings" or labels is None or not bool((labels != IGNORE).any()):
                continue
            total = total + F.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                            labels.reshape(-1), ignore_index=IGNORE)
        return total

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        out = self.model(batch["input_ids"], batch["attention_mask"])
        loss = self.loss(batch, out)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def run(self, batches: Iterable[dict[str, torch.Tensor]], steps: int, clock: StepClock) -> None:
        self.model.train()
        for i, batch in enumerate(batches):
            if i >= steps:
                break
            clock.record(batch, self.step(batch))


class StepClock(Callback):
    """Time, batch shape and loss at the end of every optimizer step (either side)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.times: list[float] = []
        self.shapes: list[tuple[int, int]] = []
        self.losses: list[float] = []

    def record(self, batch: dict[str, torch.Tensor], loss: float) -> None:
        self.times.append(time.perf_counter())
        self.shapes.append(tuple(batch["input_ids"].shape))
        self.losses.append(loss)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.record(batch, float(outputs["loss"].detach()))

    def window(self, warmup: int) -> dict[str, Any]:
        """Samples/s and seconds over the steps after `warmup` (data loading included)."""
        t0 = self.times[warmup - 1] if warmup else self.start
        seconds = self.times[-1] - t0
        shapes = self.shapes[warmup:]
        samples = sum(b for b, _ in shapes)
        return {"seconds": seconds, "samples": samples, "samples_per_s": samples / seconds,
                "shapes": shapes}


def build(cfg: Any) -> tuple[Any, Any]:
    """DataModule and model (the `MultiTaskModule`) exactly as `train.py` builds them."""
    import lightning as L

    from mtst.model.backbone import load_tokenizer
    from mtst.training.pipeline import (
        backbone_settings,
        build_datamodule,
        build_model,
        configured_tasks,
    )

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    tasks = configured_tasks(cfg)
    datamodule = build_datamodule(cfg, load_tokenizer(**backbone_settings(cfg)), tasks)
    return datamodule, build_model(cfg, tasks, datamodule.label_spaces)


def optimizer_cfg(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg.model.optimizer, resolve=True)


def framework_run(cfg: Any, model: Any, datamodule: Any, steps: int) -> StepClock:
    from mtst.training.pipeline import build_trainer

    trainer = build_trainer(cfg, max_steps=steps, **FIT_KWARGS)
    clock = StepClock()
    trainer.callbacks.append(clock)
    trainer.fit(model, datamodule=datamodule)
    return clock


def plain_run(cfg: Any, model: Any, datamodule: Any, steps: int) -> StepClock:
    loop = ReferenceLoop(model, optimizer_cfg(cfg), steps, cfg.trainer.get("gradient_clip_val"))
    clock = StepClock()
    loop.run(datamodule.train_dataloader(), steps, clock)
    return clock


def flop_model(model: Any) -> dict[str, int]:
    """Per-token matmul parameters N (encoder Linear layers + token heads; embeddings are lookups
    and the pooler and sentence heads act once per sentence, so they are left out), layers L,
    width d. `model` is a `MultiTaskModule` or a `MultiTaskNetwork`."""
    net = getattr(model, "net", model)
    per_token = sum(m.weight.numel() for name, m in net.encoder.named_modules()
                    if isinstance(m, nn.Linear) and "pooler" not in name)
    per_token += sum(head.out.weight.numel() for head in net.heads.values()
                     if head.reads == "token_states")
    config = net.encoder.backbone.config
    return {"matmul_params": per_token, "layers": int(config.num_hidden_layers),
            "hidden": int(config.hidden_size)}


FLOP_FORMULA = ("FLOPs per step = 6·N·B·T + 12·L·d·B·T², with B·T the padded tokens of the batch "
                "(the work the CPU actually does), N the per-token matmul parameters, L layers, "
                "d hidden width (6·N: forward 2·N + backward 4·N per token; 12·L·d·T: QKᵀ and "
                "attention·V, forward and backward)")


def step_flops(shapes: Iterable[tuple[int, int]], fm: dict[str, int]) -> float:
    n, layers, d = fm["matmul_params"], fm["layers"], fm["hidden"]
    return float(sum(6 * n * b * t + 12 * layers * d * b * t * t for b, t in shapes))


def matmul_rate(m: int, k: int, n: int, repeats: int = 5) -> float:
    """Median FLOP/s of an fp32 [m, k] @ [k, n] product."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.matmul(a, b)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.matmul(a, b)
        rates.append(2 * m * k * n / (time.perf_counter() - t))
    return median(rates)


def matmul_peak(sizes: tuple[int, ...] = (1024, 2048)) -> dict[str, Any]:
    """Measured fp32 peak: the best median FLOP/s of `torch.matmul` over large square matrices."""
    by_size = {n: matmul_rate(n, n, n) for n in sizes}
    return {"flops_per_s": max(by_size.values()), "by_size": by_size,
            "threads": torch.get_num_threads()}


def model_shaped(tokens: int, config: Any) -> dict[str, float]:
    """The same kernel on the shapes one batch really multiplies: the peak for those shapes."""
    d = int(config.hidden_size)
    ff = int(getattr(config, "intermediate_size", None) or 4 * d)
    return {f"[{tokens},{d}]x[{d},{ff}]": matmul_rate(tokens, d, ff),
            f"[{tokens},{d}]x[{d},{d}]": matmul_rate(tokens, d, d)}


def run(budget: Budget, data: dict[str, Path], overrides: list[str] | None = None,
        peak_sizes: tuple[int, ...] = (1024, 2048)) -> dict[str, Any]:
    """Rows 1 and 2. `overrides` replaces the MiniLM/CoNLL+AG News setup (tests use the tiny model)."""
    steps, warm = budget.overhead_steps + budget.overhead_warmup, budget.overhead_warmup
    with scratch_dir("overhead") as tmp:
        cfg = compose(Path(tmp), overrides if overrides is not None else BENCH_OVERRIDES)
        datamodule, model = build(cfg)
        initial = copy.deepcopy(model.state_dict())
        peak_before = matmul_peak(peak_sizes)
        sides: dict[str, list[dict[str, Any]]] = {"framework": [], "plain": []}
        losses: dict[str, list[list[float]]] = {"framework": [], "plain": []}
        pair = (("framework", framework_run), ("plain", plain_run))
        for r in range(budget.overhead_repeats):  # ABBA order: a drifting load cancels out
            for side, fn in pair if r % 2 == 0 else pair[::-1]:
                model.load_state_dict(initial)
                torch.manual_seed(cfg.seed)
                clock = fn(cfg, model, datamodule, steps)
                sides[side].append(clock.window(warm))
                losses[side].append(clock.losses)
        peak_after = matmul_peak(peak_sizes)
        fw = median([r["samples_per_s"] for r in sides["framework"]])
        plain = median([r["samples_per_s"] for r in sides["plain"]])
        per_repeat = [f["samples_per_s"] / p["samples_per_s"]
                      for f, p in zip(sides["framework"], sides["plain"], strict=True)]
        fm = flop_model(model)
        flops = {side: median([step_flops(r["shapes"], fm) / r["seconds"] for r in runs])
                 for side, runs in sides.items()}
        peak = max(peak_before["flops_per_s"], peak_after["flops_per_s"])
        shapes = sides["plain"][0]["shapes"]
        tokens = round(sum(b * t for b, t in shapes) / len(shapes))
        result: dict[str, Any] = {
            "batch_size": int(cfg.data.batch_size), "steps_timed": budget.overhead_steps,
            "warmup_steps": warm, "repeats": budget.overhead_repeats,
            "samples_per_s": {s: [r["samples_per_s"] for r in runs] for s, runs in sides.items()},
            "framework_samples_per_s": fw, "plain_samples_per_s": plain,
            "ratio_of_medians": fw / plain, "ratio": median(per_repeat), "ratio_per_repeat": per_repeat,
            "target_ratio": 0.95,
            "losses_repeat1": {s: v[0] for s, v in losses.items()},
            "mean_padded_tokens": tokens, "mean_padded_len": sum(t for _, t in shapes) / len(shapes),
            "flop_model": fm, "flop_formula": FLOP_FORMULA,
            "achieved_flops_per_s": flops, "matmul_peak": {"before": peak_before, "after": peak_after},
            "peak_flops_per_s": peak,
            "model_shaped_matmul": model_shaped(tokens, model.net.encoder.backbone.config),
            "efficiency": {side: value / peak for side, value in flops.items()},
            "target_efficiency": 0.5,
        }
        batches = [b for _, b in zip(range(4), datamodule.train_dataloader(), strict=False)]
        loop = ReferenceLoop(model, optimizer_cfg(cfg), 10)
        result["profile_ops"] = torch_profile(lambda: [loop.step(b) for b in batches])
        result["phases_ms"] = phase_breakdown(loop, batches)
        model.load_state_dict(initial)
        result["adamw_step_ms"] = adamw_step_ms(model)
        if result["ratio"] < 0.95:
            model.load_state_dict(initial)
            result["profile_framework"] = python_profile(
                lambda: framework_run(cfg, model, datamodule, steps))
        return result
