"""`freeze=all`: the pretrained encoder as a fixed feature extractor, read by linear probes.

Topic: logistic regression on pooled sentence embeddings. NER: logistic regression on the token
state of each word's first sub-token (the same token the NER head reads); words cut off by
truncation are predicted `O`, as in `word_predictions`. Scored with the metric classes the model
uses, so `probe/val/cls_f1` compares directly with `val/cls_f1` of a trained run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from mtst.data.collate import Collator
from mtst.training.metrics import EntityF1, format_report

log = logging.getLogger("mtst")


class Features:
    """Sentence embeddings and first-sub-token word states of one split, with their labels."""

    def __init__(self) -> None:
        self.sent_x: list[np.ndarray] = []
        self.sent_y: list[int] = []
        self.word_x: list[np.ndarray] = []
        self.word_y: list[int] = []
        self.word_pos: list[tuple[int, int]] = []  # (example row in split, word index)
        self.ner_examples: list[tuple[int, list[int]]] = []  # (row, gold tags of every word)

    def add(self, batch: dict[str, torch.Tensor], states: torch.Tensor, emb: torch.Tensor,
            offset: int) -> None:
        has_cls = batch["has_cls"]
        self.sent_x.append(emb[has_cls].float().cpu().numpy())
        self.sent_y += batch["cls_labels"][has_cls].tolist()
        word_ids = batch["word_ids"]
        first = (word_ids >= 0) & torch.cat(
            [torch.ones_like(word_ids[:, :1], dtype=torch.bool), word_ids[:, 1:] != word_ids[:, :-1]], 1)
        for row in batch["has_ner"].nonzero().flatten().tolist():
            n = int(batch["num_words"][row])
            gold = batch["word_labels"][row, :n].tolist()
            self.ner_examples.append((offset + row, gold))
            positions = first[row].nonzero().flatten()
            words = word_ids[row, positions].tolist()
            self.word_x.append(states[row, positions].float().cpu().numpy())
            self.word_y += [gold[w] for w in words]
            self.word_pos += [(offset + row, w) for w in words]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        def stack(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

        return (stack(self.sent_x), np.asarray(self.sent_y), stack(self.word_x),
                np.asarray(self.word_y))


@torch.inference_mode()
def extract(model, loader) -> Features:
    """Run the frozen encoder once over a split (eval mode: deterministic)."""
    model.eval()
    device = next(model.parameters()).device
    feats, offset = Features(), 0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        states, emb = model.encoder(batch["input_ids"], batch["attention_mask"])
        feats.add(batch, states, emb, offset)
        offset += batch["input_ids"].size(0)
    return feats


def _classifier(settings: dict[str, Any], seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(
        C=float(settings.get("C", 1.0)), max_iter=int(settings.get("max_iter", 1000)),
        class_weight=settings.get("class_weight"), random_state=seed))


def fit_probes(train: Features, settings: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """One probe per task with at least two distinct labels in the training split.

    BLAS runs single-threaded here: lbfgs on these small matrices is several times faster so.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_probes(train, settings, seed)


def _fit_probes(train: Features, settings: dict[str, Any], seed: int) -> dict[str, Any]:
    sx, sy, wx, wy = train.arrays()
    probes: dict[str, Any] = {}
    if len(set(sy.tolist())) >= 2:
        probes["cls"] = _classifier(settings, seed).fit(sx, sy)
    cap = int(settings.get("max_train_words") or 0)
    if cap and len(wy) > cap:  # subsample words, reproducibly, to bound fitting time
        keep = np.random.default_rng(seed).choice(len(wy), cap, replace=False)
        wx, wy = wx[keep], wy[keep]
    if len(set(wy.tolist())) >= 2:
        probes["ner"] = _classifier(settings, seed).fit(wx, wy)
    return probes


def score_probes(probes: dict[str, Any], feats: Features, labels, stage: str) -> tuple[dict, Any]:
    """Metrics named `probe/<stage>/...` and the NER metric (for its per-type report)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return _score_probes(probes, feats, labels, stage)


def _score_probes(probes: dict[str, Any], feats: Features, labels, stage: str) -> tuple[dict, Any]:
    metrics: dict[str, float] = {}
    scores = []
    sx, sy, wx, _ = feats.arrays()
    n_classes = len(labels.classes)
    if "cls" in probes and len(sy):
        preds, target = torch.as_tensor(probes["cls"].predict(sx)), torch.as_tensor(sy)
        metrics[f"probe/{stage}/cls_acc"] = float(MulticlassAccuracy(n_classes, average="micro")(preds, target))
        metrics[f"probe/{stage}/cls_f1"] = float(MulticlassF1Score(n_classes, average="macro")(preds, target))
        scores.append(metrics[f"probe/{stage}/cls_f1"])
    ner = EntityF1(labels.tags)
    if "ner" in probes and feats.ner_examples:
        tagged = probes["ner"].predict(wx) if len(wx) else []
        by_word = dict(zip(feats.word_pos, (int(t) for t in tagged), strict=True))
        preds = [[by_word.get((row, w), 0) for w in range(len(gold))] for row, gold in feats.ner_examples]
        ner.update(preds, [gold for _, gold in feats.ner_examples])
        for key, value in ner.compute().items():
            metrics[f"probe/{stage}/ner_{key}"] = float(value)
        scores.append(metrics[f"probe/{stage}/ner_f1"])
    if scores:
        metrics[f"probe/{stage}/score"] = float(np.mean(scores))
    return metrics, ner


def run_probes(model, datamodule, settings: dict[str, Any], output_dir: Path, seed: int = 0,
               stages: tuple[str, ...] = ("val", "test")) -> tuple[dict[str, float], float]:
    """Fit probes on the train split, score them on `stages`; returns (metrics, seconds)."""
    started = time.perf_counter()
    collate = Collator(datamodule.pad_token_id)

    def loader(split: str) -> DataLoader:
        return DataLoader(datamodule.dataset(split), batch_size=datamodule.eval_batch_size,
                          shuffle=False, collate_fn=collate)

    probes = fit_probes(extract(model, loader("train")), settings, seed)
    seconds = time.perf_counter() - started
    metrics: dict[str, float] = {}
    for stage in stages:
        if not datamodule.has_split(stage):
            continue
        stage_metrics, ner = score_probes(probes, extract(model, loader(stage)), model.label_space, stage)
        metrics.update(stage_metrics)
        if stage == "test" and f"probe/{stage}/ner_f1" in stage_metrics:
            overall = {k: stage_metrics[f"probe/test/ner_{k}"] for k in ("precision", "recall", "f1")}
            text = format_report(ner.per_type(), overall)
            (Path(output_dir) / "probe_ner_report.txt").write_text(text + "\n", encoding="utf-8")
    return metrics, seconds


def probe_train(cfg, model, datamodule, trainer) -> dict[str, float]:
    """The `freeze=all` run: evaluate the model as it is, then fit and score the probes.

    No optimizer is built (there is nothing to update). Writes metrics.json like a trained run,
    with the probes' figures under `probe/...` and `trainable_params` 0.
    """
    from mtst.training.loggers import close_loggers, log_hp_metric
    from mtst.training.runs import to_float_dict, write_json

    output_dir = Path(cfg.paths.output_dir)
    model.freezer.apply(model, 0)
    metrics: dict[str, float] = {}
    if datamodule.has_split("val"):
        trainer.validate(model, datamodule=datamodule, verbose=False)
        metrics.update(to_float_dict(trainer.callback_metrics))
    stages = ("val", "test") if cfg.get("run_test", True) else ("val",)
    if "test" in stages and datamodule.has_split("test"):
        trainer.test(model, datamodule=datamodule, verbose=False)
        metrics.update(to_float_dict(trainer.callback_metrics))
    metrics = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
    if not trainer.is_global_zero:  # under DDP the probes (no collectives) run on rank 0 alone
        return metrics
    model.to(trainer.strategy.root_device)  # Lightning's teardown may have moved it to the CPU
    probe_metrics, seconds = run_probes(model, datamodule, dict(model.freezer.settings.get("probe") or {}),
                                        output_dir, seed=int(cfg.get("seed", 0)), stages=stages)
    metrics.update(probe_metrics)
    for logger in trainer.loggers:
        logger.log_metrics(probe_metrics, step=0)
    log_hp_metric(trainer, metrics.get("probe/val/score", metrics.get("val/score")))
    close_loggers(trainer)
    record = {"freeze": model.freezer.name, "trainable_params": 0, "train_seconds": round(seconds, 3)}
    write_json(output_dir / "metrics.json", {"metrics": metrics, "best_checkpoint": None, **record})
    shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(probe_metrics.items()))
    log.info("linear probes on the frozen encoder (%.1f s): %s", seconds, shown)
    log.info("run folder:   %s", output_dir)
    return metrics
