"""Shared pieces of the reliability tests: CLI runs, fault-injection callbacks, tiny datasets.

The callbacks here are instantiated by Hydra inside `python train.py` subprocesses
(`+callbacks.fault._target_=tests.reliability.helpers.SignalAtStep`), so they must stay
importable from the repository root.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from tests.conftest import force_tag

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"

# subprocess twin of tests.conftest.TINY_TRAIN (plus quiet console, no lr monitor)
CLI_TINY = [
    "backbone=gpt_neo_tiny",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "~callbacks.rich_progress_bar",
    "~callbacks.model_summary",
    "~callbacks.lr_monitor",
    "data.batch_size=8",
]
# 2 epochs x 3 steps, with validation and test (subprocess runs compared metric by metric)
CLI_RESUME = CLI_TINY + [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]


def run_cli(script: str, args: list[str], timeout: int = 300, **kwargs: Any) -> subprocess.CompletedProcess:
    """`python <script> args` from the repository root, offline, with captured output."""
    return run_python([str(ROOT / script), *args], timeout, **kwargs)


def run_python(args: list[str], timeout: int = 300, **kwargs: Any) -> subprocess.CompletedProcess:
    """`python args` (a script, `-c CODE`, `-m module`) as run_cli runs it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "MTST_ROOT": str(ROOT)}
    env.pop("MTST_TRACEBACK", None)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


class SignalAtStep(Callback):
    """Sends signal `sig` to its own process when training reaches optimizer step `step`."""

    def __init__(self, step: int, sig: str = "SIGKILL") -> None:
        self.step, self.signum = int(step), getattr(signal, sig)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class ForceTag(Callback):
    """Before every validation, make NER tag `tag` win on every sub-token (known predictions)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def on_validation_start(self, trainer, pl_module) -> None:
        force_tag(pl_module.net, self.tag)


class PoisonWeightAtStep(Callback):
    """After optimizer step `step`, sets one element of parameter `name` to NaN (a weight gone
    bad for any reason); runs before the checkpoint callbacks, which Lightning orders last."""

    def __init__(self, step: int, name: str = "net.heads.topic.out.weight") -> None:
        self.step, self.name = int(step), name

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                dict(pl_module.named_parameters())[self.name].view(-1)[0] = float("nan")


class Crash(RuntimeError):
    """The injected failure of `RaiseAtStep`."""


class RaiseAtStep(Callback):
    """In-process stand-in for a crash: raises when training reaches optimizer step `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise Crash(f"crash at step {self.step}")


def sample_records(split: str = "train", n: int | None = None) -> list[dict[str, Any]]:
    lines = (SAMPLE / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:n]]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


def only_task(record: dict[str, Any], task: str) -> dict[str, Any]:
    """The record with the labels of one default task only ("topic" or "ner")."""
    if task not in ("topic", "ner"):
        raise ValueError(f"only_task: {task!r} is not a default task")
    keep = {"tokens", "ner_tags"} if task == "ner" else {"text", "label"}
    out = {k: v for k, v in record.items() if k in keep or k == "id"}
    if task == "topic" and "text" not in out:
        out["text"] = " ".join(record["tokens"])
    return out


def interleaved_partial(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Even records keep NER labels only, odd records both tasks: under 2-process DDP (examples
    r, r+2, ... per rank) rank 0 sees no topic label, and both ranks see entities."""
    return [only_task(r, "ner") if i % 2 == 0 else r for i, r in enumerate(records)]


def task_files(task: str, train: object = None, val: object = None, test: object = None) -> list[str]:
    """Overrides pointing task `task`'s splits at files (a path or a list of paths; None keeps
    the configured files, "null" clears them)."""
    out = []
    for split, files in (("train", train), ("val", val), ("test", test)):
        if files is None:
            continue
        shown = files if files == "null" else "[" + ",".join(map(str, _as_list(files))) + "]"
        out.append(f"tasks.{task}.{split}_files={shown}")
    return out


def default_task_files(train: object = None, val: object = None, test: object = None) -> list[str]:
    """`task_files` for both default tasks (topic and ner read the same files)."""
    return task_files("topic", train, val, test) + task_files("ner", train, val, test)


def _as_list(files: object) -> list[object]:
    return list(files) if isinstance(files, (list, tuple)) else [files]


# a third task, `mood`: a sentence task on the same field as topic, its classes inferred from
# the train files; checks that run with more tasks than the two defaults add it
MOOD_TASK = [
    "+tasks.mood.type=sentence_classification",
    "+tasks.mood.field=label",
    "+tasks.mood.train_files=${tasks.topic.train_files}",
    "+tasks.mood.val_files=${tasks.topic.val_files}",
    "+tasks.mood.test_files=${tasks.topic.test_files}",
]


def checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def metrics_of(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())["metrics"]


def run_folders(log_dir: Path) -> list[Path]:
    return sorted(p for p in (log_dir / "runs").iterdir() if p.is_dir())
