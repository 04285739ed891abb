"""ONNX export of encoder + pooling + every head, and a backend that runs it with onnxruntime.

    OUT/onnx/model.onnx        fp32 graph: inputs input_ids, attention_mask [batch, sequence];
                               one output per key of `MultiTaskModel.forward` (embeddings,
                               then one per task head, named by its task), batch and sequence
                               dynamic
    OUT/onnx/model_int8.onnx   with `--quantize int8`: the square projections (attention) and the
                               embeddings int8, activations quantised on the fly (onnxruntime
                               dynamic quantisation); the feed-forward projections stay fp32

`mtst.load(OUT, backend="onnx")` returns an `OnnxMultiTaskModel`: the same `predict` and `encode`
as the torch model, with the same tokenisation, length sorting, sliding windows and character
offsets, because it runs the very same code (`mtst.inference.predict`, `SentenceEncoder.encode`)
with the graph in place of the torch modules. Tokenizer, labels and pooling come from OUT/mtst.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtst.data.labels import LabelSpace
from mtst.errors import MtstError
from mtst.model.encoder import SentenceEncoder
from mtst.model.network import CONFIG_FILE, MultiTaskNetwork
from mtst.model.pooling import Pooling

ONNX_FOLDER = "onnx"
FP32_FILE, INT8_FILE = "model.onnx", "model_int8.onnx"
INPUTS = ("input_ids", "attention_mask")
OPSET = 17


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MtstError(f"ONNX needs {module.split('.')[0]}: pip install 'mtst[onnx]'") from None


class _Graph(nn.Module):
    """What is traced: the model's forward, its dict flattened to a tuple in key order."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(input_ids, attention_mask).values())


def export_onnx(model: Any, folder: str | Path, quantize: str | None = None) -> dict[str, Path]:
    """Write `folder/model.onnx` (and `model_int8.onnx` with quantize="int8")."""
    if quantize not in (None, "int8"):
        raise MtstError(f"--quantize {quantize}: choose int8")
    _need("onnx")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    sample = model.encoder.tokenizer(["An example to trace", "two"], padding=True, return_tensors="pt")
    args = (sample["input_ids"], sample["attention_mask"])
    with torch.inference_mode():
        names = list(model(*args).keys())
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    for name, value in zip(names, _Graph(model)(*args), strict=True):
        axes[name] = {0: "batch", 1: "sequence"} if value.dim() == 3 else {0: "batch"}
    paths = {"fp32": folder / FP32_FILE}
    # The TorchScript exporter: it traces GPT-Neo and BERT-style encoders in about a second, where
    # the dynamo exporter takes ~20x longer on the same model; outputs agree to ~1e-6 either way.
    torch.onnx.export(_Graph(model), args, str(paths["fp32"]), input_names=list(INPUTS),
                      output_names=names, dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    if quantize == "int8":
        quantization = _need("onnxruntime.quantization")
        paths["int8"] = folder / INT8_FILE
        quantization.quantize_dynamic(str(paths["fp32"]), str(paths["int8"]), per_channel=True,
                                      weight_type=quantization.QuantType.QInt8,
                                      nodes_to_exclude=feed_forward_matmuls(paths["fp32"]))
    return paths


def feed_forward_matmuls(graph_file: Path) -> list[str]:
    """The MatMul nodes whose weight is a non-square constant: a transformer's feed-forward
    projections (hidden -> 4 x hidden -> hidden; any architecture) and the heads. They stay
    fp32 in the int8 graph: quantising their activations (the wide, outlier-heavy GELU outputs
    among them) is what cost MiniLM its worst-sentence cosine, 0.97 with them int8 against
    0.99 without (docs/inference.md)."""
    import onnx

    graph = onnx.load(str(graph_file)).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul"
            and len(shape := shapes.get(node.input[1], ())) == 2 and shape[0] != shape[1]]


class OnnxEncoder(SentenceEncoder):
    """`SentenceEncoder.encode` with the ONNX graph computing the embeddings."""

    def __init__(self, runner: OnnxMultiTaskModel, tokenizer: Any, pooling: str, normalize: bool,
                 max_length: int, hidden_size: int, config: Any) -> None:
        nn.Module.__init__(self)  # no torch backbone
        object.__setattr__(self, "runner", runner)  # not a sub-module: no reference cycle in modules
        self.tokenizer, self.max_length, self.config = tokenizer, max_length, config
        self.pooling = Pooling(pooling, normalize)  # its mode and flag describe the graph's pooling
        self._hidden_size = hidden_size

    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, self.runner.run(input_ids, attention_mask, ("embeddings",))["embeddings"]


class OnnxMultiTaskModel(nn.Module):
    """The inference surface of `MultiTaskModel` (predict, encode, similarity, tasks,
    label_spaces, encoder), computed by onnxruntime."""

    backend = "onnx"

    def __init__(self, graph: str | Path, mtst_folder: str | Path, threads: int = 0) -> None:
        super().__init__()
        ort = _need("onnxruntime")
        from transformers import AutoConfig

        from mtst.model.backbone import load_tokenizer

        mtst_folder = Path(mtst_folder)
        config = json.loads((mtst_folder / CONFIG_FILE).read_text(encoding="utf-8"))
        self.tasks = {name: dict(spec) for name, spec in config["tasks"].items()}
        self.label_spaces = {name: LabelSpace.from_dict(spec["labels"], name)
                             for name, spec in self.tasks.items()}
        self.backbone_name = str(config["encoder"].get("backbone", ""))
        self.graph = Path(graph)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("OMP_NUM_THREADS", 0) or 0)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.output_names = [output.name for output in self.session.get_outputs()]
        settings = config["encoder"]
        self.encoder = OnnxEncoder(self, load_tokenizer(str(mtst_folder)), settings["pooling"],
                                   settings["normalize"], settings["max_length"],
                                   settings["hidden_size"], AutoConfig.from_pretrained(str(mtst_folder)))
        self.eval()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            names: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        feeds = {"input_ids": input_ids.cpu().numpy().astype(np.int64),
                 "attention_mask": attention_mask.cpu().numpy().astype(np.int64)}
        wanted = list(names or self.output_names)
        return {name: torch.from_numpy(value) for name, value in
                zip(wanted, self.session.run(wanted, feeds), strict=True)}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.run(input_ids, attention_mask)

    def encode(self, sentences: str | list[str], **kwargs: Any) -> Any:
        return self.encoder.encode(sentences, **kwargs)

    similarity = MultiTaskNetwork.similarity  # the same cosines, from the graph's embeddings

    def predict(self, texts: str | list[str], batch_size: int = 32) -> list[dict[str, Any]]:
        from mtst.inference.predict import predict

        return predict(self, texts, batch_size=batch_size)


def load_onnx(path: str | Path, quantized: bool = False, threads: int = 0) -> OnnxMultiTaskModel:
    """An export folder written with `mtst export --onnx` (its root, `mtst/` or `onnx/`)."""
    from mtst.inference.loading import MTST_FOLDER

    path = Path(path)
    name = INT8_FILE if quantized else FP32_FILE
    for root in (path, path.parent):
        if (root / ONNX_FOLDER / name).is_file() and (root / MTST_FOLDER).is_dir():
            return OnnxMultiTaskModel(root / ONNX_FOLDER / name, root / MTST_FOLDER, threads)
    hint = " --quantize int8" if quantized else ""
    raise MtstError(f"'{path}' holds no {ONNX_FOLDER}/{name}: write it with "
                    f"`mtst export --checkpoint CKPT --out DIR --onnx{hint}`")
