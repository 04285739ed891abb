"""`mtst.load`: a trained model from a checkpoint, a run folder or an `mtst export` folder.

Whatever the source, what comes back is the network alone (`MultiTaskModel`: encoder, pooling
and one head per task, with `predict`, `encode` and `similarity`): no losses, metrics, freeze
strategy or Lightning. The folder format is `MultiTaskNetwork.save`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mtst.errors import MtstError
from mtst.inference.model import MultiTaskModel
from mtst.model.network import CONFIG_FILE

MTST_FOLDER = "mtst"


def load(path: str | Path, device: str | torch.device = "cpu", backend: str = "torch",
         **options: Any) -> MultiTaskModel:
    """Load a trained model for inference (eval mode) from any of:

    - a `.ckpt` file written by training (also one written by mtst 0.1);
    - a run folder (`logs/runs/<run>`: its `checkpoints/best.ckpt`, else `last.ckpt`);
    - a folder written by `mtst export` (the export root or its `mtst/` sub-folder).

    `backend="onnx"` runs the graph of `mtst export --onnx` with onnxruntime instead (options
    `quantized=True` for the int8 graph, `threads=N`); see `mtst.inference.onnx_backend`.
    """
    if backend == "onnx":
        from mtst.inference.onnx_backend import load_onnx

        return load_onnx(path, **options)  # type: ignore[return-value]  (same inference surface)
    if backend != "torch" or options:
        problem = f"backend '{backend}' unknown" if backend != "torch" else f"options {sorted(options)}"
        raise MtstError(f"mtst.load: {problem}; choose backend 'torch' or 'onnx' (options only with onnx)")
    path = Path(path)
    if path.is_file():
        model = load_checkpoint_network(path)
    elif path.is_dir():
        model = _load_folder(path)
    else:
        raise MtstError(f"model '{path}' does not exist (expected a .ckpt file, a run folder or "
                        "a folder written by `mtst export`)")
    return model.to(device).eval()


def load_checkpoint_network(path: str | Path, map_location: str = "cpu") -> MultiTaskModel:
    """The network of a training checkpoint, from the checkpoint alone (no hub, no Hydra, no
    original folder); the run's config travels along for the model card."""
    from mtst.checkpoints.file_io import load_checkpoint

    checkpoint = load_checkpoint(path, map_location)
    model = MultiTaskModel.from_checkpoint(checkpoint, str(path))
    model.run_config = (checkpoint.get("mtst") or {}).get("config")
    return model


def _load_folder(path: Path) -> MultiTaskModel:
    for folder in (path, path / MTST_FOLDER):
        if (folder / CONFIG_FILE).is_file():
            return load_folder(folder)
    for name in ("best.ckpt", "last.ckpt"):
        if (path / "checkpoints" / name).is_file():
            return load_checkpoint_network(path / "checkpoints" / name)
    raise MtstError(f"folder '{path}' holds no model: expected {CONFIG_FILE} (from `mtst export`) "
                    f"in it or in {path / MTST_FOLDER}, or a run's checkpoints/best.ckpt")


def load_folder(folder: str | Path) -> MultiTaskModel:
    """An exported `mtst/` folder: architecture from its config, weights from safetensors."""
    return MultiTaskModel.load(folder)


def backbone_settings(name: str) -> dict[str, Any]:
    """`minilm`, `gpt_neo_tiny`, ... (a conf/backbone entry) -> its settings; anything else is a
    Hugging Face model name or folder (`package:pkg/sub` folders included)."""
    from omegaconf import OmegaConf

    from mtst.config.runs import CONF_DIR

    config_file = CONF_DIR / "backbone" / f"{name}.yaml"
    if "/" not in name and ":" not in name and config_file.is_file():
        config = OmegaConf.to_container(OmegaConf.load(config_file), resolve=True)
        return {k: config[k] for k in ("name_or_path", "pretrained", "pooling") if k in config}
    return {"name_or_path": name}


def untrained(backbone: str, seed: int = 0, tasks: dict[str, Any] | None = None) -> MultiTaskModel:
    """The backbone with randomly initialised heads for the default tasks (or `tasks`, a
    network task mapping): what a model predicts before training (the output format, a baseline)."""
    from mtst.data.labels import DEFAULT_CLASSES, DEFAULT_ENTITY_TYPES
    from mtst.model.encoder import SentenceEncoder

    settings = backbone_settings(backbone)
    pooling = settings.pop("pooling", "mean")
    torch.manual_seed(seed)
    encoder = SentenceEncoder.from_pretrained(**settings, pooling=pooling)
    tasks = tasks or {
        "topic": {"type": "sentence_classification", "head": "sentence", "dropout": 0.1,
                  "labels": {"kind": "label", "names": list(DEFAULT_CLASSES)}},
        "ner": {"type": "token_classification", "head": "token", "dropout": 0.1,
                "labels": {"kind": "tags", "names": list(DEFAULT_ENTITY_TYPES)}},
    }
    return MultiTaskModel(encoder, tasks, backbone=settings["name_or_path"]).eval()
