"""Evaluation pictures: the confusion matrix of each sentence-classification task and the
per-type scores of each token-classification task, as PNG files in the run folder
(`<task>_confusion_matrix.png`, `<task>_report.png`) and as TensorBoard images and text.

A confusion matrix is counted from the logits the test loop computes anyway (a forward hook on
the task's head), so evaluation does not run the model a second time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mtst.files import save_figure


class TopicConfusion(L.Callback):
    """Counts (gold, predicted) class pairs of one task during `trainer.test`, summed over all
    ranks."""

    def __init__(self, task: str, classes: list[str]) -> None:
        self.task, self.classes = task, list(classes)
        self.counts = torch.zeros(len(classes), len(classes), dtype=torch.long)
        self._logits: torch.Tensor | None = None
        self._handle: Any = None

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.counts = torch.zeros_like(self.counts, device=pl_module.device)
        self._handle = pl_module.net.heads[self.task].register_forward_hook(self._keep)

    def _keep(self, module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self._logits = output.detach()

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                          batch: dict[str, torch.Tensor], batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        logits, self._logits = self._logits, None
        rows = batch[f"{self.task}.has"]
        if logits is None or not rows.any() or logits.size(0) != rows.size(0):
            return
        n = len(self.classes)
        pairs = batch[f"{self.task}.labels"][rows] * n + logits[rows].argmax(-1)
        self.counts += torch.bincount(pairs, minlength=n * n).view(n, n).to(self.counts.device)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.counts = trainer.strategy.reduce(self.counts, reduce_op="sum").cpu()


def confusion_text(classes: list[str], counts: np.ndarray) -> str:
    """Rows: gold topic; columns: predicted topic."""
    width = max(11, *(len(c) for c in classes))
    corner = "gold/pred"
    lines = [f"{corner:>{width}} " + " ".join(f"{c:>{width}}" for c in classes)]
    for name, row in zip(classes, counts, strict=True):
        lines.append(f"{name:>{width}} " + " ".join(f"{int(v):>{width}d}" for v in row))
    return "\n".join(lines)


def confusion_figure(task: str, classes: list[str], counts: np.ndarray) -> Figure:
    """Counts coloured by the share of each gold row (recall per class on the diagonal)."""
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    size = 2.5 + 0.7 * len(classes)
    fig = Figure(figsize=(size + 1, size), dpi=110)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="share of the gold class")
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, str(int(value)), ha="center", va="center", fontsize=9,
                color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel(f"predicted {task}")
    ax.set_ylabel(f"gold {task}")
    accuracy = np.trace(counts) / max(int(counts.sum()), 1)
    ax.set_title(f"{task}: confusion matrix (accuracy {accuracy:.3f}, n={int(counts.sum())})",
                 fontsize=10)
    fig.tight_layout()
    return fig


def ner_figure(task: str, report: dict[str, dict[str, float]], overall: dict[str, float]) -> Figure:
    """Per entity type precision, recall and F1 as grouped bars (support in the tick labels)."""
    names = list(report) + ["micro avg"]
    rows = [*report.values(), {**overall, "support": sum(r["support"] for r in report.values())}]
    fig = Figure(figsize=(2.5 + 1.1 * len(names), 4.2), dpi=110)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for k, metric in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (k - 1) * 0.26, [r[metric] for r in rows], width=0.26, label=metric)
    ax.set_xticks(x, [f"{n}\n(n={int(r['support'])})" for n, r in zip(names, rows, strict=True)])
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(f"{task}: per entity type (seqeval, entity level)", fontsize=10)
    fig.tight_layout()
    return fig


def figure_image(fig: Figure) -> np.ndarray:
    """RGB array [H, W, 3] of a figure, for TensorBoard's image tab."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def tensorboard_writers(loggers: Any) -> list[Any]:
    writers = []
    for logger in loggers or []:
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_image") and hasattr(experiment, "add_text"):
            writers.append(experiment)
    return writers


def log_figure(loggers: Any, step: int, tag: str, fig: Figure, text: str | None = None) -> None:
    """The figure as a TensorBoard image (and `text` as TensorBoard text) in every TB logger."""
    image = figure_image(fig)
    for writer in tensorboard_writers(loggers):
        writer.add_image(tag, image, step, dataformats="HWC")
        if text is not None:
            writer.add_text(tag, f"```\n{text}\n```", step)


def write_topic_report(model: L.LightningModule, confusion: TopicConfusion, output_dir: Path) -> None:
    """`<task>_confusion_matrix.png` / `.txt` in the run folder, and the same in TensorBoard."""
    counts = confusion.counts.numpy()
    if counts.sum() == 0 or not model.trainer.is_global_zero:
        return
    task = confusion.task
    fig = confusion_figure(task, confusion.classes, counts)
    text = confusion_text(confusion.classes, counts)
    save_figure(fig, Path(output_dir) / f"{task}_confusion_matrix.png")
    (Path(output_dir) / f"{task}_confusion_matrix.txt").write_text(text + "\n", encoding="utf-8")
    log_figure(model.loggers, model.global_step, f"test/{task}/confusion_matrix", fig, text)


def write_ner_figure(task: str, report: dict[str, dict[str, float]], overall: dict[str, float],
                     output_dir: Path, loggers: Any, step: int) -> None:
    """`<task>_report.png` in the run folder and as a TensorBoard image (the text is logged by
    the caller)."""
    fig = ner_figure(task, report, overall)
    save_figure(fig, Path(output_dir) / f"{task}_report.png")
    log_figure(loggers, step, f"test/{task}/report_figure", fig)
