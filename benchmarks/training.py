"""Rows 1-2: the Lightning training step against a hand-written PyTorch loop, and FLOP efficiency;
also the plain loop, clocks and model building the other rows reuse.

Both sides train one model, reset to the same weights and seed, on the same batches and optimizer
set-up, taking turns, so the ratio measures the framework and nothing else.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn

from benchmarks.common import BENCH_OVERRIDES, Budget, alternate, compose, median, scratch_dir
from benchmarks.machine import python_profile, torch_profile
from mtst.data.store import IGNORE
from mtst.freezing.param_groups import head_and_backbone_groups
from mtst.model.flops import flop_model, step_flops
from mtst.training.optim import use_fused, warmup_linear_decay

FIT_KWARGS = {"enable_checkpointing": False, "enable_model_summary": False, "limit_val_batches": 0,
              "num_sanity_val_steps": 0, "min_epochs": 0, "max_epochs": -1}
FLOP_FORMULA = ("FLOPs per step = 6·N·B·T + 12·L·d·B·T², with B·T the padded tokens of the batch "
                "(the work the CPU actually does), N the per-token matmul parameters, L layers, "
                "d hidden width (6·N: forward 2·N + backward 4·N per token; 12·L·d·T: QKᵀ and "
                "attention·V, forward and backward)")


class ReferenceLoop:
    """The loop a user writes by hand: forward, one masked cross-entropy per task with a head,
    clip, AdamW (as `build_optimizer` sets it up), schedule."""

    def __init__(self, model: nn.Module, optimizer_cfg: dict[str, Any], total_steps: int,
                 clip: float | None = 1.0) -> None:
        cfg = dict(optimizer_cfg)
        self.model, self.clip = model, clip
        self.optimizer = torch.optim.AdamW(head_and_backbone_groups(model, cfg),
                                           betas=tuple(cfg.get("betas", (0.9, 0.999))),
                                           eps=cfg.get("eps", 1e-8),
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

    def step(self, batch: dict[str, torch.Tensor], phases: dict[str, float] | None = None) -> float:
        """One training step; `phases` (when given) adds each phase's milliseconds to its entry."""
        marks = [time.perf_counter()]
        loss = self.loss(batch, self.model(batch["input_ids"], batch["attention_mask"]))
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        marks.append(time.perf_counter())
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
        for key, a, b in zip(phases or (), marks, marks[1:], strict=False):
            phases[key] += 1000 * (b - a)  # type: ignore[index]
        return float(loss.detach())


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
        seconds = self.times[-1] - (self.times[warmup - 1] if warmup else self.start)
        shapes = self.shapes[warmup:]
        samples = sum(b for b, _ in shapes)
        return {"seconds": seconds, "samples": samples, "samples_per_s": samples / seconds,
                "shapes": shapes}


class EpochClock(Callback):
    """Seconds of every epoch. In the same process: `epoch_s` (its validation included) and
    `train_s` (to its last training batch). In a whole `train.py` run: `epochs_s`, one epoch start
    to the next, written to `path` as JSON when training ends."""

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.starts: list[float] = []
        self.epoch_s: list[float] = []
        self.train_s: list[float] = []
        self._train_end = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())
        self._train_end = self.starts[-1]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._train_end = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epoch_s.append(time.perf_counter() - self.starts[-1])
        self.train_s.append(self._train_end - self.starts[-1])

    def on_train_end(self, trainer, pl_module) -> None:
        if self.path is not None:
            ends = [*self.starts[1:], time.perf_counter()]
            self.path.write_text(json.dumps({"epochs_s": [b - a for a, b in zip(self.starts, ends,
                                                                                 strict=True)]}))


def build(cfg: Any) -> tuple[Any, Any]:
    """DataModule and model (the `MultiTaskModule`) exactly as `train.py` builds them."""
    import lightning as L

    from mtst.model.backbone import load_tokenizer
    from mtst.training import entry

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    tasks = entry.configured_tasks(cfg)
    datamodule = entry.build_datamodule(cfg, load_tokenizer(**entry.backbone_settings(cfg)),
                                        tasks)
    return datamodule, entry.build_model(cfg, tasks, datamodule.label_spaces)


def optimizer_cfg(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg.model.optimizer, resolve=True)


def fit(cfg: Any, model: Any, datamodule: Any, clock: Callback, **trainer_kwargs: Any) -> Any:
    """`Trainer.fit` on the Trainer `train.py` builds, `clock` one more callback; returns `clock`."""
    from mtst.training.entry import build_trainer

    trainer = build_trainer(cfg, **trainer_kwargs)
    trainer.callbacks.append(clock)
    trainer.fit(model, datamodule=datamodule)
    return clock


def framework_run(cfg: Any, model: Any, datamodule: Any, steps: int) -> StepClock:
    return fit(cfg, model, datamodule, StepClock(), max_steps=steps, **FIT_KWARGS)


def plain_run(cfg: Any, model: Any, datamodule: Any, steps: int) -> StepClock:
    loop = ReferenceLoop(model, optimizer_cfg(cfg), steps, cfg.trainer.get("gradient_clip_val"))
    clock = StepClock()
    model.train()
    for _, batch in zip(range(steps), datamodule.train_dataloader(), strict=False):
        clock.record(batch, loop.step(batch))
    return clock


def matmul_rate(m: int, k: int, n: int, repeats: int = 5) -> float:
    """Median FLOP/s of an fp32 [m, k] @ [k, n] product."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.matmul(a, b)
    return median([2 * m * k * n / s for s in alternate({"mm": torch.matmul}, repeats, a, b)["mm"]])


def matmul_peak(sizes: tuple[int, ...]) -> dict[str, Any]:
    """Measured fp32 peak: the best median FLOP/s of `torch.matmul` over large square matrices."""
    by_size = {n: matmul_rate(n, n, n) for n in sizes}
    return {"flops_per_s": max(by_size.values()), "by_size": by_size,
            "threads": torch.get_num_threads()}


def adamw_step_ms(model: nn.Module, repeats: int = 5) -> dict[str, Any]:
    """Median ms of one AdamW step on random gradients, per implementation, taking turns."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    flags = {"single_tensor": {"foreach": False, "fused": False},
             "foreach": {"foreach": True, "fused": False}, "fused": {"fused": True}}
    out: dict[str, Any] = {"parameters": sum(p.numel() for p in params)}
    steps = {}
    for variant, kw in flags.items():
        try:
            optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01, **kw)
            optimizer.step()  # allocate state outside the timing
            steps[variant] = optimizer.step
        except (RuntimeError, ValueError) as err:  # a torch build without the fused CPU kernel
            out[variant] = f"unavailable: {err}".splitlines()[0]
    out.update({k: 1000 * median(v) for k, v in alternate(steps, repeats).items()})
    for p in params:
        p.grad = None
    model.load_state_dict(state)
    return out


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
        rates = {s: [r["samples_per_s"] for r in runs] for s, runs in sides.items()}
        per_repeat = [f / p for f, p in zip(rates["framework"], rates["plain"], strict=True)]
        fm = flop_model(model)
        flops = {side: median([step_flops(r["shapes"], fm) / r["seconds"] for r in runs])
                 for side, runs in sides.items()}
        peak = max(peak_before["flops_per_s"], peak_after["flops_per_s"])
        shapes = sides["plain"][0]["shapes"]
        tokens = round(sum(b * t for b, t in shapes) / len(shapes))
        config = model.net.encoder.backbone.config
        d = int(config.hidden_size)
        ff = int(getattr(config, "intermediate_size", None) or 4 * d)
        result: dict[str, Any] = {
            "batch_size": int(cfg.data.batch_size), "steps_timed": budget.overhead_steps,
            "warmup_steps": warm, "repeats": budget.overhead_repeats, "samples_per_s": rates,
            "framework_samples_per_s": median(rates["framework"]),
            "plain_samples_per_s": median(rates["plain"]),
            "ratio_of_medians": median(rates["framework"]) / median(rates["plain"]),
            "ratio": median(per_repeat), "ratio_per_repeat": per_repeat, "target_ratio": 0.95,
            "losses_repeat1": {s: v[0] for s, v in losses.items()},
            "mean_padded_tokens": tokens, "mean_padded_len": sum(t for _, t in shapes) / len(shapes),
            "flop_model": fm, "flop_formula": FLOP_FORMULA, "achieved_flops_per_s": flops,
            "matmul_peak": {"before": peak_before, "after": peak_after}, "peak_flops_per_s": peak,
            # the same kernel on the shapes one batch really multiplies
            "model_shaped_matmul": {f"[{tokens},{d}]x[{d},{ff}]": matmul_rate(tokens, d, ff),
                                    f"[{tokens},{d}]x[{d},{d}]": matmul_rate(tokens, d, d)},
            "efficiency": {side: value / peak for side, value in flops.items()},
            "target_efficiency": 0.5,
        }
        batches = [b for _, b in zip(range(4), datamodule.train_dataloader(), strict=False)]
        loop = ReferenceLoop(model, optimizer_cfg(cfg), 10)
        result["profile_ops"] = torch_profile(lambda: [loop.step(b) for b in batches])
        phases = dict.fromkeys(("forward+loss", "backward", "clip", "optimizer"), 0.0)
        model.train()
        for batch in batches:
            loop.step(batch, phases)
        result["phases_ms"] = {k: v / len(batches) for k, v in phases.items()}
        model.load_state_dict(initial)
        result["adamw_step_ms"] = adamw_step_ms(model)
        if result["ratio"] < 0.95:
            model.load_state_dict(initial)
            result["profile_framework"] = python_profile(
                lambda: framework_run(cfg, model, datamodule, steps))
        return result
