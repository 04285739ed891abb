"""MultiTaskNetwork: one shared SentenceEncoder and one small head per task, nothing else.

This is the model people load, export and serve: plain PyTorch, no losses, metrics, optimizer or
Lightning. Its saved form is one folder (and the same three parts inside a training checkpoint):

- ``mtst_config.json``: what `config()` returns: encoder settings and, per task, its type, head
  kind, dropout and label space (the ids every head's outputs mean);
- ``model.safetensors``: encoder and head weights (no pickle);
- the backbone's config and tokenizer files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtst.data.labels import LabelSpace
from mtst.errors import MtstError, first_line
from mtst.model.adapters import merge_lora
from mtst.model.encoder import SentenceEncoder
from mtst.model.heads import HEADS

CONFIG_FILE = "mtst_config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 2
ENCODER_KEYS = ("pooling", "normalize", "max_length")


class MultiTaskNetwork(nn.Module):
    """`forward(input_ids, attention_mask)` -> {"embeddings": [B, H], <task>: logits, ...}.

    ``tasks`` maps a task name to plain settings: ``type`` (the task type, kept for readers of
    the config), ``head`` (a key of `HEADS`, or None for a task without parameters),
    ``labels`` (`LabelSpace.to_dict()`) and ``dropout``.

    Args:
        encoder: the shared sentence encoder (backbone, pooling, tokenizer).
        tasks: each task's network settings, as above (`Task.network_spec` builds them).
        backbone: the name or path the backbone was loaded from, recorded in checkpoints and
            exports (a rebuilt backbone knows only a temporary folder); None: the config's.

    Example:
        >>> from mtst.checkpoints.file_io import load_checkpoint
        >>> path = "logs/runs/<run>/checkpoints/best.ckpt"
        >>> net = MultiTaskNetwork.from_checkpoint(load_checkpoint(path), path)  # doctest: +SKIP
        >>> net.encode(["Flights to Lisbon are cheaper in May."]).shape  # doctest: +SKIP
    """

    def __init__(self, encoder: SentenceEncoder, tasks: Mapping[str, Mapping[str, Any]],
                 backbone: str | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        # what the network was trained from (a rebuilt backbone only knows a temporary folder)
        self.backbone_name = backbone or str(getattr(encoder.backbone.config, "name_or_path", ""))
        self.tasks = {name: dict(spec) for name, spec in tasks.items()}
        self.label_spaces = {name: LabelSpace.from_dict(spec["labels"], name)
                             for name, spec in self.tasks.items()}
        heads = {}
        for name, spec in self.tasks.items():
            kind = spec.get("head")
            if kind is None:
                continue
            if kind not in HEADS:
                raise MtstError(f"tasks.{name}: head {kind!r} unknown; one of {', '.join(HEADS)}")
            heads[name] = HEADS[kind](encoder.hidden_size, len(self.label_spaces[name]),
                                      float(spec.get("dropout", 0.1)))
        self.heads = nn.ModuleDict(heads)

    # ---- forward -------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        token_states, embeddings = self.encoder(input_ids, attention_mask)
        return self.run_heads(token_states, embeddings)

    def run_heads(self, token_states: torch.Tensor, embeddings: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every head on encoder outputs (computed now or served from a feature cache)."""
        features = {"token_states": token_states, "embeddings": embeddings}
        out = {"embeddings": embeddings}
        for name, head in self.heads.items():
            out[name] = head(features[head.reads].to(head.out.weight.dtype))
        return out

    # ---- inference -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def encode(self, sentences: str | Sequence[str], **kwargs: Any) -> Any:
        """Sentence embeddings (`SentenceEncoder.encode` options)."""
        return self.encoder.encode(sentences, **kwargs)

    def similarity(self, texts_a: str | Sequence[str], texts_b: str | Sequence[str],
                   batch_size: int = 32) -> np.ndarray:
        """Cosine similarity of each pair (texts_a[i], texts_b[i]), in [-1, 1]."""
        single = isinstance(texts_a, str) and isinstance(texts_b, str)
        a = [texts_a] if isinstance(texts_a, str) else list(texts_a)
        b = [texts_b] if isinstance(texts_b, str) else list(texts_b)
        if len(a) != len(b):
            raise MtstError(f"similarity: {len(a)} first texts but {len(b)} second texts")
        emb_a = self.encode(a, batch_size=batch_size, convert_to_numpy=False)
        emb_b = self.encode(b, batch_size=batch_size, convert_to_numpy=False)
        cosines = F.cosine_similarity(emb_a, emb_b, dim=-1).numpy()
        return cosines[0] if single else cosines

    # ---- what the network is -------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this network around its weights (plain JSON data)."""
        return {
            "format": "mtst",
            "format_version": FORMAT_VERSION,
            "encoder": {**self.encoder.settings(), "hidden_size": self.encoder.hidden_size,
                        "backbone": self.backbone_name},
            "tasks": {name: {**spec, "labels": self.label_spaces[name].to_dict()}
                      for name, spec in self.tasks.items()},
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], files: Mapping[str, bytes] | str | Path,
                    where: str = "config") -> MultiTaskNetwork:
        """The architecture (random weights) from `config()` and the backbone files (contents
        from `SentenceEncoder.to_files`, or a folder holding them)."""
        try:
            if config.get("format_version", 0) > FORMAT_VERSION:
                raise MtstError(f"{where}: written by a newer mtst (format "
                                f"{config['format_version']}); upgrade mtst to load it")
            settings = {k: config["encoder"][k] for k in ENCODER_KEYS}
            tasks = dict(config["tasks"])
            for name, spec in tasks.items():
                LabelSpace.from_dict(spec["labels"], name)
        except (KeyError, TypeError, AttributeError) as err:
            reason = f"missing entry {err}" if isinstance(err, KeyError) else first_line(err)
            raise MtstError(f"{where}: not an mtst network config ({reason})") from None
        if isinstance(files, Mapping):
            encoder = SentenceEncoder.from_files(dict(files), **settings)
        else:
            encoder = SentenceEncoder.from_pretrained(str(files), pretrained=False, **settings)
        return cls(encoder, tasks, backbone=config["encoder"].get("backbone"))

    def weights(self) -> dict[str, torch.Tensor]:
        """Encoder and head weights as contiguous CPU tensors sharing no memory (safetensors
        refuses shared storage, e.g. tied embeddings)."""
        state, seen = {}, set()
        for key, value in self.state_dict().items():
            tensor = value.detach().cpu().contiguous()
            pointer = tensor.untyped_storage().data_ptr()
            state[key] = tensor.clone() if pointer in seen else tensor
            seen.add(pointer)
        return state

    def load_weights(self, state: Mapping[str, torch.Tensor], source: str) -> None:
        """Strict: every weight of this architecture and nothing else, else one line naming
        the first mismatched keys."""
        result = self.load_state_dict(dict(state), strict=False)
        if result.missing_keys or result.unexpected_keys:
            problem = (f"missing {result.missing_keys[:3]}" if result.missing_keys
                       else f"unexpected {result.unexpected_keys[:3]}")
            raise MtstError(f"{source}: its weights do not fit its config ({problem})")

    def save(self, folder: str | Path) -> Path:
        """Write the folder `load` reads (config, safetensors weights, backbone files)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in self.encoder.to_files().items():
            (folder / name).write_bytes(content)
        save_file(self.weights(), str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
        text = json.dumps(self.config(), indent=2) + "\n"
        (folder / CONFIG_FILE).write_text(text, encoding="utf-8")
        return folder

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any], where: str) -> MultiTaskNetwork:
        """The network inside a training checkpoint (already loaded, safely, by the caller):
        its config and backbone files under `checkpoint["mtst"]`, its weights under `net.` in
        the state dict (LoRA adapters, when it has them, merged into those weights). A
        checkpoint of mtst 0.1 (`cls_head.*` / `ner_head.*`) is converted."""
        entries = ("state_dict", "mtst")
        if not isinstance(checkpoint, Mapping) or not all(k in checkpoint for k in entries):
            found = (f"no {' / '.join(repr(k) for k in entries if k not in checkpoint)} entry"
                     if isinstance(checkpoint, Mapping) else f"it holds a {type(checkpoint).__name__}")
            raise MtstError(f"{where}: not an mtst checkpoint ({found})")
        saved, state = checkpoint["mtst"], checkpoint["state_dict"]
        if "version" not in saved:
            return cls._from_v1(dict(checkpoint.get("hyper_parameters") or {}),
                                saved.get("encoder_files") or {}, state, where)
        network = cls.from_config(saved["network"], saved["files"], where)
        weights = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
        if saved.get("adapters"):  # trained with adapters (freeze=lora): fold them in
            weights = merge_lora(weights, saved["adapters"], where)
        network.load_weights(weights, where)
        return network.eval()

    @classmethod
    def _from_v1(cls, settings: Mapping[str, Any], files: Mapping[str, bytes],
                 state: Mapping[str, torch.Tensor], where: str) -> MultiTaskNetwork:
        """mtst 0.1 saved exactly two tasks: `topic` (`cls_head`) and `ner` (`ner_head`)."""
        try:
            labels, dropout = settings["labels"], float(settings.get("dropout", 0.1))
            backbone = (settings.get("backbone") or {}).get("name_or_path")
            config = {"encoder": {**{k: settings[k] for k in ENCODER_KEYS}, "backbone": backbone},
                      "tasks": {
                "topic": {"type": "sentence_classification", "head": "sentence", "dropout": dropout,
                          "labels": {"kind": "label", "names": list(labels["classes"])}},
                "ner": {"type": "token_classification", "head": "token", "dropout": dropout,
                        "labels": {"kind": "tags", "names": list(labels["entity_types"])}}}}
        except (KeyError, TypeError) as err:
            raise MtstError(f"{where}: an mtst 0.1 checkpoint without its settings ({first_line(err)})"
                            ) from None
        network = cls.from_config(config, dict(files), where)
        renamed = {"cls_head.": "heads.topic.", "ner_head.": "heads.ner.", "encoder.": "encoder."}
        weights = {new + key[len(old):]: value for key, value in state.items()
                   for old, new in renamed.items() if key.startswith(old)}
        try:
            network.load_weights(weights, where)
        except MtstError as err:
            raise MtstError(f"{err} (an mtst 0.1 checkpoint)") from None
        return network.eval()

    @classmethod
    def load(cls, folder: str | Path) -> MultiTaskNetwork:
        """Rebuild from a folder written by `save` (no pickle, no code from the folder runs)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        config_file, weights_file = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise MtstError(f"{config_file}: not an mtst model (invalid JSON: {err})") from None
        except (OSError, ValueError) as err:
            raise MtstError(f"{config_file}: not an mtst model ({first_line(err)})") from None
        if not isinstance(config, dict):
            raise MtstError(f"{config_file}: not an mtst model (expected a JSON object)")
        if config.get("format_version", 0) < FORMAT_VERSION:
            raise MtstError(f"{config_file}: written by mtst 0.1 (format "
                            f"{config.get('format_version', 0)}); export it again with this mtst")
        if not weights_file.is_file():
            raise MtstError(f"'{folder}' has no {WEIGHTS_FILE}")
        network = cls.from_config(config, folder, where=str(config_file))
        try:
            state = load_file(str(weights_file))
        except Exception as err:  # corrupt or truncated; safetensors never runs code
            raise MtstError(f"{weights_file}: not an mtst model ({_not_safetensors(weights_file, err)})"
                            ) from None
        network.load_weights(state, str(weights_file))
        return network.eval()


def _not_safetensors(path: Path, err: Exception) -> str:
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "a PyTorch or pickle file, not safetensors; it was not unpickled"
    return f"truncated or corrupt safetensors file: {first_line(err)}"
