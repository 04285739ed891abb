"""Row 9: the ONNX graphs of a trained MiniLM topic + NER model against its torch model.

Trained round robin (so both heads predict something) and exported with `--onnx --quantize int8`;
fp32 must give torch's tags, topics and entities exactly, int8 close embeddings and F1.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import BENCH_OVERRIDES, Budget, compose, scratch_dir

TARGETS = {"fp32_cosine": 0.99999, "int8_cosine": 0.99, "int8_f1_drop": 1.0}


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row pair in float64; rows that are zero in both (no token) count as equal."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return np.where((na == 0) & (nb == 0), 1.0, (a * b).sum(1) / np.maximum(na * nb, 1e-300))


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(row_cosines(a, b).min())


def compare_backends(export_dir: Path, datamodule: Any, sentences: list[str],
                     threads: int = 0) -> dict[str, Any]:
    """Torch, fp32 ONNX and int8 ONNX of one export on the same test data (see the module doc)."""
    from seqeval.metrics import f1_score

    import mtst
    from benchmarks.quality import test_predictions

    models = {"torch": mtst.load(export_dir),
              "fp32": mtst.load(export_dir, backend="onnx", threads=threads),
              "int8": mtst.load(export_dir, backend="onnx", quantized=True, threads=threads)}
    emb = {k: m.encode(sentences, batch_size=32, show_progress_bar=False) for k, m in models.items()}
    batches = {k: test_predictions(m, datamodule) for k, m in models.items()}
    ref = batches["torch"]

    def f1(pred: list[list[str]]) -> float:
        return 100 * float(f1_score(ref["ner"]["gold"], pred))

    def differ(k: str, task: str) -> int:
        return sum(p != q for p, q in zip(batches[k][task]["pred"], ref[task]["pred"], strict=True))

    result: dict[str, Any] = {"sentences": len(sentences), "titles": len(ref["topic"]["gold"])}
    for k in ("fp32", "int8"):
        cos = row_cosines(emb[k], emb["torch"])
        result[k] = {"min_cosine_to_torch": float(cos.min()), "mean_cosine_to_torch": float(cos.mean()),
                     "word_tags_differ": differ(k, "ner"), "topics_differ": differ(k, "topic"),
                     "ner_f1": f1(batches[k]["ner"]["pred"])}
    pairs = list(zip(models["fp32"].predict(sentences), models["torch"].predict(sentences),
                     strict=True))

    def entities(r: dict[str, Any]) -> list[tuple]:
        return [(e["text"], e["type"], e["start"], e["end"]) for e in r["ner"]]

    result["fp32"].update(topic_label_differs=sum(x["topic"]["label"] != y["topic"]["label"]
                                                  for x, y in pairs),
                          entities_differ=sum(entities(x) != entities(y) for x, y in pairs))
    fp32 = result["fp32"]
    return {**result, "torch_ner_f1": f1(ref["ner"]["pred"]),
            "int8_f1_drop": fp32["ner_f1"] - result["int8"]["ner_f1"],
            "fp32_identical": not (fp32["word_tags_differ"] or fp32["topics_differ"]
                                   or fp32["topic_label_differs"] or fp32["entities_differ"]),
            "targets": TARGETS}


def conll_sentences(path: Path) -> list[str]:
    """The sentences of a CoNLL file as the data pipeline reads them, words joined by spaces."""
    from mtst.data.readers import read_conll

    return [" ".join(record.data["tokens"]) for record in read_conll(str(path))]


def run(budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    from benchmarks.training import FIT_KWARGS, build
    from mtst.inference.export import export_model
    from mtst.training.entry import build_trainer

    with scratch_dir("onnx") as tmp:
        cfg = compose(Path(tmp), [*BENCH_OVERRIDES, "data.sampling=round_robin"])
        started = time.perf_counter()
        datamodule, model = build(cfg)
        build_trainer(cfg, max_steps=budget.onnx_steps, **FIT_KWARGS).fit(model, datamodule=datamodule)
        datamodule.setup("test")
        seconds = time.perf_counter() - started
        export_dir = Path(tmp) / "export"
        export_model(model.eval().net, export_dir, onnx=True, quantize="int8")  # the network alone
        sentences = conll_sentences(data["conll2003"] / "test.txt")
        sentences = sentences[: budget.onnx_sentences or None]
        result = compare_backends(export_dir, datamodule, sentences, threads=torch.get_num_threads())
        sizes = {k: (export_dir / "onnx" / f).stat().st_size / 2**20
                 for k, f in (("fp32", "model.onnx"), ("int8", "model_int8.onnx"))}
    return {"train_steps": budget.onnx_steps, "train_seconds": seconds, "graph_mib": sizes, **result}
