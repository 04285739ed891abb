"""The device check's FSDP row: a few `train.py trainer=fsdp` steps of GPT-Neo 1.3B's
architecture with random weights (`backbone=gpt_neo_1_3b_random`, nothing downloaded) on one GPU.

The run is the real pipeline in a child process (sample corpus, token-budget batches, bf16-mixed,
each GPTNeoBlock one shard unit with activation checkpointing); checkpoint writing and the test
pass are off (a sharded 1.3B checkpoint with its AdamW states is about 16 GB). `StepProbe`, added
as a Hydra callback, writes what the child measured: step times, padded tokens per step, peak GPU
memory and the blocks FSDP wrapped. The `--cpu` dry run takes the same path with the tiny
GPT-Neo under `trainer=fsdp_cpu` in one process (gloo).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from benchmarks.common import ROOT, median

GPU_RUN = ["trainer=fsdp", "trainer.devices=1", "backbone=gpt_neo_1_3b_random"]
CPU_RUN = ["trainer=fsdp_cpu", "trainer.devices=1", "backbone=gpt_neo_tiny"]


class StepProbe(Callback):
    """Times every optimizer step (synchronised on a GPU) and writes the figures at the end."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.step_s: list[float] = []
        self.tokens: list[int] = []
        self._start = 0.0

    def _sync(self, module: Any) -> None:
        import torch

        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(pl_module)
        self.step_s.append(time.perf_counter() - self._start)
        self.tokens.append(int(batch["input_ids"].numel()))

    def on_train_end(self, trainer, pl_module) -> None:
        import torch

        cuda = pl_module.device.type == "cuda"
        strategy = trainer.strategy
        result = {
            "strategy": type(strategy).__name__, "world_size": trainer.world_size,
            "precision": str(trainer.precision),
            "wrapped_blocks": [c.__name__ for c in getattr(strategy, "wrapped_blocks", ())],
            "checkpoint_activations": bool(getattr(strategy, "checkpoint_activations", False)),
            "step_s": self.step_s, "tokens": self.tokens,
            "peak_memory_mib": torch.cuda.max_memory_allocated(pl_module.device) / 2**20 if cuda else None,
        }
        if trainer.is_global_zero:
            Path(self.path).write_text(json.dumps(result), encoding="utf-8")


def fsdp_row(cpu: bool, steps: int) -> dict[str, Any]:
    """`train.py` under FSDP for `steps` optimizer steps; the figures of the steps after the first."""
    run = CPU_RUN if cpu else GPU_RUN
    with tempfile.TemporaryDirectory(prefix="mtst-device-fsdp-") as out:
        probe = Path(out) / "probe.json"
        args = [sys.executable, str(ROOT / "train.py"), "experiment=quickstart", *run,
                "data.max_tokens=1024", "trainer.max_epochs=1", f"trainer.max_steps={steps}",
                "trainer.limit_val_batches=0", "run_test=false", "++trainer.enable_checkpointing=false",
                "~callbacks.model_checkpoint", "~callbacks.step_checkpoint",
                "~callbacks.rich_progress_bar", "~callbacks.model_summary", "~callbacks.lr_monitor",
                "trainer.enable_progress_bar=false", "~logger",
                "+callbacks.probe._target_=benchmarks.device_fsdp.StepProbe",
                f"+callbacks.probe.path={probe}", f"paths.log_dir={out}"]
        started = time.perf_counter()
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=420,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        seconds = time.perf_counter() - started
        ok = proc.returncode == 0 and probe.is_file()
        row: dict[str, Any] = {"backbone": run[-1].split("=", 1)[1],
                               "command": "python train.py " + " ".join(args[2:-3]),
                               "returncode": proc.returncode, "seconds": seconds, "ok": ok}
        if not ok:
            row["error"] = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
            return row
        probe_figures = json.loads(probe.read_text(encoding="utf-8"))
    timed = list(zip(probe_figures["step_s"], probe_figures["tokens"], strict=True))[1:] or \
        list(zip(probe_figures["step_s"], probe_figures["tokens"], strict=True))
    step = median([s for s, _ in timed])
    row.update(probe_figures)
    row.update({"median_step_s": step, "padded_tokens_per_s": sum(t for _, t in timed) /
                sum(s for s, _ in timed)})
    return row


def render_rows(row: dict[str, Any] | None) -> list[str]:
    """The FSDP part of the device-check section."""
    if not row:
        return []
    lines = ["", "FSDP (`trainer=fsdp` on one device: the sharding, bf16 and activation-"
             "checkpointing path, not a multi-GPU speed-up), `train.py` on the sample corpus with "
             f"`backbone={row['backbone']}` (random weights):", ""]
    if not row["ok"]:
        return lines + [f"**failed** (exit {row['returncode']}): {row.get('error', '')}; "
                        f"command `{row['command']}`"]
    peak = row["peak_memory_mib"]
    lines += ["| steps | median step, s | padded tokens/s | peak GPU memory (MiB) | shard units | "
              "activation checkpointing | precision | wall s |", "|---:|---:|---:|---:|---|---|---|---:|",
              f"| {len(row['step_s'])} | {row['median_step_s']:.3f} | "
              f"{row['padded_tokens_per_s']:,.0f} | {'—' if peak is None else f'{peak:,.0f}'} | "
              f"{', '.join(row['wrapped_blocks'])} | {'yes' if row['checkpoint_activations'] else 'no'} | "
              f"{row['precision']} | {row['seconds']:.0f} |", "", f"Command: `{row['command']}`."]
    return lines
