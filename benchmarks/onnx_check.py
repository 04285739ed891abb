"""Row 9: the ONNX graphs of a trained MiniLM topic + NER model against its torch model.

A small model is trained first (`onnx_steps` optimizer steps, batch 32, round-robin over
CoNLL-2003 and AG News titles: both heads learn something, so the comparison is on predictions
that mean something, not on random heads) and exported with `--onnx --quantize int8`. Then on
the CoNLL-2003 test sentences (and the AG News test rows of conf/data/conll_agnews.yaml):

- embeddings: `encode` of every sentence (its words joined by spaces), smallest cosine of each
  graph to torch (targets: fp32 >= 0.99999, int8 >= 0.99);
- labels: the tag of every word's first sub-token and the topic of every title on the
  DataModule's test batches, and `predict` (entities with character offsets) on the joined
  sentences, fp32 graph against torch (target: identical);
- CoNLL-2003 entity F1 (seqeval) of torch, fp32 and int8 (target: int8 within 1 point of fp32).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import BENCH_OVERRIDES, Budget, compose, scratch_dir

TARGETS = {"fp32_cosine": 0.99999, "int8_cosine": 0.99, "int8_f1_drop": 1.0}


def train_model(tmp: Path, steps: int, overrides: list[str] | None = None) -> tuple[Any, Any, float]:
    """(trained `MultiTaskModule` in eval mode, its DataModule set up for test, seconds)."""
    from benchmarks.training import FIT_KWARGS, build
    from mtst.training.pipeline import build_trainer

    cfg = compose(tmp, [*(overrides or BENCH_OVERRIDES), "data.sampling=round_robin"])
    started = time.perf_counter()
    datamodule, model = build(cfg)
    trainer = build_trainer(cfg, max_steps=steps, **FIT_KWARGS)
    trainer.fit(model, datamodule=datamodule)
    datamodule.setup("test")
    return model.eval(), datamodule, time.perf_counter() - started


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row pair in float64; rows that are zero in both (no token) count as equal."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    return np.where(both_zero, 1.0, (a * b).sum(1) / np.maximum(na * nb, 1e-300))


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(row_cosines(a, b).min())


def entity_f1(gold: list[list[str]], pred: list[list[str]]) -> float:
    from seqeval.metrics import f1_score

    return 100 * float(f1_score(gold, pred))


def same_predictions(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, int]:
    """Texts whose topic label or entities (text, type, start, end) differ between two runs."""
    def entities(r: dict[str, Any]) -> list[tuple]:
        return [(e["text"], e["type"], e["start"], e["end"]) for e in r["ner"]]

    return {"topic_label_differs": sum(x["topic"]["label"] != y["topic"]["label"]
                                       for x, y in zip(a, b, strict=True)),
            "entities_differ": sum(entities(x) != entities(y) for x, y in zip(a, b, strict=True))}


def compare_backends(export_dir: Path, datamodule: Any, sentences: list[str],
                     threads: int = 0) -> dict[str, Any]:
    """Torch, fp32 ONNX and int8 ONNX of one export on the same test data (see the module doc)."""
    import mtst
    from benchmarks.quality import test_predictions

    models = {"torch": mtst.load(export_dir),
              "fp32": mtst.load(export_dir, backend="onnx", threads=threads),
              "int8": mtst.load(export_dir, backend="onnx", quantized=True, threads=threads)}
    embeddings = {k: m.encode(sentences, batch_size=32, show_progress_bar=False)
                  for k, m in models.items()}
    batches = {k: test_predictions(m, datamodule) for k, m in models.items()}
    predicted = {k: models[k].predict(sentences) for k in ("torch", "fp32")}
    reference = batches["torch"]
    gold = reference["ner"]["gold"]
    result: dict[str, Any] = {"sentences": len(sentences), "titles": len(reference["topic"]["gold"])}
    for k in ("fp32", "int8"):
        b = batches[k]
        result[k] = {
            "min_cosine_to_torch": min_cosine(embeddings[k], embeddings["torch"]),
            "mean_cosine_to_torch": float(row_cosines(embeddings[k], embeddings["torch"]).mean()),
            "word_tags_differ": sum(p != q for p, q in zip(b["ner"]["pred"], reference["ner"]["pred"],
                                                          strict=True)),
            "topics_differ": sum(p != q for p, q in zip(b["topic"]["pred"], reference["topic"]["pred"],
                                                       strict=True)),
            "ner_f1": entity_f1(gold, b["ner"]["pred"]),
        }
    result["fp32"].update(same_predictions(predicted["fp32"], predicted["torch"]))
    result["torch_ner_f1"] = entity_f1(gold, reference["ner"]["pred"])
    result["int8_f1_drop"] = result["fp32"]["ner_f1"] - result["int8"]["ner_f1"]
    fp32 = result["fp32"]
    result["fp32_identical"] = not (fp32["word_tags_differ"] or fp32["topics_differ"]
                                    or fp32["topic_label_differs"] or fp32["entities_differ"])
    result["targets"] = TARGETS
    return result


def conll_sentences(path: Path) -> list[str]:
    """The sentences of a CoNLL file, words joined by single spaces (`-DOCSTART-` lines skipped)."""
    sentences, words = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        token = line.split(" ", 1)[0] if line.strip() else ""
        if not token or token == "-DOCSTART-":
            if words:
                sentences.append(" ".join(words))
            words = []
            continue
        words.append(token)
    if words:
        sentences.append(" ".join(words))
    return sentences


def run(budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    from mtst.inference.export import export_model

    with scratch_dir("onnx") as tmp:
        model, datamodule, seconds = train_model(Path(tmp), budget.onnx_steps)
        export_dir = Path(tmp) / "export"
        export_model(model.net, export_dir, onnx=True, quantize="int8")  # the network alone
        sentences = conll_sentences(data["conll2003"] / "test.txt")
        if budget.onnx_sentences:
            sentences = sentences[: budget.onnx_sentences]
        result = compare_backends(export_dir, datamodule, sentences, threads=torch.get_num_threads())
        sizes = {k: (export_dir / "onnx" / f).stat().st_size / 2**20
                 for k, f in (("fp32", "model.onnx"), ("int8", "model_int8.onnx"))}
    return {"train_steps": budget.onnx_steps, "train_seconds": seconds, "graph_mib": sizes, **result}
