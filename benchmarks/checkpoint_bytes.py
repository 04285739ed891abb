"""Row 16: bytes a training run writes to its checkpoints per epoch, before and after the
content-addressed tensor files (`mtst.checkpoints.tensor_store`).

Whole `train` runs of MiniLM (`ner` alone on the first CoNLL-2003 train sentences, the default
callbacks: `best.ckpt`, `last.ckpt` and the step checkpoint) under `freeze=backbone`, `bitfit`
and `none`. Every save of the run goes through a recording `AtomicCheckpointIO`: "after" is
what it wrote (the checkpoint file and the tensor files that were not there yet), "before" the
size of a plain `torch.save` of the same checkpoint dict (what every save wrote until now),
and the save times compare `AtomicCheckpointIO.save_checkpoint` with a `torch.save` of that
dict to a file in the same folder, fsynced (the old write). Epoch 1 writes the frozen weights
once; the figure for the later epochs is their mean.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Budget, scratch_dir

FREEZES = ("backbone", "bitfit", "none")
MB = 1e6


def recording_io() -> type:
    from mtst.checkpoints.file_io import AtomicCheckpointIO

    class RecordingIO(AtomicCheckpointIO):
        saves: list[dict[str, Any]] = []

        def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            plain = Path(path).with_name(f".plain-{Path(path).name}")
            plain.parent.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            with plain.open("wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            plain_s = time.perf_counter() - start
            plain.unlink()
            before, start = self.bytes_written, time.perf_counter()
            super().save_checkpoint(checkpoint, path, storage_options)
            RecordingIO.saves.append({
                "epoch": int(checkpoint["epoch"]), "file": Path(path).name,
                "before_bytes": buffer.getbuffer().nbytes, "after_bytes": self.bytes_written - before,
                "before_s": plain_s, "after_s": time.perf_counter() - start})

    return RecordingIO


def run_freeze(freeze: str, folder: Path, conll: Path, examples: int, epochs: int,
               backbone: str = "minilm") -> dict[str, Any]:
    from unittest import mock

    from benchmarks.common import compose
    from mtst.training.pipeline import train

    overrides = [
        f"backbone={backbone}", "data=conll_agnews", f"freeze={freeze}", "~tasks.topic",
        f"tasks.ner.train_files=[{{path:'{conll / 'train.txt'}',stop:{examples}}}]",
        f"tasks.ner.val_files=[{{path:'{conll / 'valid.txt'}',stop:{max(1, examples // 8)}}}]",
        "tasks.ner.test_files=null", "run_test=false", f"trainer.max_epochs={epochs}",
        "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "~logger",
        "++trainer.enable_model_summary=false",
        "~callbacks.rich_progress_bar", "~callbacks.model_summary", "~callbacks.lr_monitor",
    ]
    recorder = recording_io()
    recorder.saves = []
    with mock.patch("mtst.training.pipeline.AtomicCheckpointIO", recorder):
        train(compose(folder, overrides))
    saves = recorder.saves
    per_epoch = []
    for epoch in range(epochs):
        mine = [s for s in saves if s["epoch"] == epoch]
        per_epoch.append({key: sum(s[key] for s in mine) for key in
                          ("before_bytes", "after_bytes", "before_s", "after_s")} | {"saves": len(mine)})
    later = per_epoch[1:] or per_epoch
    checkpoints = folder / "checkpoints"
    on_disk = sum(p.stat().st_size for p in checkpoints.rglob("*") if p.is_file())
    return {"per_epoch": per_epoch,
            "before_first_epoch_bytes": per_epoch[0]["before_bytes"],
            "before_later_epoch_bytes": sum(e["before_bytes"] for e in later) / len(later),
            "after_first_epoch_bytes": per_epoch[0]["after_bytes"],
            "after_later_epoch_bytes": sum(e["after_bytes"] for e in later) / len(later),
            "before_later_epoch_s": sum(e["before_s"] for e in later) / len(later),
            "after_later_epoch_s": sum(e["after_s"] for e in later) / len(later),
            "checkpoint_folder_bytes": on_disk,
            "tensor_files": len(list((checkpoints / "tensors").glob("*.safetensors")))}


def run(budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    examples, epochs = (64, 2) if budget.name == "quick" else (256, 3)
    rows = {}
    with scratch_dir("checkpoint-bytes") as tmp:
        for freeze in FREEZES:
            rows[freeze] = run_freeze(freeze, Path(tmp) / freeze, data["conll2003"], examples, epochs)
    return {"examples": examples, "epochs": epochs, "rows": rows}


def _mb(value: float) -> str:
    return f"{value / MB:.1f}" if value >= 10 * MB else f"{value / MB:.2f}"


def summary_rows(section: dict[str, Any]) -> list[list[Any]]:
    rows = section["rows"]
    shown = "; ".join(f"{name} {_mb(r['before_later_epoch_bytes'])} / "
                      f"{_mb(r['after_later_epoch_bytes'])} MB" for name, r in rows.items())
    return [["16", "checkpoint bytes written per epoch, before / after (backbone, bitfit, none)",
             shown, "—", "—"]]


def render(section: dict[str, Any], table: Any = None) -> str:
    lines = [f"MiniLM, `ner` alone on the first {section['examples']} CoNLL-2003 train sentences, "
             f"{section['epochs']} epochs, default checkpoint callbacks (`best.ckpt`, `last.ckpt`, "
             "step checkpoint). Before: a plain `torch.save` of each checkpoint dict; after: the "
             "checkpoint file plus the tensor files written for it (epoch 1 writes the frozen "
             "weights once). Save time: a fsynced `torch.save` against `AtomicCheckpointIO`, "
             "later epochs.", "",
             "| `freeze` | saves / epoch | MB written in epoch 1, before → after | MB per later "
             "epoch, before → after | before / after, later epochs | save s per later epoch, "
             "before → after | checkpoints/ on disk, MB (tensor files) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in section["rows"].items():
        after = r["after_later_epoch_bytes"]
        ratio = r["before_later_epoch_bytes"] / after if after else float("inf")
        saves = "/".join(str(e["saves"]) for e in r["per_epoch"])
        lines.append(
            f"| {name} | {saves} | {_mb(r['before_first_epoch_bytes'])} → "
            f"{_mb(r['after_first_epoch_bytes'])} | {_mb(r['before_later_epoch_bytes'])} → "
            f"{_mb(after)} | {ratio:.0f}× | "
            f"{r['before_later_epoch_s']:.2f} → {r['after_later_epoch_s']:.2f} | "
            f"{_mb(r['checkpoint_folder_bytes'])} ({r['tensor_files']}) |")
    return "\n".join(lines)
