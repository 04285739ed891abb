"""Content-addressed tensor files next to training checkpoints.

A checkpoint written twice per epoch used to hold the whole state dict each time, although with
a frozen backbone (`freeze=backbone`, `bitfit`, `lora`) all but the heads are the same bytes
every time. Here every large state-dict tensor is written once, to
``<checkpoint folder>/tensors/<sha256>.safetensors`` (the hash of its dtype, shape and bytes),
and the checkpoint keeps a reference instead; a tensor that is already there is not written
again. Checkpoints in one folder share the files; a file no checkpoint of the folder refers to
any more is deleted (`collect_garbage`), so `freeze=none`, where every tensor changes, keeps
no more than the checkpoints themselves hold.

The checkpoint stays a `torch.save` file of plain data (loaded with `weights_only=True`); the
tensor files are safetensors (no pickle), checked against their name when read.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from mtst.checkpoints.digests import DigestMemo, content_hash
from mtst.errors import MtstError, first_line

log = logging.getLogger("mtst")

TENSOR_FOLDER = "tensors"
REFS_KEY = "mtst_tensors"
FORMAT = 1
MIN_BYTES = 64 << 10  # smaller tensors (biases, norms, small heads) stay inside the checkpoint
TENSOR_NAME = "tensor"  # the one entry of each safetensors file
DIGEST = re.compile(r"[0-9a-f]{64}")


class MissingTensorFile(MtstError):
    """A checkpoint refers to a tensor file that is not next to it (copied alone, or collected)."""


def _storable(value: Any, min_bytes: int) -> bool:
    """Plain dense tensors of `min_bytes` or more (not meta, quantized or subclassed ones)."""
    return (type(value) in (torch.Tensor, torch.nn.Parameter) and value.layout == torch.strided
            and not value.is_meta and not value.is_quantized and value.dim() > 0
            and value.numel() * value.element_size() >= min_bytes)


def store_tensors(checkpoint: dict[str, Any], folder: Path, write: Callable[[Path, bytes], None],
                  min_bytes: int = MIN_BYTES, memo: DigestMemo | None = None
                  ) -> tuple[dict[str, Any], int]:
    """The checkpoint to save (a shallow copy whose state dict keeps only small tensors, plus
    the references) and the bytes of tensor files written now. Each new file goes through
    `write` (atomic and durable): the caller saves the checkpoint only after this returns, so a
    saved checkpoint never refers to a file that is missing or half-written.

    The backbone's config and tokenizer files (`checkpoint["mtst"]["files"]`, the same bytes in
    every checkpoint of a run) are stored the same way, as uint8 tensors. `memo` (one per run)
    spares hashing tensors unchanged since an earlier save; `checkpoint["mtst"]["trained"]`
    (the parameters training when it was saved) tells it which tensors no optimizer writes."""
    from safetensors.torch import save

    written = 0
    trained = _saved_trainable_names(checkpoint)

    def store(name: str, tensor: torch.Tensor, frozen: bool = False) -> str:
        nonlocal written
        digest = memo.digest(name, tensor, frozen) if memo is not None else content_hash(tensor)
        tensor = tensor.detach().cpu().contiguous()
        file = folder / f"{digest}.safetensors"
        if not file.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            data = save({TENSOR_NAME: tensor})
            write(file, data)
            written += len(data)
        return digest

    saved = dict(checkpoint)
    refs: dict[str, Any] = {"format": FORMAT, "folder": folder.name, "keys": [], "tensors": {}}
    state = checkpoint.get("state_dict")
    if isinstance(state, Mapping):
        refs["keys"] = list(state)
        refs["tensors"] = {key: store(key, value, trained is not None and key not in trained)
                           for key, value in state.items() if _storable(value, min_bytes)}
        saved["state_dict"] = {k: v for k, v in state.items() if k not in refs["tensors"]}
    files = _backbone_files(checkpoint)
    if files:
        refs["files"] = {name: store(f"files/{name}",
                                     torch.frombuffer(bytearray(content), dtype=torch.uint8))
                         for name, content in files.items()
                         if isinstance(content, bytes) and len(content) >= min_bytes}
        saved["mtst"] = {**checkpoint["mtst"],
                         "files": {k: v for k, v in files.items() if k not in refs["files"]}}
    if not refs["tensors"] and not refs.get("files"):
        return checkpoint, 0
    saved[REFS_KEY] = refs
    return saved, written


def _saved_trainable_names(checkpoint: Mapping[str, Any]) -> set[str] | None:
    """State-dict names of the parameters that were training at the save; None when the
    checkpoint does not say (then every tensor may have changed)."""
    saved = checkpoint.get("mtst")
    names = saved.get("trained") if isinstance(saved, Mapping) else None
    return set(names) if isinstance(names, list | tuple) else None


def _backbone_files(checkpoint: Mapping[str, Any]) -> Mapping[str, Any] | None:
    saved = checkpoint.get("mtst")
    files = saved.get("files") if isinstance(saved, Mapping) else None
    return files if isinstance(files, Mapping) else None


def _references(checkpoint: Mapping[str, Any], where: Path) -> dict[str, Any] | None:
    """The checkpoint's reference entry, checked: a hostile one cannot name a path outside the
    tensor folder (digests are 64 hex digits, the folder one plain name)."""
    refs = checkpoint.get(REFS_KEY)
    if refs is None:
        return None
    try:
        if refs["format"] > FORMAT:
            raise MtstError(f"{where}: written by a newer mtst (tensor format {refs['format']}); "
                            "upgrade mtst to load it")
        folder, keys, tensors = refs["folder"], list(refs["keys"]), dict(refs["tensors"])
        files = dict(refs.get("files") or {})
        digests = [*tensors.values(), *files.values()]
        ok = (isinstance(folder, str) and re.fullmatch(r"[\w.-]+", folder) and folder not in (".", "..")
              and all(isinstance(d, str) and DIGEST.fullmatch(d) for d in digests)
              and set(tensors) <= set(keys) and all(isinstance(n, str) for n in files)
              and (not files or _backbone_files(checkpoint) is not None))
    except (KeyError, TypeError, AttributeError) as err:
        raise MtstError(f"{where}: not an mtst checkpoint (malformed '{REFS_KEY}' entry: "
                        f"{first_line(err)})") from None
    if not ok:
        raise MtstError(f"{where}: not an mtst checkpoint (malformed '{REFS_KEY}' entry)")
    return {"folder": folder, "keys": keys, "tensors": tensors, "files": files}


def load_tensors(checkpoint: dict[str, Any], path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint with every referenced tensor read back into its state dict (in the saved
    key order) and every referenced backbone file into `mtst.files`, as if it had been saved
    whole; one line naming the file when one is missing, unreadable or not what its name says."""
    refs = _references(checkpoint, path)
    if refs is None:
        return checkpoint
    from safetensors.torch import load_file

    folder = path.parent / refs["folder"]
    loaded: dict[str, torch.Tensor] = {}
    for digest in dict.fromkeys([*refs["tensors"].values(), *refs["files"].values()]):
        file = folder / f"{digest}.safetensors"
        if not file.is_file():
            raise MissingTensorFile(
                f"{path}: its weights are in {file}, which is missing (a checkpoint refers to "
                f"the {refs['folder']}/ folder next to it: copy both, or use `mtst export` for "
                "a self-contained model)")
        try:
            tensor = load_file(str(file))[TENSOR_NAME]
        except Exception as err:  # truncated, corrupt or foreign; safetensors never runs code
            raise MtstError(f"{file}: not a tensor file of {path} ({first_line(err)})") from None
        if content_hash(tensor) != digest:
            raise MtstError(f"{file}: its content does not match its name (corrupt); "
                            f"{path} cannot be loaded")
        loaded[digest] = tensor
    restored = {k: v for k, v in checkpoint.items() if k != REFS_KEY}
    if refs["keys"]:
        state = checkpoint.get("state_dict") or {}
        move = isinstance(map_location, (str, torch.device))
        try:
            restored["state_dict"] = {
                key: (loaded[refs["tensors"][key]].to(map_location) if move
                      else loaded[refs["tensors"][key]]) if key in refs["tensors"] else state[key]
                for key in refs["keys"]}
        except KeyError as err:
            raise MtstError(f"{path}: not an mtst checkpoint (state dict entry {err} is "
                            "neither inside nor referenced)") from None
    if refs["files"]:
        files = {**_backbone_files(checkpoint),
                 **{name: loaded[d].numpy().tobytes() for name, d in refs["files"].items()}}
        restored["mtst"] = {**checkpoint["mtst"], "files": files}
    return restored


def referenced_digests(path: Path) -> set[str] | None:
    """The tensor files a checkpoint refers to (none for a self-contained one); None when the
    file cannot be read safely (then nothing in its folder may be collected)."""
    try:  # mmap: the pickle is read, the tensor data is not
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        refs = _references(checkpoint, path) if isinstance(checkpoint, Mapping) else None
    except Exception:  # unreadable, foreign or malformed: keep every file
        return None
    return {*refs["tensors"].values(), *refs["files"].values()} if refs else set()


class ReferenceCache:
    """`referenced_digests` per checkpoint file, read again only when the file changed (its
    inode, size or modification time: checkpoints are replaced by rename, so a rewritten one
    is a new inode). Collecting after every save then reads only the checkpoint just written,
    not every checkpoint of the folder (~0.05 s each for MiniLM)."""

    def __init__(self) -> None:
        self._known: dict[Path, tuple[tuple[int, int, int], set[str] | None]] = {}

    def __call__(self, path: Path) -> set[str] | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        known = self._known.get(path)
        if known is None or known[0] != key:
            known = self._known[path] = (key, referenced_digests(path))
        return known[1]

    def remember(self, path: Path, checkpoint: Mapping[str, Any]) -> None:
        """The digests of a checkpoint just written from `checkpoint` (what `store_tensors`
        returned): no need to read it back."""
        refs = checkpoint.get(REFS_KEY)
        stat = path.stat()
        digests = {*refs["tensors"].values(), *refs.get("files", {}).values()} if refs else set()
        self._known[path] = ((stat.st_ino, stat.st_size, stat.st_mtime_ns), digests)


def collect_garbage(checkpoint_dir: Path, folder_name: str = TENSOR_FOLDER,
                    read: Callable[[Path], set[str] | None] = referenced_digests) -> int:
    """Delete the tensor files that no `*.ckpt` in `checkpoint_dir` refers to; returns how many.

    Called after a checkpoint is written or removed. Nothing is deleted when a checkpoint of the
    folder cannot be read (it might refer to any file). Files being written are hidden `.tmp`
    names and never match. `read` gives a checkpoint's digests (a `ReferenceCache` in a run)."""
    folder = checkpoint_dir / folder_name
    if not folder.is_dir():
        return 0
    keep: set[str] = set()
    for checkpoint in checkpoint_dir.glob("*.ckpt"):
        digests = read(checkpoint)
        if digests is None:
            log.debug("%s cannot be read: no tensor file of %s is collected", checkpoint, folder)
            return 0
        keep |= digests
    removed = 0
    for file in folder.glob("*.safetensors"):
        if DIGEST.fullmatch(file.stem) and file.stem not in keep:
            file.unlink(missing_ok=True)
            removed += 1
    return removed
