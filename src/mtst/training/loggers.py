"""TensorBoard for a whole run: one event file, and `hp_metric` written once with its value.

Lightning closes a logger at the end of every `fit`, `validate` and `test` call and the next call
opens a new event file, so a run that fits, tests and then adds its reports would leave three;
its `default_hp_metric` also logs a placeholder `hp_metric = -1` at step 0 of every call.
`RunTensorBoardLogger` only flushes at those points, and the pipeline closes it at the end.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger


class RunTensorBoardLogger(TensorBoardLogger):
    """A TensorBoardLogger whose event file stays open from the first log to `close()`."""

    def __init__(self, *args: Any, default_hp_metric: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, default_hp_metric=default_hp_metric, **kwargs)

    def finalize(self, status: str) -> None:
        # `_experiment` is Lightning's cached SummaryWriter; reading it (instead of the
        # `experiment` property) avoids creating a writer, and an event file, just to flush it.
        # Pinned by tests/test_train.py (one event file per run).
        if self._experiment is not None:
            self._experiment.flush()
        self.save()

    def close(self) -> None:
        super().finalize("success")


def log_hp_metric(trainer: L.Trainer, score: Any) -> None:
    """TensorBoard's HPARAMS tab compares runs by `hp_metric`: log the run's best score once,
    with the hyper-parameters, so every run in the tab has its real value and nothing else."""
    if score is None:
        return
    value = float(score)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(logger.hparams, metrics={"hp_metric": value},
                                   step=trainer.global_step)
        else:
            logger.log_metrics({"hp_metric": value}, step=trainer.global_step)


def task_layout(tasks: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """TensorBoard's CUSTOM SCALARS tab: one section per task, one chart per metric with its
    val and test curves, and the train loss; plus the run's score and total loss."""
    layout: dict[str, dict[str, list[Any]]] = {
        "run": {"score": ["Multiline", ["val/score", "test/score"]],
                "loss": ["Multiline", ["train/loss", "val/loss"]]}}
    for name, task in tasks.items():
        charts = {metric: ["Multiline", [f"val/{name}/{metric}", f"test/{name}/{metric}"]]
                  for metric in task.metric_names}
        charts["train loss"] = ["Multiline", [f"train/{name}/loss", f"train/{name}/loss_epoch"]]
        layout[name] = charts
    return layout


def log_task_layout(trainer: L.Trainer, tasks: dict[str, Any]) -> None:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_custom_scalars(task_layout(tasks))


def close_loggers(trainer: L.Trainer) -> None:
    """End of the run: everything reaches the disk, and writers kept open are closed."""
    for logger in trainer.loggers:
        if isinstance(logger, RunTensorBoardLogger):
            logger.close()
        else:
            logger.finalize("success")
