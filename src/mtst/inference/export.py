"""`mtst export`: a trained model as (a) a sentence-transformers folder and (b) an `mtst` folder.

    OUT/sentence-transformers/   SentenceTransformer(OUT/sentence-transformers) loads it: the
                                 backbone and tokenizer at the folder root, 1_Pooling/config.json,
                                 (2_Normalize when the encoder normalises), modules.json,
                                 sentence_bert_config.json; mtst_encoder.json lets
                                 SentenceEncoder.from_pretrained keep the pooling too.
    OUT/mtst/                    mtst.load(OUT) reloads encoder and every task head
                                 (`MultiTaskNetwork.save`'s folder).
    OUT/README.md                the model card (see card.py): labels, data, metrics, limits.

The whole OUT folder is written next to its final place and renamed when complete.
"""

from __future__ import annotations

import json
from pathlib import Path

from mtst import __version__
from mtst.errors import MtstError
from mtst.files import atomic_folder
from mtst.inference.loading import MTST_FOLDER, load
from mtst.inference.model import MultiTaskModel
from mtst.model.encoder import SentenceEncoder

ST_FOLDER = "sentence-transformers"
CARD_FILE = "README.md"
# mtst pooling mode -> sentence-transformers Pooling flag (the config keys every version reads)
ST_POOLING_FLAGS = {
    "mean": "pooling_mode_mean_tokens",
    "weighted_mean": "pooling_mode_weightedmean_tokens",  # same 1..n weights with right padding
    "last_token": "pooling_mode_lasttoken",
    "first": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
}
ALL_FLAGS = (
    "pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken",
)


def _write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def write_sentence_transformers(encoder: SentenceEncoder, folder: str | Path) -> Path:
    """Write `encoder` as a sentence-transformers model folder (into an existing, empty folder)."""
    folder = Path(folder)
    tokenizer = encoder.tokenizer
    tokenizer.padding_side = "right"  # weighted_mean / last_token assume it; GPT pads with eos
    encoder.save_pretrained(folder)  # backbone (safetensors), tokenizer, mtst_encoder.json
    _pin_tokenizer_settings(folder / "tokenizer_config.json", tokenizer.pad_token, encoder.max_length)
    flag = ST_POOLING_FLAGS[encoder.pooling.mode]
    _write_json(folder / "1_Pooling" / "config.json", {
        "word_embedding_dimension": encoder.hidden_size,
        **{name: name == flag for name in ALL_FLAGS},
        "include_prompt": True,
    })
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if encoder.pooling.normalize:
        (folder / "2_Normalize").mkdir(exist_ok=True)
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    _write_json(folder / "modules.json", modules)
    _write_json(folder / "sentence_bert_config.json",
                {"max_seq_length": encoder.max_length, "do_lower_case": False})
    _write_json(folder / "config_sentence_transformers.json", {
        "__version__": {"mtst": __version__},
        "prompts": {},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
    return folder


def _pin_tokenizer_settings(config_file: Path, pad_token: str | None, max_length: int) -> None:
    """Record pad token and right padding explicitly: GPT-style tokenizers have no pad token of
    their own, and a loader that falls back to its defaults would pad differently."""
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config.update({"padding_side": "right", "pad_token": pad_token, "model_max_length": max_length})
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def export_model(model: MultiTaskModel, out: str | Path, overwrite: bool = False,
                 run: Path | None = None, onnx: bool = False,
                 quantize: str | None = None) -> dict[str, Path]:
    """Write OUT/sentence-transformers, OUT/mtst and the model card OUT/README.md (with the
    data, config and metrics of `run`, the training run folder, when known); OUT appears only
    once everything is complete."""
    from mtst.inference.card import model_card

    out = Path(out)
    with atomic_folder(out, overwrite=overwrite) as tmp:
        write_sentence_transformers(model.encoder, tmp / ST_FOLDER)
        model.save(tmp / MTST_FOLDER)
        (tmp / CARD_FILE).write_text(model_card(model, run), encoding="utf-8")
        graphs = {}
        if onnx:
            from mtst.inference.onnx_backend import ONNX_FOLDER, export_onnx

            graphs = export_onnx(model, tmp / ONNX_FOLDER, quantize=quantize)
    paths = {"sentence-transformers": out / ST_FOLDER, "mtst": out / MTST_FOLDER, "card": out / CARD_FILE}
    return {**paths, **{f"onnx-{kind}": out / p.relative_to(tmp) for kind, p in graphs.items()}}


def export(checkpoint: str | Path, out: str | Path, overwrite: bool = False, onnx: bool = False,
           quantize: str | None = None) -> dict[str, Path]:
    """Load a checkpoint (or anything `mtst.load` accepts) and export it."""
    from mtst.inference.card import find_run

    if quantize and not onnx:
        raise MtstError("--quantize needs --onnx")
    return export_model(load(checkpoint), out, overwrite=overwrite, run=find_run(checkpoint),
                        onnx=onnx, quantize=quantize)
