"""The training and evaluation runs behind `train.py` and `evaluate.py`, composed from a config."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mtst.checkpoints.file_io import AtomicCheckpointIO, resolve_ckpt_path
from mtst.config.runs import to_float_dict, write_json
from mtst.config.settings import check_settings, instantiated, lightning_setting_errors
from mtst.data.labels import LabelSpace
from mtst.errors import MtstError
from mtst.freezing.strategies import run_record
from mtst.model.backbone import load_tokenizer
from mtst.model.encoder import SentenceEncoder
from mtst.model.network import MultiTaskNetwork
from mtst.tasks import build_tasks, select_tasks
from mtst.tasks.base import Task
from mtst.tasks.metrics import format_report
from mtst.training.callbacks import reliability_callbacks, stop_signals_as_errors
from mtst.training.compiling import compile_encoder
from mtst.training.loggers import (
    close_loggers,
    evaluation_hparams,
    log_best_checkpoint,
    log_hp_metric,
    log_run_hparams,
    run_hparams,
    tracker_hints,
)
from mtst.training.module import MultiTaskModule
from mtst.training.sharding import is_sharded_checkpoint, resolve_resume_path

log = logging.getLogger("mtst")

# trainer settings mtst reads itself (not Lightning Trainer arguments): removed before the Trainer
# is built. compile: torch.compile the encoder (the backbone and pooling) before fitting
MTST_TRAINER_KEYS = ("compile",)
BACKBONE_KEYS = (
    "name_or_path",
    "pretrained",
    "trust_remote_code",
    "revision",
    "attn_implementation",
)


def backbone_settings(cfg: DictConfig) -> dict[str, Any]:
    return {k: cfg.backbone.get(k) for k in BACKBONE_KEYS if k in cfg.backbone}


def configured_tasks(cfg: DictConfig) -> dict[str, Task]:
    """The `tasks` mapping of the config, resolved to plain data and checked."""
    return build_tasks(
        OmegaConf.to_container(cfg.tasks, resolve=True) if cfg.get("tasks") else None
    )


def drop_unselected_tasks(cfg: DictConfig) -> None:
    """Apply `tasks_only`: the other tasks leave `cfg.tasks` before anything reads it, so the
    data, heads, metrics and the checkpoint's config know the selected tasks alone."""
    if cfg.get("tasks_only") is None:
        return
    keep = select_tasks(cfg.get("tasks"), cfg.tasks_only)
    with open_dict(cfg.tasks):
        for name in [n for n in cfg.tasks if n not in keep]:
            del cfg.tasks[name]


def build_datamodule(
    cfg: DictConfig,
    tokenizer,
    tasks: dict[str, Task],
    label_spaces: dict[str, LabelSpace] | None = None,
    stage: str = "fit",
) -> L.LightningDataModule:
    # tasks and label spaces are objects built here: handed over after Hydra's config merge
    datamodule = instantiate(cfg.data, _partial_=True, _convert_="all")(
        tasks={n: t.data for n, t in tasks.items()}, label_spaces=label_spaces
    )
    datamodule.set_tokenizer(tokenizer)
    datamodule.setup(stage)
    return datamodule


def build_network(
    cfg: DictConfig, tasks: dict[str, Task], label_spaces: dict[str, LabelSpace]
) -> MultiTaskNetwork:
    """The backbone with `model.net`'s pooling and one head per task, sized by its labels."""
    settings = OmegaConf.to_container(cfg.model.net, resolve=True) if cfg.model.get("net") else {}
    encoder = SentenceEncoder.from_pretrained(**backbone_settings(cfg), **settings)
    # the configured name (`package:...`, a hub id), not the folder it resolved to here
    return MultiTaskNetwork(
        encoder,
        {n: t.network_spec(label_spaces[n]) for n, t in tasks.items()},
        backbone=str(cfg.backbone.name_or_path),
    )


def build_model(
    cfg: DictConfig, tasks: dict[str, Task], label_spaces: dict[str, LabelSpace]
) -> MultiTaskModule:
    # labels come from the data: handed to the network, never merged into OmegaConf, which
    # would resolve a label named "${oc.env:...}"
    node = OmegaConf.masked_copy(cfg.model, [k for k in cfg.model if k != "net"])
    model = instantiate(node, _partial_=True, _convert_="all")(
        net=build_network(cfg, tasks, label_spaces),
        tasks=OmegaConf.to_container(cfg.tasks, resolve=True),
        freeze=OmegaConf.to_container(cfg.freeze, resolve=True),
        weighting=OmegaConf.to_container(cfg.weighting, resolve=True) if cfg.get("weighting") else None,
    )
    # the whole resolved run config travels in every checkpoint (plain data, no Hydra needed)
    run_keys = [k for k in cfg if k != "hydra"]
    model.run_config = OmegaConf.to_container(OmegaConf.masked_copy(cfg, run_keys), resolve=True)
    return model


def trainer_arguments(cfg: DictConfig) -> dict[str, Any]:
    """`cfg.trainer` (resolved) without the keys mtst reads itself: what the Trainer is given."""
    node = OmegaConf.to_container(cfg.trainer, resolve=True)
    return {k: v for k, v in node.items() if k not in MTST_TRAINER_KEYS}


def build_trainer(cfg: DictConfig, **overrides: Any) -> L.Trainer:
    """The Trainer with the configured callbacks and loggers; a setting Lightning rejects is a
    one-line error naming its key (`trainer`, `callbacks.<name>`, `logger.<name>`)."""
    callbacks = [
        instantiated(f"callbacks.{name}", lambda c=c: instantiate(c))
        for name, c in (cfg.get("callbacks") or {}).items()
        if c
    ]
    callbacks += reliability_callbacks()
    loggers = [
        instantiated(f"logger.{name}", lambda lg=lg: instantiate(lg))
        for name, lg in (cfg.get("logger") or {}).items()
        if lg
    ]
    arguments = trainer_arguments(cfg)
    return instantiated(
        "trainer",
        lambda: instantiate(
            arguments,
            callbacks=callbacks,
            logger=loggers or False,
            plugins=[AtomicCheckpointIO()],
            **overrides,
        ),
    )


def route_lightning_logs() -> None:
    """Lightning adds its own console handler; under Hydra that prints every line twice."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; writes metrics.json and returns the final metrics."""
    drop_unselected_tasks(cfg)
    check_settings(cfg)
    route_lightning_logs()
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_resume_path(cfg.get("ckpt_path"), cfg.paths.log_dir)
    trainer = build_trainer(cfg)  # before the data: a rejected setting fails in a second
    tasks = configured_tasks(cfg)
    tokenizer = load_tokenizer(**backbone_settings(cfg))
    datamodule = build_datamodule(cfg, tokenizer, tasks)
    model = build_model(cfg, tasks, datamodule.label_spaces)
    log_run_hparams(trainer, run_hparams(cfg, tasks))
    if model.freezer.trains_nothing:  # freeze=all: evaluate as is, then linear probes
        from mtst.training.probe_run import probe_train

        return probe_train(cfg, model, datamodule, trainer)
    compile_encoder(model, cfg.trainer.get("compile", False))  # a compiler failure: one line
    started = time.perf_counter()
    with lightning_setting_errors(), stop_signals_as_errors(trainer):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    record = run_record(model, time.perf_counter() - started)
    metrics = to_float_dict(trainer.callback_metrics)
    best = _best_checkpoint(trainer)
    log_hp_metric(trainer, getattr(trainer.checkpoint_callback, "best_model_score", None))
    log_best_checkpoint(trainer, best)
    if cfg.get("run_test", True) and datamodule.has_split("test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
        metrics.update(to_float_dict(trainer.callback_metrics))
        _write_entity_reports(model, output_dir)
    metrics = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
    hints = tracker_hints(trainer)
    close_loggers(trainer)
    if trainer.is_global_zero:  # under DDP only rank 0 writes files
        write_json(
            output_dir / "metrics.json", {"metrics": metrics, "best_checkpoint": best, **record}
        )
        _print_summary(output_dir, best, metrics, hints)
    return metrics


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test a checkpoint on the configured test files of its tasks, with its label spaces."""
    if not cfg.get("ckpt_path"):
        raise MtstError("evaluate needs ckpt_path=PATH (a .ckpt file written by train.py)")
    drop_unselected_tasks(cfg)
    check_settings(cfg)
    route_lightning_logs()
    if is_sharded_checkpoint(cfg.ckpt_path):
        raise MtstError(
            f"ckpt_path={cfg.ckpt_path} is a sharded checkpoint folder (trainer=fsdp); "
            "make one file first: python -m lightning.pytorch.utilities."
            f"consolidate_checkpoint {cfg.ckpt_path}"
        )
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, cfg.paths.log_dir)
    from mtst.checkpoints.file_io import load_checkpoint
    from mtst.training.evaluation import TopicConfusion, write_topic_report

    net = MultiTaskNetwork.from_checkpoint(load_checkpoint(ckpt_path), str(ckpt_path))
    tasks = configured_tasks(cfg)
    unknown = [n for n in tasks if n not in net.label_spaces]
    if unknown:
        raise MtstError(
            f"tasks.{unknown[0]}: the checkpoint has no such task (it has "
            f"{', '.join(net.label_spaces)}); remove it with ~tasks.{unknown[0]}"
        )
    model = MultiTaskModule(net, OmegaConf.to_container(cfg.tasks, resolve=True))
    datamodule = build_datamodule(
        cfg, net.encoder.tokenizer, tasks, label_spaces=dict(net.label_spaces), stage="test"
    )
    trainer = build_trainer(cfg)
    log_run_hparams(trainer, evaluation_hparams(cfg, tasks, str(ckpt_path)))
    confusions = {
        n: TopicConfusion(n, net.label_spaces[n].ids)
        for n, t in tasks.items()
        if t.data_kind == "label"
    }
    trainer.callbacks.extend(confusions.values())
    trainer.test(model, datamodule=datamodule, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    metrics = {
        k: v for k, v in to_float_dict(trainer.callback_metrics).items() if k.startswith("test/")
    }
    _write_entity_reports(model, output_dir)
    for confusion in confusions.values():  # confusion matrices (.png/.txt) + TensorBoard
        write_topic_report(model, confusion, output_dir)
    if trainer.is_global_zero:
        write_json(output_dir / "metrics.json", {"metrics": metrics, "checkpoint": ckpt_path})
    close_loggers(trainer)
    log.info("test metrics: %s", metrics)
    return metrics


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    if callback is not None and callback.best_model_path:
        return callback.best_model_path
    return None


def _write_entity_reports(model: MultiTaskModule, output_dir: Path) -> None:
    """`<task>_report.txt` (and .png, and TensorBoard text) per token-classification task."""
    if not model.reports or not model.trainer.is_global_zero:
        return
    from mtst.training.evaluation import write_ner_figure

    for name, report in model.reports.items():
        overall = {
            key: float(model.trainer.callback_metrics[f"test/{name}/{key}"])
            for key in ("precision", "recall", "f1")
        }
        text = format_report(report, overall)
        (output_dir / f"{name}_report.txt").write_text(text + "\n", encoding="utf-8")
        write_ner_figure(name, report, overall, output_dir, model.loggers, model.global_step)
        log.info("%s per-type report (test):\n%s", name, text)
        for logger in model.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_text"):
                experiment.add_text(f"test/{name}/report", f"```\n{text}\n```", model.global_step)


def _print_summary(
    output_dir: Path, best: str | None, metrics: dict[str, float], hints: list[tuple[str, str]]
) -> None:
    shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if v is not None)
    log.info("metrics: %s", shown)
    log.info("run folder:   %s", output_dir)
    log.info("checkpoint:   %s", best)
    for tracker, command in hints:  # how to open this run in each configured logger
        log.info("%-13s %s", tracker + ":", command)
