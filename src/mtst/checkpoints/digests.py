"""Content digests of state-dict tensors, and the memo that spares recomputing them at every
checkpoint save of a run (see `mtst.checkpoints.tensor_store`)."""

from __future__ import annotations

import hashlib

import torch

from mtst.checkpoints.writes import WriteWatch, watch


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
    is the very tensor hashed (same storage, offset, shape, strides, dtype) and no in-place
    operation wrote it since: a `WriteWatch` (`mtst.checkpoints.writes`) asks autograd's
    public in-place check, which sees writes through the tensor, its views and its
    `state_dict` entry (`load_state_dict`, `copy_` under `no_grad`, a LoRA merge), so nothing
    is read and nothing copied. Not seen: a write through `.data`, which has a counter of its
    own (the assumption `NonFiniteGuard` makes too; PyTorch, Lightning and mtst do not write
    frozen weights that way). A trained tensor is compared instead, bitwise, with a copy of the
    bytes its digest came from (one memory pass, ~10x cheaper than hashing), because fused
    optimizers (AdamW's default here) write parameters without autograd seeing it; a tensor
    frozen since its last save but trained before it is compared too. Copies are kept up to
    `max_bytes` in all; past that, trained tensors are hashed every time."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._entries: dict[str, tuple[torch.Tensor, torch.dtype, tuple[int, ...], str]] = {}
        self._frozen: dict[str, tuple[WriteWatch, str]] = {}  # a watch on the tensor, its digest
        self._bytes = 0

    def digest(self, name: str, tensor: torch.Tensor, frozen: bool = False) -> str:
        """`content_hash(tensor)`; `name` (the state-dict key) finds the earlier one."""
        live = tensor.detach()
        held = self._frozen.pop(name, None)
        if frozen and held is not None and held[0].unwritten(live):
            self._frozen[name] = held
            return held[1]
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
        if frozen:  # a watch stands in for a copy from now on (none made: hashed again)
            held = watch(live)
            if held is not None:
                self._frozen[name] = (held, digest)
        elif self._bytes + size <= self.max_bytes:
            self._entries[name] = (raw.clone() if copy is None else copy, tensor.dtype,
                                   tuple(tensor.shape), digest)
            self._bytes += size
        return digest


def _words(tensor: torch.Tensor) -> torch.Tensor:
    """The bytes of a contiguous tensor as the widest integers that tile them: `torch.equal`
    over int64 is ~5x faster than over uint8, and integers compare bitwise (NaN, -0.0)."""
    raw = tensor.reshape(-1).view(torch.uint8)
    for dtype in (torch.int64, torch.int32, torch.int16):
        if raw.numel() % dtype.itemsize == 0:
            return raw.view(dtype)
    return raw
