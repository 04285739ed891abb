"""Checkpoint I/O: atomic writes, safe loads, and `ckpt_path=last` resolution."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mtst.errors import MtstError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same folder, then rename: a kill mid-save never leaves a
    truncated checkpoint, and the previous one stays intact."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed mid-save
            stale.unlink(missing_ok=True)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return load_checkpoint(path, map_location or "cpu")


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, map_location: str | None = "cpu") -> dict[str, Any]:
    """torch.load with `weights_only=True`: a checkpoint can hold tensors and plain data only."""
    path = Path(path)
    if not path.is_file():
        raise MtstError(f"checkpoint '{path}' does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt file, not a checkpoint, or pickled code
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MtstError(f"checkpoint '{path}' could not be loaded safely: {first}") from None


def resolve_ckpt_path(ckpt_path: str | None, log_dir: str | Path) -> str | None:
    """`last` -> the newest `checkpoints/last.ckpt` under `<log_dir>/runs`; a path must exist."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        candidates = sorted(
            Path(log_dir, "runs").glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime
        )
        if not candidates:
            raise MtstError(f"ckpt_path=last: no run under '{Path(log_dir, 'runs')}' has a last.ckpt")
        return str(candidates[-1])
    if not Path(ckpt_path).is_file():
        raise MtstError(f"checkpoint '{ckpt_path}' does not exist")
    return str(ckpt_path)
