"""Checkpoint I/O: atomic writes, safe loads, and `ckpt_path=last` resolution."""

from __future__ import annotations

import io
import os
import pickletools
import re
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mtst.checkpoints.digests import DigestMemo
from mtst.checkpoints.tensor_store import (
    MIN_BYTES,
    TENSOR_FOLDER,
    MissingTensorFile,
    ReferenceCache,
    collect_garbage,
    load_tensors,
    store_tensors,
)
from mtst.errors import MtstError
from mtst.files import atomic_file

# globals a PyTorch checkpoint pickles legitimately (torch.load's allowlist is a subset of these)
SAFE_GLOBALS = ("torch.", "collections.OrderedDict")
PICKLE_SCAN_BYTES = 64 << 20


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints that are atomic and do not rewrite unchanged weights.

    Every file is written to a temporary file in the same folder, fsynced and renamed: a kill
    mid-save never leaves a truncated checkpoint, and the previous one stays intact. Large
    state-dict tensors go to content-addressed files in `tensors/` next to the checkpoint
    (see `mtst.checkpoints.tensor_store`), written before the checkpoint that refers to them and
    only when not there yet; files no checkpoint refers to any more are then deleted.
    `bytes_written` counts every byte this instance wrote (checkpoints and tensor files).
    """

    def __init__(self, min_bytes: int = MIN_BYTES) -> None:
        super().__init__()
        self.min_bytes = min_bytes
        self.bytes_written = 0
        self.memo = DigestMemo()
        self.references = ReferenceCache()

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = path.parent / TENSOR_FOLDER
        stored, written = store_tensors(checkpoint, folder, _write_bytes, self.min_bytes, self.memo)
        if written:
            _fsync_dir(folder)  # the new tensor files are durable before anything refers to them
        _durable_write(path, lambda handle: torch.save(stored, handle))
        _fsync_dir(path.parent)
        self.references.remember(path, stored)
        self.bytes_written += written + path.stat().st_size
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed mid-save
            stale.unlink(missing_ok=True)
        if folder.is_dir():
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
            collect_garbage(path.parent, read=self.references)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return load_checkpoint(path, map_location or "cpu")

    def remove_checkpoint(self, path) -> None:
        """ModelCheckpoint removes a superseded top-k file: its tensor files may go with it."""
        super().remove_checkpoint(path)
        collect_garbage(Path(path).parent, read=self.references)


def _durable_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """`atomic_file`, fsynced before the rename: after a crash the file is whole or absent."""
    with atomic_file(path) as tmp, tmp.open("wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def _write_bytes(path: Path, data: bytes) -> None:
    _durable_write(path, lambda handle: handle.write(data))


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
    """torch.load with `weights_only=True`: a checkpoint can hold tensors and plain data only;
    the tensors it refers to (`tensors/` next to it) are read back from their safetensors files.

    A file it refuses gives one line naming the file and why (truncated, not a PyTorch file, or
    the code it would run); torch's warnings about such a file are dropped with it, since the
    error says all there is to say. Warnings from a file that loads are passed on.
    """
    path = Path(path)
    if not path.is_file():
        raise MtstError(f"checkpoint '{path}' does not exist")
    for attempt in range(2):
        before = _identity(path)
        with warnings.catch_warnings(record=True) as caught:
            try:
                checkpoint = torch.load(path, map_location=map_location, weights_only=True)
            except Exception as err:  # corrupt file, not a checkpoint, or pickled code
                raise _refusal(path, err) from None
        try:
            checkpoint = load_tensors(checkpoint, path, map_location)
        except MissingTensorFile:
            # a run still training replaced this checkpoint and collected its old tensor files
            # between the two reads: the new file is complete, read it again
            if attempt or _identity(path) == before:
                raise
            continue
        break
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno, source=warning.source)
    return checkpoint


def _identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _refusal(path: Path, err: BaseException) -> MtstError:
    """The one-line error for a file torch.load(weights_only=True) refused."""
    code = _blocked_global(str(err)) or _first_global(path)
    if code:
        return MtstError(f"{path}: could not be loaded safely: it holds code ({code})")
    return MtstError(f"{path}: not an mtst checkpoint ({_what_it_is(path, err)})")


def _blocked_global(message: str) -> str | None:
    """torch names the global it refused: "... unsupported GLOBAL posix.system whose ..."."""
    match = re.search(r"GLOBAL ([\w.]+)", message)
    return match.group(1) if match else None


def _first_global(path: Path) -> str | None:
    """The first global a pickle would import that is not torch's own, found by reading the
    opcodes (pickletools never executes them): torch stops at the first opcode its safe
    unpickler lacks, often before reaching the global, so its message cannot name it."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(name) if name else b""
        else:
            with path.open("rb") as handle:
                data = handle.read(PICKLE_SCAN_BYTES)
    except (OSError, zipfile.BadZipFile):
        return None
    stream = io.BytesIO(data)
    while stream.tell() < len(data):  # the legacy format is several pickles in a row
        found = _scan_pickle(stream)
        if found is not False:
            return found
    return None


def _scan_pickle(stream: io.BytesIO) -> str | None | bool:
    """The first non-torch global of one pickle; None if the bytes are not a pickle; False if
    the pickle ended without one."""
    memo: dict[int, str | None] = {}
    below = top = None  # the two values on top of the stack, where they are strings
    try:
        for op, arg, _ in pickletools.genops(stream):
            if op.name == "MEMOIZE":
                memo[len(memo)] = top
                continue
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = top
                continue
            name = None
            if op.name in ("GLOBAL", "INST"):
                name = str(arg).replace(" ", ".")
            elif op.name == "STACK_GLOBAL":
                name = f"{below}.{top}"
            if name and not name.startswith(SAFE_GLOBALS):
                return name
            if op.stack_after:
                value = memo.get(int(arg)) if op.name in ("GET", "BINGET", "LONG_BINGET") else (
                    arg if isinstance(arg, str) and op.stack_after == [pickletools.pyunicode]
                    else None)
                below, top = top, value
    except (ValueError, TypeError, IndexError):
        return None
    return False


def _what_it_is(path: Path, err: BaseException) -> str:
    with path.open("rb") as handle:
        head = handle.read(4)
    if not head:
        return "empty file"
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            return f"truncated or corrupt PyTorch file: {_torch_reason(err)}"
        return f"torch.load(weights_only=True) cannot read it: {_torch_reason(err)}"
    if head[0] == 0x80:  # pickle protocol 2+
        return "a pickle torch.save did not write"
    return "not a PyTorch file"


def _torch_reason(err: BaseException) -> str:
    """The line of torch's message that says what is wrong, without its advice paragraphs."""
    advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(advice)]
    return (reasons or lines or [type(err).__name__])[0].split(". ")[0].rstrip(".")


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


def check_same_model(state_dict: dict[str, Any], expected: dict[str, torch.Tensor],
                     ckpt_path: str | None) -> None:
    """A resumed run must build the model its checkpoint saved (same tasks, label counts,
    weighting parameters): otherwise one line naming what differs, where torch's strict
    `load_state_dict` would end the run in a traceback listing every key."""
    saved_tasks, run_tasks = _head_tasks(state_dict), _head_tasks(expected)
    where = f"ckpt_path={ckpt_path}" if ckpt_path else "the checkpoint"
    advice = "resume with the settings it was trained with, or start a new run without ckpt_path"
    if saved_tasks != run_tasks:
        raise MtstError(f"{where}: it was trained with tasks {', '.join(saved_tasks) or 'none'}, "
                        f"this run has {', '.join(run_tasks) or 'none'}; {advice}")
    for name in sorted(state_dict.keys() | expected.keys()):
        saved, here = state_dict.get(name), expected.get(name)
        if saved is None or here is None or tuple(saved.shape) != tuple(here.shape):
            shapes = [("absent" if t is None else f"shape {tuple(t.shape)}") for t in (saved, here)]
            raise MtstError(f"{where}: weight '{name}' is {shapes[0]} there and {shapes[1]} in "
                            f"this run's model; {advice}")


def _head_tasks(state: dict[str, Any]) -> list[str]:
    """The task names of the heads in a module's state dict (`net.heads.<task>.…`)."""
    return sorted({key.split(".")[2] for key in state if key.startswith("net.heads.")})
