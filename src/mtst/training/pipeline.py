"""The training and evaluation runs behind `train.py` and `evaluate.py`, composed from a config."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mtst.errors import MtstError
from mtst.model.backbone import load_tokenizer
from mtst.model.multitask import MultiTaskModel
from mtst.training.callbacks import reliability_callbacks, stop_signals_as_errors
from mtst.training.checkpoints import AtomicCheckpointIO, resolve_ckpt_path
from mtst.training.compiling import compile_encoder, compile_errors
from mtst.training.freezing import run_record
from mtst.training.loggers import close_loggers, log_hp_metric
from mtst.training.metrics import format_report
from mtst.training.runs import to_float_dict, write_json
from mtst.training.settings import check_settings, instantiated, lightning_setting_errors

log = logging.getLogger("mtst")

# trainer settings mtst reads itself (not Lightning Trainer arguments): removed before the Trainer
# is built. compile: torch.compile the encoder (the backbone and pooling) before fitting
MTST_TRAINER_KEYS = ("compile",)
BACKBONE_KEYS = ("name_or_path", "pretrained", "trust_remote_code", "revision", "attn_implementation")


def backbone_settings(cfg: DictConfig) -> dict[str, Any]:
    return {k: cfg.backbone.get(k) for k in BACKBONE_KEYS if k in cfg.backbone}


def build_datamodule(cfg: DictConfig, tokenizer) -> L.LightningDataModule:
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.set_tokenizer(tokenizer)
    datamodule.setup("fit")
    return datamodule


def build_model(cfg: DictConfig, labels: dict[str, list[str]]) -> MultiTaskModel:
    # labels come from the data: handed to the constructor, never merged into OmegaConf, which
    # would resolve a label named "${oc.env:...}"
    model = instantiate(cfg.model, _partial_=True, _convert_="all")(
        backbone=backbone_settings(cfg),
        labels=labels,
        freeze=OmegaConf.to_container(cfg.freeze, resolve=True),
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
    callbacks = [instantiated(f"callbacks.{name}", lambda c=c: instantiate(c))
                 for name, c in (cfg.get("callbacks") or {}).items() if c]
    callbacks += reliability_callbacks()
    loggers = [instantiated(f"logger.{name}", lambda lg=lg: instantiate(lg))
               for name, lg in (cfg.get("logger") or {}).items() if lg]
    return instantiated("trainer", lambda: instantiate(
        trainer_arguments(cfg),
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        **overrides,
    ))


def route_lightning_logs() -> None:
    """Lightning adds its own console handler; under Hydra that prints every line twice."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; writes metrics.json and returns the final metrics."""
    check_settings(cfg)
    route_lightning_logs()
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.log_dir)
    trainer = build_trainer(cfg)  # before the data: a rejected setting fails in a second
    tokenizer = load_tokenizer(**backbone_settings(cfg))
    datamodule = build_datamodule(cfg, tokenizer)
    model = build_model(cfg, datamodule.label_space.to_dict())
    if model.freezer.trains_nothing:  # freeze=all: evaluate as is, then linear probes
        from mtst.training.probes import probe_train

        return probe_train(cfg, model, datamodule, trainer)
    compiling = compile_encoder(model, cfg.trainer.get("compile", False))
    started = time.perf_counter()
    with lightning_setting_errors(), stop_signals_as_errors(trainer), compile_errors(compiling):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    record = run_record(model, time.perf_counter() - started)
    metrics = to_float_dict(trainer.callback_metrics)
    best = _best_checkpoint(trainer)
    log_hp_metric(trainer, getattr(trainer.checkpoint_callback, "best_model_score", None))
    if cfg.get("run_test", True) and datamodule.has_split("test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False)
        metrics.update(to_float_dict(trainer.callback_metrics))
        _write_ner_report(model, output_dir)
    metrics = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
    close_loggers(trainer)
    if trainer.is_global_zero:  # under DDP only rank 0 writes files
        write_json(output_dir / "metrics.json", {"metrics": metrics, "best_checkpoint": best, **record})
        _print_summary(output_dir, best, metrics)
    return metrics


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test a checkpoint on the configured test split, with the labels stored in the checkpoint."""
    if not cfg.get("ckpt_path"):
        raise MtstError("evaluate needs ckpt_path=PATH (a .ckpt file written by train.py)")
    check_settings(cfg)
    route_lightning_logs()
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, cfg.paths.log_dir)
    model = MultiTaskModel.from_checkpoint(ckpt_path)
    datamodule = instantiate(cfg.data, _partial_=True, _convert_="all")(
        labels=model.label_space.to_dict()  # from the checkpoint: plain strings, not OmegaConf
    )
    datamodule.set_tokenizer(model.encoder.tokenizer)
    datamodule.setup("test")
    trainer = build_trainer(cfg)
    from mtst.inference.reports import TopicConfusion, write_topic_report

    confusion = TopicConfusion(model.label_space.classes)
    trainer.callbacks.append(confusion)
    trainer.test(model, datamodule=datamodule, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    metrics = {k: v for k, v in to_float_dict(trainer.callback_metrics).items() if k.startswith("test/")}
    _write_ner_report(model, output_dir)
    write_topic_report(model, confusion, output_dir)  # confusion_matrix.png/.txt + TensorBoard
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


def _write_ner_report(model: MultiTaskModel, output_dir: Path) -> None:
    report = getattr(model, "ner_report", None)
    if not report or not model.trainer.is_global_zero:
        return
    overall = {
        key: float(model.trainer.callback_metrics[f"test/ner_{key}"])
        for key in ("precision", "recall", "f1")
    }
    text = format_report(report, overall)
    (output_dir / "ner_report.txt").write_text(text + "\n", encoding="utf-8")
    from mtst.inference.reports import write_ner_figure

    write_ner_figure(model, report, overall, output_dir)  # ner_report.png + TensorBoard image
    log.info("NER per-type report (test):\n%s", text)
    for logger in model.loggers:
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_text"):
            experiment.add_text("test/ner_report", f"```\n{text}\n```", model.global_step)


def _print_summary(output_dir: Path, best: str | None, metrics: dict[str, float]) -> None:
    shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()) if v is not None)
    log.info("metrics: %s", shown)
    log.info("run folder:   %s", output_dir)
    log.info("checkpoint:   %s", best)
    log.info("TensorBoard:  tensorboard --logdir %s", output_dir / "tensorboard")
