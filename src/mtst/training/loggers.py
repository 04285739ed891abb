"""TensorBoard for a whole run: one event file, and `hp_metric` written once with its value.

Lightning closes a logger at the end of every `fit`, `validate` and `test` call and the next call
opens a new event file, so a run that fits, tests and then adds its reports would leave three;
its `default_hp_metric` also logs a placeholder `hp_metric = -1` at step 0 of every call.
`RunTensorBoardLogger` only flushes at those points, and `training/entry.py` closes it at the end.

Every logger gets `run_hparams` as its hyper-parameters: the settings that make runs differ, as
one flat dict with short keys (the module's own constructor arguments, Lightning's default, are
the tasks' file lists and every weighting method's settings, whichever method runs).

MLflow and W&B (`logger=mlflow`, `logger=wandb`) keep their runs outside the run folder (one
database, a project): each run there also gets its best checkpoint's path (`log_best_checkpoint`),
the way back to the weights; Lightning's `log_model`, which would copy the `.ckpt` files into the
tracker without the `checkpoints/tensors/` files they refer to, is off (conf/logger/).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import lightning as L
from hydra.utils import get_class
from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from mtst.errors import MtstError


class RunTensorBoardLogger(TensorBoardLogger):
    """A TensorBoardLogger whose event file stays open from the first log to `close()`."""

    def __init__(self, *args: Any, default_hp_metric: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, default_hp_metric=default_hp_metric, **kwargs)

    def finalize(self, status: str) -> None:
        # Lightning's `save` flushes the writer and writes hparams.yaml; the writer stays open
        # (one event file per run: tests/test_train.py)
        self.save()

    def close(self) -> None:
        super().finalize("success")


class RunMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger, whose MLflow lines go where the run's other records go.

    MLflow gives its loggers their own stderr handler when imported, and building the client
    creates the SQLite store's tables, saying so there: past the console filter
    (`mtst.console`), before any run line. Handed to the application's handlers first, they
    reach `train.log`, and the console shows MLflow's errors only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import logging

        import mlflow  # noqa: F401  (configures its loggers)

        for name in ("mlflow", "alembic"):  # their levels stay MLflow's (INFO, WARNING)
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
        super().__init__(*args, **kwargs)


class RunWandbLogger(WandbLogger):
    """Lightning's WandbLogger with one W&B run per mtst run, finished by `close()`.

    Lightning's `finalize` (end of every `fit`/`test` call) leaves the run open, which is what a
    fit-then-test run needs, but nothing finishes it before the process exits: the next job of
    an in-process sweep would log into it (Lightning reuses an open `wandb.run`). A failed call
    (`finalize("failed")`) finishes it as failed. Lightning also always passes `anonymous` to
    `wandb.init`, which wandb reports on stderr as a setting without effect, even when None.
    And `wandb.init` advertises its LLM-call tracer (Weave) on stderr, whatever `settings.silent`
    says, whenever `openai` or `huggingface_hub.inference` is imported in the process: turned
    off through its documented switch, `WANDB_DISABLE_WEAVE` (unless the user set it)."""

    def __init__(
        self, *args: Any, settings: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if settings is not None:  # checked now: a wrong value fails before the data is read
            kwargs["settings"] = wandb_settings(settings)
        os.environ.setdefault("WANDB_DISABLE_WEAVE", "true")
        super().__init__(*args, **kwargs)
        # private: `_wandb_init` is the only route to what Lightning hands `wandb.init` (it has
        # no option to leave `anonymous` out); pinned by tests/test_trackers.py (console) and
        # tests/test_private_api.py
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)

    def finalize(self, status: str) -> None:
        super().finalize(status)
        if status != "success":
            self._finish(exit_code=1)

    def close(self) -> None:
        super().finalize("success")
        self._finish(exit_code=0)

    @staticmethod
    def _finish(exit_code: int) -> None:
        # `wandb.run`: the run this process started, if any (the logger's `experiment` property
        # would start one); Lightning's logger holds the same run
        import wandb

        if wandb.run is not None:
            wandb.run.finish(exit_code=exit_code)


def wandb_settings(values: Mapping[str, Any]) -> Any:
    """`wandb.Settings(**values)`; a value wandb rejects is one line naming its key (pydantic's
    message spans several)."""
    import pydantic
    import wandb

    try:
        return wandb.Settings(**values)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise MtstError(f"settings.{key}={first['input']!r}: {first['msg']}") from None


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    """`{prefix/key: value}` for a nested setting; lists joined by commas, nulls left out."""
    if isinstance(value, Mapping):
        return {
            k: v for key, item in value.items() for k, v in _flat(f"{prefix}/{key}", item).items()
        }
    if value is None:
        return {}
    if isinstance(value, list | tuple):
        return {prefix: ",".join(str(v) for v in value)}
    return {prefix: value}


def run_hparams(cfg: DictConfig, tasks: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that shape a run (composed config `cfg`, its built `tasks`), flat and in the
    order of the HPARAMS tab's columns: what a sweep varies, so its runs compare side by side.
    Only the active weighting method's settings (`<method>/<key>`) and the active freeze
    strategy's (`freeze/<key>`) are named; the values are the config's, nothing defaulted here."""
    c = OmegaConf.to_container(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True
    )
    data, trainer, loss, opt = c["data"], c["trainer"], c["model"]["loss"], c["model"]["optimizer"]
    freeze, weighting = dict(c["freeze"]), dict(c["weighting"])
    method = get_class(weighting.pop("_target_"))  # its `name` is the option's (`dwa`)
    out: dict[str, Any] = {
        "backbone": c["backbone"]["name_or_path"],
        "pretrained": c["backbone"]["pretrained"],
        "pooling": c["model"]["net"]["pooling"],
        "max_length": c["model"]["net"]["max_length"],
    }
    budget = data["max_tokens"]
    out.update({"max_tokens": budget} if budget is not None else {"batch_size": data["batch_size"]})
    out["accumulate_grad_batches"] = trainer["accumulate_grad_batches"]
    out["sampling"] = data["sampling"]
    if data["sampling"] == "temperature":
        out["sampling/temperature"] = data["temperature"]
    out["max_epochs"] = trainer["max_epochs"]
    if trainer["max_steps"] != -1:
        out["max_steps"] = trainer["max_steps"]
    out.update({"precision": trainer["precision"], "seed": c["seed"], "freeze": get_class(freeze.pop("_target_")).name})
    out.update(_flat("freeze", freeze))
    out["weighting"] = method.name
    out.update(_flat(method.name, weighting))  # a method without settings adds no column
    if method.level == "gradient":
        out["grad_on"] = loss["grad_on"]
    out.update({k: opt[k] for k in ("lr_head", "lr_backbone", "weight_decay")})
    warmup = "warmup_steps" if opt.get("warmup_steps") else "warmup_ratio"  # as build_optimizer
    out[warmup] = opt[warmup]
    out["tasks"] = ",".join(tasks)
    out.update({f"weight/{name}": task.weight for name, task in tasks.items()})
    return {k: v for k, v in out.items() if v is not None}


def evaluation_hparams(cfg: DictConfig, tasks: Mapping[str, Any], checkpoint: str) -> dict[str, Any]:
    """An evaluation run's settings (conf/eval.yaml has no model, optimizer or freeze: those are
    the checkpoint's): which checkpoint, on which tasks, batched how, in which precision."""
    data = cfg.data
    out: dict[str, Any] = {"checkpoint": checkpoint, "tasks": ",".join(tasks)}
    if data.max_tokens is not None:
        out["max_tokens"] = data.max_tokens
    else:
        out["batch_size"] = data.batch_size
    out.update({"precision": cfg.trainer.precision, "seed": cfg.seed})
    return out


def log_run_hparams(trainer: L.Trainer, hparams: dict[str, Any]) -> None:
    """Hand `hparams` to every logger (TensorBoard writes the HPARAMS entry with `hp_metric`,
    at the end: `log_hp_metric`; `hparams.yaml` holds the same dict)."""
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)


def log_hp_metric(trainer: L.Trainer, score: Any) -> None:
    """TensorBoard's HPARAMS tab compares runs by `hp_metric`: log the run's best score once,
    with the hyper-parameters, so every run in the tab has its real value and nothing else."""
    if score is None:
        return
    value = float(score)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(
                logger.hparams, metrics={"hp_metric": value}, step=trainer.global_step
            )
        else:
            logger.log_metrics({"hp_metric": value}, step=trainer.global_step)


def log_best_checkpoint(trainer: L.Trainer, path: str | None) -> None:
    """Where the run's best weights are, in the trackers that keep runs away from the run
    folder: MLflow's run tag `best_checkpoint` (a tag: a resumed run may change it), W&B's
    run summary `best_checkpoint`. TensorBoard and CSV live in the run folder beside
    `checkpoints/` (and `metrics.json` names it)."""
    if path is None or not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger):
            logger.experiment.set_tag(logger.run_id, "best_checkpoint", path)
        elif isinstance(logger, WandbLogger):
            logger.experiment.summary["best_checkpoint"] = path


def tracker_hints(trainer: L.Trainer) -> list[tuple[str, str]]:
    """(tracker, the command that shows this run) for each logger with one: printed at the end
    of a run. Read before `close_loggers` (a finished W&B run is let go)."""
    hints = []
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            hints.append(
                ("TensorBoard", f"tensorboard --logdir {os.path.normpath(logger.log_dir)}")
            )
        elif isinstance(logger, MLFlowLogger):
            uri = logger.experiment.tracking_uri
            hints.append(("MLflow", f"mlflow ui --backend-store-uri {uri}"))
        elif isinstance(logger, WandbLogger):
            import wandb

            run = wandb.run  # the logger's run, when one was started
            if run is None:
                continue
            if run.settings.mode in ("offline", "dryrun"):
                hints.append(("W&B (offline)", f"wandb sync {run.settings.sync_dir}"))
            elif run.url:
                hints.append(("W&B", run.url))
    return hints


def task_layout(tasks: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """TensorBoard's CUSTOM SCALARS tab: one section per task, one chart per metric with its
    val and test curves, and the train loss; plus the run's score and total loss."""
    layout: dict[str, dict[str, list[Any]]] = {
        "run": {
            "score": ["Multiline", ["val/score", "test/score"]],
            "loss": ["Multiline", ["train/loss", "val/loss"]],
        }
    }
    for name, task in tasks.items():
        charts = {
            metric: ["Multiline", [f"val/{name}/{metric}", f"test/{name}/{metric}"]]
            for metric in task.metric_names
        }
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
        if isinstance(logger, RunTensorBoardLogger | RunWandbLogger):
            logger.close()
        else:
            logger.finalize("success")
