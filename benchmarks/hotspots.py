"""Micro-benchmarks of the slow paths the profiles point at, with the candidate fixes side by side.

AdamW: the single-tensor path makes five or six separate passes over every parameter, the
11.7 M-entry word embedding included, each step; the fused CPU kernel (what
`mtst.training.optim.build_optimizer` uses by default) does one pass.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from benchmarks.common import median


def _optimizer(params: list[nn.Parameter], variant: str) -> torch.optim.Optimizer:
    flags = {"single_tensor": {"foreach": False, "fused": False},
             "foreach": {"foreach": True, "fused": False},
             "fused": {"fused": True}}[variant]
    return torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01, **flags)


def adamw_step_ms(model: nn.Module, repeats: int = 5) -> dict[str, Any]:
    """Median milliseconds of one AdamW step over the model's parameters, per implementation,
    on random gradients; the variants alternate so machine load hits them alike."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    variants = ("single_tensor", "foreach", "fused")
    optimizers = {}
    for v in variants:
        try:
            optimizers[v] = _optimizer(params, v)
            optimizers[v].step()  # allocate state outside the timing
        except (RuntimeError, ValueError) as err:  # a torch build without the fused CPU kernel
            optimizers[v] = f"unavailable: {err}".splitlines()[0]
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(repeats):
        for v in variants:
            opt = optimizers[v]
            if isinstance(opt, str):
                continue
            start = time.perf_counter()
            opt.step()
            times[v].append(1000 * (time.perf_counter() - start))
    for p in params:
        p.grad = None
    model.load_state_dict(state)
    out: dict[str, Any] = {"parameters": sum(p.numel() for p in params)}
    for v in variants:
        out[v] = optimizers[v] if isinstance(optimizers[v], str) else median(times[v])
    return out


def phase_breakdown(loop: Any, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Mean milliseconds per phase of the plain training step over `batches`."""
    phases = {"forward+loss": 0.0, "backward": 0.0, "clip": 0.0, "optimizer": 0.0}
    model = loop.model
    model.train()
    for batch in batches:
        t0 = time.perf_counter()
        loss = loop.loss(batch, model(batch["input_ids"], batch["attention_mask"]))
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if loop.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), loop.clip)
        t3 = time.perf_counter()
        loop.optimizer.step()
        loop.scheduler.step()
        loop.optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        for key, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            phases[key] += 1000 * seconds / len(batches)
    return phases
