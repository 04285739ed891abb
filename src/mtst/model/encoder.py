"""SentenceEncoder: a Hugging Face backbone plus Pooling, with a sentence-transformers-like encode()."""

from __future__ import annotations

import inspect
import json
import tempfile
from collections.abc import Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from mtst.model.backbone import load_backbone, load_tokenizer
from mtst.model.pooling import Pooling

ENCODER_CONFIG = "mtst_encoder.json"
# backbone submodules above the token states that the embedding never reads (BERT-style models'
# pooler: a dense layer on the first token, which mtst's pooling replaces)
UNUSED_BACKBONE_MODULES = ("pooler",)
PROGRESS_THRESHOLD = 1000  # show a progress bar by default from this many sentences
ENCODE_CHUNK = 4096  # sentences tokenised per call: bounded memory, exact length sorting inside


class SentenceEncoder(nn.Module):
    """One job: turn sentences into fixed-length vectors. Owns backbone, pooling and tokenizer.

    Args:
        backbone: a Hugging Face base model (no task head) returning token states.
        tokenizer: its tokenizer.
        pooling: how token states become one vector (`mtst.model.pooling.POOLING_MODES`).
        normalize: L2-normalise the pooled vector.
        max_length: sub-tokens per sentence, special tokens included; longer ones are cut.
    """

    def __init__(
        self,
        backbone: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        pooling: str = "mean",
        normalize: bool = False,
        max_length: int = 128,
    ) -> None:
        super().__init__()
        self.backbone, self.tokenizer = backbone, tokenizer
        self.pooling = Pooling(pooling, normalize)
        self.max_length = max_length
        # an encoder never reads a key/value cache: building one costs memory every step, and
        # a recomputed block (activation checkpointing) would append to it a second time
        self._backbone_kwargs = ({"use_cache": False} if "use_cache" in
                                 inspect.signature(backbone.forward).parameters else {})
        unused = self.unused_parameter_names()
        for name, param in self.named_parameters():  # before any DDP wrapper lists what trains
            if name in unused:
                param.requires_grad_(False)

    @property
    def hidden_size(self) -> int:
        return int(self.backbone.config.hidden_size)

    def unused_parameter_names(self) -> set[str]:
        """Names (as in `named_parameters()`) of backbone parameters no output depends on: they
        never get a gradient, so they must not train (under DDP a trainable parameter without a
        gradient is an error). Kept in the weights, so saved folders stay complete."""
        names = set()
        for module_name in UNUSED_BACKBONE_MODULES:
            module = getattr(self.backbone, module_name, None)
            if isinstance(module, nn.Module):
                names.update(f"backbone.{module_name}.{n}" for n, _ in module.named_parameters())
        return names

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (token_states [B, T, H], sentence embeddings [B, H])."""
        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               **self._backbone_kwargs).last_hidden_state
        return states, self.pooling(states, attention_mask)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        pooling: str | None = None,
        normalize: bool | None = None,
        max_length: int | None = None,
        pretrained: bool = True,
        trust_remote_code: bool = False,
        revision: str | None = None,
        attn_implementation: str | None = None,
        **_: Any,
    ) -> SentenceEncoder:
        """Load any HF encoder folder or hub id; a folder saved by save_pretrained keeps its pooling."""
        saved: dict[str, Any] = {}
        config_file = Path(name_or_path) / ENCODER_CONFIG
        if config_file.is_file():
            saved = json.loads(config_file.read_text())
        kwargs = {"trust_remote_code": trust_remote_code, "revision": revision}
        tokenizer = load_tokenizer(name_or_path, **kwargs)
        backbone = load_backbone(name_or_path, pretrained=pretrained,
                                 attn_implementation=attn_implementation, **kwargs)
        return cls(
            backbone,
            tokenizer,
            pooling=pooling or saved.get("pooling", "mean"),
            normalize=saved.get("normalize", False) if normalize is None else normalize,
            max_length=max_length or saved.get("max_length", 128),
        )

    def settings(self) -> dict[str, Any]:
        """What defines this encoder besides the backbone's own files: the one place these
        keys are written (`mtst_encoder.json`, and the encoder entry of a network's config)."""
        return {"pooling": self.pooling.mode, "normalize": self.pooling.normalize,
                "max_length": self.max_length}

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        (directory / ENCODER_CONFIG).write_text(json.dumps(self.settings(), indent=2) + "\n")
        return directory

    def to_files(self) -> dict[str, bytes]:
        """Backbone config and tokenizer as file contents: checkpoints carry them, so a model
        reloads without the hub or the original folder (weights come from the state dict)."""
        with tempfile.TemporaryDirectory() as tmp:
            self.backbone.config.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}

    @classmethod
    def from_files(cls, files: dict[str, bytes], **settings: Any) -> SentenceEncoder:
        """Rebuild the architecture (random weights) and tokenizer from `to_files()` output."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                (Path(tmp) / Path(name).name).write_bytes(content)
            return cls.from_pretrained(tmp, pretrained=False, **settings)

    def tokenize(self, sentences: Sequence[str]) -> list[list[int]]:
        encoded = self.tokenizer(
            list(sentences), truncation=True, max_length=self.max_length, add_special_tokens=True
        )
        return encoded["input_ids"]

    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 32,
        normalize: bool = False,
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
    ) -> np.ndarray | torch.Tensor:
        """Embed sentences in input order; batches are length-sorted so little padding is computed."""
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        out = torch.empty(len(texts), self.hidden_size)
        for index, emb in self.iter_encode(texts, batch_size, normalize, show_progress_bar):
            out[index] = emb
        out = out[0] if single else out
        return out.numpy() if convert_to_numpy else out

    @staticmethod
    def _length_order(texts: list[str]) -> list[int]:
        """Longest first (by characters, as sentence-transformers does): similar lengths share a batch."""
        return sorted(range(len(texts)), key=lambda i: -len(texts[i]))

    def iter_encode(
        self,
        texts: list[str],
        batch_size: int = 32,
        normalize: bool = False,
        show_progress_bar: bool | None = None,
    ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Yield (input indices, embeddings) batch by batch, longest first: memory stays bounded.

        Sentences are sorted by characters (cheap, global), tokenised one chunk per call, then
        re-sorted by sub-token count inside the chunk, so a batch pads to almost nothing: sorting
        by characters alone left ~30% padding on AG News titles, all of it computed for nothing.
        """
        order = self._length_order(texts)
        if show_progress_bar is None:
            show_progress_bar = len(texts) >= PROGRESS_THRESHOLD
        chunk = batch_size * max(1, ENCODE_CHUNK // batch_size)
        device = self.device
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode(), tqdm(
                total=len(texts), desc="encode", unit="sentence", disable=not show_progress_bar
            ) as progress:
                for first in range(0, len(order), chunk):
                    members = order[first : first + chunk]
                    token_ids = self.tokenize([texts[i] for i in members])
                    local = sorted(range(len(members)), key=lambda j: -len(token_ids[j]))
                    for start in range(0, len(local), batch_size):
                        rows = local[start : start + batch_size]
                        ids, mask = pad_batch([token_ids[j] for j in rows], self.pad_id)
                        _, emb = self(ids.to(device), mask.to(device))
                        emb = emb.float()
                        emb = F.normalize(emb, dim=-1) if normalize else emb
                        progress.update(len(rows))
                        yield [members[j] for j in rows], emb.cpu()
        finally:
            self.train(was_training)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the backbone's device (another runtime may answer differently)."""
        return next(self.parameters()).device

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)


def pad_batch(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest; returns (input_ids, attention_mask)."""
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    width = int(lengths.max(initial=0)) or 1
    mask = np.arange(width)[None, :] < lengths[:, None]
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    input_ids[mask] = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    return torch.from_numpy(input_ids), torch.from_numpy(mask.astype(np.int64))
