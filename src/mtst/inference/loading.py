"""`mtst.load`: a trained model from a checkpoint, a run folder or an `mtst export` folder.

The exported `mtst/` folder holds everything inference needs and nothing that needs Hydra or the
training code's config: `model.safetensors` (encoder and both heads), `mtst_config.json` (labels,
pooling, head sizes) and the backbone config and tokenizer files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from mtst.data.labels import LabelSpace
from mtst.errors import MtstError, first_line
from mtst.model.encoder import SentenceEncoder
from mtst.model.multitask import MultiTaskModel

MTST_FOLDER = "mtst"
CONFIG_FILE = "mtst_config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
INFERENCE_PREFIXES = ("encoder.", "cls_head.", "ner_head.")
ENCODER_KEYS = ("pooling", "normalize", "max_length")


def load(path: str | Path, device: str | torch.device = "cpu", backend: str = "torch",
         **options: Any) -> MultiTaskModel:
    """Load a trained model for inference (eval mode) from any of:

    - a `.ckpt` file written by training;
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
        model = MultiTaskModel.from_checkpoint(path)
    elif path.is_dir():
        model = _load_folder(path)
    else:
        raise MtstError(f"model '{path}' does not exist (expected a .ckpt file, a run folder or "
                        "a folder written by `mtst export`)")
    return model.to(device).eval()


def _load_folder(path: Path) -> MultiTaskModel:
    for folder in (path, path / MTST_FOLDER):
        if (folder / CONFIG_FILE).is_file():
            return load_folder(folder)
    for name in ("best.ckpt", "last.ckpt"):
        if (path / "checkpoints" / name).is_file():
            return MultiTaskModel.from_checkpoint(path / "checkpoints" / name)
    raise MtstError(f"folder '{path}' holds no model: expected {CONFIG_FILE} (from `mtst export`) "
                    f"in it or in {path / MTST_FOLDER}, or a run's checkpoints/best.ckpt")


def load_folder(folder: str | Path) -> MultiTaskModel:
    """Rebuild the model from an exported `mtst/` folder: architecture from the saved configs,
    weights from safetensors (no pickle, no code from the folder is run)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise TypeError(f"expected a JSON object, found {type(config).__name__}")
        labels = LabelSpace.from_dict(config["labels"]).to_dict()
        settings = {k: config["encoder"][k] for k in ENCODER_KEYS}
        dropout = float(config["heads"]["dropout"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        reason = (f"missing entry {err}" if isinstance(err, KeyError) else
                  f"invalid JSON: {err}" if isinstance(err, json.JSONDecodeError) else
                  str(err).splitlines()[0])
        raise MtstError(f"{folder / CONFIG_FILE}: not an mtst export ({reason})") from None
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise MtstError(f"'{folder}' was written by a newer mtst (format {config['format_version']})")
    weights_file = folder / WEIGHTS_FILE
    if not weights_file.is_file():
        raise MtstError(f"'{folder}' has no {WEIGHTS_FILE}")
    encoder = SentenceEncoder.from_pretrained(str(folder), pretrained=False, **settings)
    model = MultiTaskModel(
        backbone={"name_or_path": str(folder), "pretrained": False},
        labels=labels,
        dropout=dropout,
        encoder=encoder,
        **settings,
    )
    try:
        state = load_file(str(weights_file))
    except Exception as err:  # corrupt or truncated file; safetensors never runs code
        raise MtstError(f"{weights_file}: not an mtst export ({_not_safetensors(weights_file, err)})"
                        ) from None
    _load_inference_state(model, state, weights_file)
    return model.eval()


def _not_safetensors(path: Path, err: Exception) -> str:
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "a PyTorch or pickle file, not safetensors; it was not unpickled"
    return f"truncated or corrupt safetensors file: {first_line(err)}"


def _load_inference_state(model: MultiTaskModel, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load encoder and head weights strictly; other modules (loss weights, metrics) are not
    needed for inference and are not stored."""
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k.startswith(INFERENCE_PREFIXES)]
    if missing or result.unexpected_keys:
        problem = f"missing {missing[:3]}" if missing else f"unexpected {result.unexpected_keys[:3]}"
        raise MtstError(f"'{source}' does not match the model in its config: {problem}")


def inference_state(model: MultiTaskModel) -> dict[str, torch.Tensor]:
    """Encoder and head weights as contiguous CPU tensors that share no memory (safetensors
    refuses shared storage, e.g. tied embeddings)."""
    state, seen = {}, set()
    for key, value in model.state_dict().items():
        if not key.startswith(INFERENCE_PREFIXES):
            continue
        tensor = value.detach().cpu().contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        state[key] = tensor.clone() if pointer in seen else tensor
        seen.add(pointer)
    return state


def save_folder(model: MultiTaskModel, folder: str | Path) -> Path:
    """Write the `mtst/` folder that `load_folder` reads (into an existing, empty folder)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in model.encoder.to_files().items():
        (folder / name).write_bytes(content)
    save_file(inference_state(model), str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    hparams: dict[str, Any] = dict(model.hparams)
    space = model.label_space
    config = {
        "format": "mtst",
        "format_version": FORMAT_VERSION,
        "labels": space.to_dict(),
        "encoder": {
            "pooling": model.encoder.pooling.mode,
            "normalize": model.encoder.pooling.normalize,
            "max_length": model.encoder.max_length,
            "hidden_size": model.encoder.hidden_size,
            "backbone": str((hparams.get("backbone") or {}).get("name_or_path", "")),
        },
        "heads": {
            "dropout": float(hparams.get("dropout", 0.1)),
            "topic": {"classes": list(space.classes)},
            "ner": {"tags": list(space.tags)},
        },
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder


def backbone_settings(name: str) -> dict[str, Any]:
    """`minilm`, `gpt_neo_tiny`, ... (a conf/backbone entry) -> its settings; anything else is a
    Hugging Face model name or folder (`package:pkg/sub` folders included)."""
    from omegaconf import OmegaConf

    from mtst.training.runs import CONF_DIR

    config_file = CONF_DIR / "backbone" / f"{name}.yaml"
    if "/" not in name and ":" not in name and config_file.is_file():
        config = OmegaConf.to_container(OmegaConf.load(config_file), resolve=True)
        return {k: config[k] for k in ("name_or_path", "pretrained", "pooling") if k in config}
    return {"name_or_path": name}


def untrained(backbone: str, seed: int = 0, labels: dict[str, list[str]] | None = None) -> MultiTaskModel:
    """The backbone with randomly initialised heads and the default label space: what a model
    predicts before training (a look at the output format, and a baseline)."""
    settings = backbone_settings(backbone)
    pooling = settings.pop("pooling", "mean")
    torch.manual_seed(seed)
    return MultiTaskModel(backbone=settings, labels=labels or LabelSpace().to_dict(),
                          pooling=pooling).eval()
