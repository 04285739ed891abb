"""Content digests of state-dict tensors, and the memo that spares recomputing them at every
checkpoint save of a run (see `mtst.checkpoints.tensor_store`)."""

from __future__ import annotations

import hashlib

import torch


def content_hash(tensor: torch.Tensor) -> str:
    """sha256 of dtype, shape and the raw bytes: equal names mean bitwise-equal tensors."""
    tensor = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


class DigestMemo:
    """The digests of one run's earlier saves, so a frozen backbone is hashed once rather than
    at every save (sha256 over MiniLM's 90 MB takes ~0.08 s; a run saves several times an
    epoch).

    A tensor that does not train (`frozen`: no optimizer writes it) keeps its digest while it
    is the very tensor hashed (same storage, offset, shape, strides, dtype) at the same version
    counter: every in-place write bumps the counter, which a tensor shares with its views and
    its `state_dict` entry (`load_state_dict`, `copy_` under `no_grad`), so nothing is read and
    nothing copied. Not seen: a write through `.data`, which has a counter of its own (the
    assumption `NonFiniteGuard` makes too; PyTorch, Lightning and mtst do not write frozen
    weights that way). A trained tensor is compared instead, bitwise, with a copy of the bytes
    its digest came from (one memory pass, ~10x cheaper than hashing), because fused
    optimizers (AdamW's default here) write parameters without bumping the counter; a tensor
    frozen since its last save but trained before it is compared too. Copies are kept up to
    `max_bytes` in all; past that, trained tensors are hashed every time."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._entries: dict[str, tuple[torch.Tensor, torch.dtype, tuple[int, ...], str]] = {}
        self._frozen: dict[str, tuple[torch.Tensor, int, str]] = {}  # the tensor, its version
        self._bytes = 0

    def digest(self, name: str, tensor: torch.Tensor, frozen: bool = False) -> str:
        """`content_hash(tensor)`; `name` (the state-dict key) finds the earlier one."""
        live = tensor.detach()
        held = self._frozen.pop(name, None)
        if frozen and held is not None and held[1] == live._version and _same_tensor(held[0], live):
            self._frozen[name] = held
            return held[2]
        tensor = live.cpu().contiguous()
        raw = _words(tensor)
        copy, digest = None, None
        entry = self._entries.pop(name, None)
        if entry is not None:
            self._bytes -= entry[0].numel() * entry[0].element_size()
            if entry[1] == tensor.dtype and entry[2] == tuple(tensor.shape) and torch.equal(entry[0], raw):
                copy, digest = entry[0], entry[3]
        if digest is None:
            digest = content_hash(tensor)
        size = raw.numel() * raw.element_size()
        if frozen:  # the version counter stands in for a copy from now on
            self._frozen[name] = (live, live._version, digest)
        elif self._bytes + size <= self.max_bytes:
            self._entries[name] = (raw.clone() if copy is None else copy, tensor.dtype,
                                   tuple(tensor.shape), digest)
            self._bytes += size
        return digest


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """The same view of the same storage (the memo holds `a`, so its storage is not reused)."""
    return (a.device == b.device and a.dtype == b.dtype and a.shape == b.shape
            and a.stride() == b.stride() and a.storage_offset() == b.storage_offset()
            and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())


def _words(tensor: torch.Tensor) -> torch.Tensor:
    """The bytes of a contiguous tensor as the widest integers that tile them: `torch.equal`
    over int64 is ~5x faster than over uint8, and integers compare bitwise (NaN, -0.0)."""
    raw = tensor.reshape(-1).view(torch.uint8)
    for dtype in (torch.int64, torch.int32, torch.int16):
        if raw.numel() % dtype.itemsize == 0:
            return raw.view(dtype)
    return raw
