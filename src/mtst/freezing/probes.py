"""`freeze=all`: the pretrained encoder as a fixed feature extractor, read by linear probes.

Sentence classification: logistic regression on pooled sentence embeddings. Token
classification: logistic regression on the token state of each word's first sub-token (the same
token a head reads); words cut off by truncation are predicted `O`, as in `word_predictions`.
Sentence similarity has nothing to fit: the probe is the frozen embedding's cosine as is. Scored
with the metric classes training uses, so `probe/val/topic/f1` compares directly with
`val/topic/f1` of a trained run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader

from mtst.data.collate import Collator
from mtst.tasks.base import Task
from mtst.tasks.metrics import EntityF1, format_report


def _stack(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


class Features:
    """Per task of one split: sentence embeddings / first-sub-token word states with their gold
    labels, or the cosines of its pairs with their gold scores."""

    def __init__(self, tasks: Mapping[str, Task]) -> None:
        self.tasks = dict(tasks)
        self.x: dict[str, list[np.ndarray]] = {n: [] for n in tasks}
        self.y: dict[str, list[Any]] = {n: [] for n in tasks}
        self.word_pos: dict[str, list[tuple[int, int]]] = {n: [] for n in tasks}
        self.examples: dict[str, list[tuple[int, list[int]]]] = {n: [] for n in tasks}

    def add(self, batch: dict[str, torch.Tensor], states: torch.Tensor, emb: torch.Tensor,
            emb_b: torch.Tensor, offset: int) -> None:
        word_ids = batch["word_ids"]
        first = (word_ids >= 0) & torch.cat(
            [torch.ones_like(word_ids[:, :1], dtype=torch.bool), word_ids[:, 1:] != word_ids[:, :-1]], 1)
        for name, task in self.tasks.items():
            has = batch[f"{name}.has"]
            if task.data_kind == "label":
                self.x[name].append(emb[has].float().cpu().numpy())
                self.y[name] += batch[f"{name}.labels"][has].tolist()
            elif task.data_kind == "tags":
                for row in has.nonzero().flatten().tolist():
                    n = int(batch["num_words"][row])
                    gold = batch[f"{name}.word_labels"][row, :n].tolist()
                    self.examples[name].append((offset + row, gold))
                    positions = first[row].nonzero().flatten()
                    words = word_ids[row, positions].tolist()
                    self.x[name].append(states[row, positions].float().cpu().numpy())
                    self.y[name] += [gold[w] for w in words]
                    self.word_pos[name] += [(offset + row, w) for w in words]
            else:
                rows = batch["pair_rows"]
                mine = has[rows]
                scores = batch[f"{name}.scores"][rows][mine]
                cosines = F.cosine_similarity(emb[rows][mine].float(), emb_b[mine].float(), dim=-1)
                scored = ~torch.isnan(scores)
                self.x[name].append(cosines[scored].cpu().numpy())
                self.y[name] += scores[scored].tolist()

    def arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return _stack(self.x[name]), np.asarray(self.y[name])


@torch.inference_mode()
def extract(net, loader, tasks: Mapping[str, Task]) -> Features:
    """Run the frozen encoder once over a split (eval mode: deterministic)."""
    net.eval()
    device = net.device
    feats, offset = Features(tasks), 0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        states, emb = net.encoder(batch["input_ids"], batch["attention_mask"])
        emb_b = emb[:0]
        if batch["pair_rows"].numel():
            _, emb_b = net.encoder(batch["input_ids_b"], batch["attention_mask_b"])
        feats.add(batch, states, emb, emb_b, offset)
        offset += batch["input_ids"].size(0)
    return feats


def _classifier(settings: dict[str, Any], seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(
        C=float(settings["C"]), max_iter=int(settings["max_iter"]),
        class_weight=settings["class_weight"], random_state=seed))


def fit_probes(train: Features, settings: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """One probe per classification task with at least two distinct labels in the training split.

    BLAS runs single-threaded here: lbfgs on these small matrices is several times faster so.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_probes(train, settings, seed)


def _fit_probes(train: Features, settings: dict[str, Any], seed: int) -> dict[str, Any]:
    probes: dict[str, Any] = {}
    cap = int(settings["max_train_words"] or 0)
    for name, task in train.tasks.items():
        if task.data_kind == "pair":
            continue
        x, y = train.arrays(name)
        if task.data_kind == "tags" and cap and len(y) > cap:  # bound fitting time, reproducibly
            keep = np.random.default_rng(seed).choice(len(y), cap, replace=False)
            x, y = x[keep], y[keep]
        if len(set(y.tolist())) >= 2:
            probes[name] = _classifier(settings, seed).fit(x, y)
    return probes


def score_probes(probes: dict[str, Any], feats: Features, spaces: Mapping[str, Any],
                 stage: str) -> tuple[dict[str, float], dict[str, EntityF1]]:
    """Metrics named `probe/<stage>/<task>/<metric>` and each token task's metric (for its
    per-type report)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return _score_probes(probes, feats, spaces, stage)


def _score_probes(probes: dict[str, Any], feats: Features, spaces: Mapping[str, Any],
                  stage: str) -> tuple[dict[str, float], dict[str, EntityF1]]:
    metrics: dict[str, float] = {}
    scores, entity_metrics = [], {}
    for name, task in feats.tasks.items():
        x, y = feats.arrays(name)
        states = task.new_metrics(spaces[name])
        if task.data_kind == "label" and name in probes and len(y):
            preds = torch.as_tensor(probes[name].predict(x))
            for metric in states.values():
                metric.update(preds, torch.as_tensor(y))
        elif task.data_kind == "tags" and name in probes and feats.examples[name]:
            tagged = probes[name].predict(x) if len(x) else []
            by_word = dict(zip(feats.word_pos[name], (int(t) for t in tagged), strict=True))
            golds = [gold for _, gold in feats.examples[name]]
            preds = [[by_word.get((row, w), 0) for w in range(len(gold))]
                     for row, gold in feats.examples[name]]
            states["entities"].update(preds, golds)
            entity_metrics[name] = states["entities"]
        elif task.data_kind == "pair" and len(y):
            states["correlation"].update(torch.as_tensor(x), torch.as_tensor(y))
        else:
            continue
        values = {k: float(v) for k, v in task.compute(states).items()}
        metrics.update({f"probe/{stage}/{name}/{k}": v for k, v in values.items()})
        if task.in_score:
            scores.append(values[task.main_metric])
    if scores:
        metrics[f"probe/{stage}/score"] = float(np.mean(scores))
    return metrics, entity_metrics


def run_probes(module, datamodule, settings: dict[str, Any], output_dir: Path, seed: int = 0,
               stages: tuple[str, ...] = ("val", "test")) -> tuple[dict[str, float], float]:
    """Fit probes on the train split, score them on `stages`; returns (metrics, seconds)."""
    started = time.perf_counter()
    collate = Collator(datamodule.pad_token_id, {n: t.data_kind for n, t in module.tasks.items()})
    net = module.net

    def loader(split: str) -> DataLoader:
        return DataLoader(datamodule.dataset(split), batch_size=datamodule.eval_batch_size,
                          shuffle=False, collate_fn=collate)

    train = extract(net, loader("train"), module.tasks) if datamodule.has_split("train") else None
    probes = fit_probes(train, settings, seed) if train is not None else {}
    seconds = time.perf_counter() - started
    metrics: dict[str, float] = {}
    for stage in stages:
        if not datamodule.has_split(stage):
            continue
        feats = extract(net, loader(stage), module.tasks)
        stage_metrics, entities = score_probes(probes, feats, net.label_spaces, stage)
        metrics.update(stage_metrics)
        for name, metric in entities.items() if stage == "test" else ():
            overall = {k: stage_metrics[f"probe/test/{name}/{k}"] for k in ("precision", "recall", "f1")}
            text = format_report(metric.per_type(), overall)
            (Path(output_dir) / f"probe_{name}_report.txt").write_text(text + "\n", encoding="utf-8")
    return metrics, seconds
