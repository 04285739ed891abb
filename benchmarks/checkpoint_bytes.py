"""Row 16: bytes a training run writes to its checkpoints per epoch, before and after the
content-addressed tensor files (`mtst.checkpoints.tensor_store`).

Every save of whole `train` runs goes through a recording `AtomicCheckpointIO`: "after" is what it
wrote, "before" the size of a plain `torch.save` of the same dict, timed against a fsynced one.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import QUIET_CALLBACKS, Budget, compose, conll_subset, scratch_dir

FREEZES = ("backbone", "bitfit", "none")
KEYS = ("before_bytes", "after_bytes", "before_s", "after_s")


def recording_io(saves: list[dict[str, Any]]) -> type:
    from mtst.checkpoints.file_io import AtomicCheckpointIO

    class RecordingIO(AtomicCheckpointIO):
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
            saves.append({"epoch": int(checkpoint["epoch"]), "before_bytes": buffer.getbuffer().nbytes,
                          "after_bytes": self.bytes_written - before, "before_s": plain_s,
                          "after_s": time.perf_counter() - start})

    return RecordingIO


def run_freeze(freeze: str, folder: Path, conll: Path, examples: int, epochs: int,
               backbone: str = "minilm") -> dict[str, Any]:
    from unittest import mock

    from mtst.training.entry import train

    saves: list[dict[str, Any]] = []
    with mock.patch("mtst.training.entry.AtomicCheckpointIO", recording_io(saves)):
        train(compose(folder, [f"backbone={backbone}", "data=conll_agnews", f"freeze={freeze}",
                               *conll_subset(conll, examples), "run_test=false",
                               f"trainer.max_epochs={epochs}", *QUIET_CALLBACKS, "~logger",
                               "++trainer.enable_model_summary=false", "~callbacks.lr_monitor"]))
    per_epoch = [{**{k: sum(s[k] for s in saves if s["epoch"] == e) for k in KEYS},
                  "saves": sum(s["epoch"] == e for s in saves)} for e in range(epochs)]
    later = per_epoch[1:] or per_epoch
    checkpoints = folder / "checkpoints"
    return {"per_epoch": per_epoch,
            **{f"{side}_first_epoch_bytes": per_epoch[0][f"{side}_bytes"] for side in ("before", "after")},
            **{f"{side}_later_epoch_{unit}": sum(e[f"{side}_{unit}"] for e in later) / len(later)
               for side in ("before", "after") for unit in ("bytes", "s")},
            "checkpoint_folder_bytes": sum(p.stat().st_size for p in checkpoints.rglob("*")
                                           if p.is_file()),
            "tensor_files": len(list((checkpoints / "tensors").glob("*.safetensors")))}


def run(budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    examples, epochs = (64, 2) if budget.name == "quick" else (256, 3)
    with scratch_dir("checkpoint-bytes") as tmp:
        rows = {freeze: run_freeze(freeze, Path(tmp) / freeze, data["conll2003"], examples, epochs)
                for freeze in FREEZES}
    return {"examples": examples, "epochs": epochs, "rows": rows}
