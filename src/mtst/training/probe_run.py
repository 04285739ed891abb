"""The `freeze=all` run: the model evaluated as it is, then the linear probes of
`mtst.freezing.probes` fitted on its frozen encoder and scored, recorded like a trained run."""

from __future__ import annotations

import logging
from pathlib import Path

from mtst.config.runs import to_float_dict, write_json
from mtst.freezing.probes import run_probes
from mtst.training.loggers import close_loggers, log_hp_metric

log = logging.getLogger("mtst")


def probe_train(cfg, model, datamodule, trainer) -> dict[str, float]:
    """The `freeze=all` run: evaluate the model as it is, then fit and score the probes.

    No optimizer is built (there is nothing to update). Writes metrics.json like a trained run,
    with the probes' figures under `probe/...` and `trainable_params` 0.
    """
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
    probe_metrics, seconds = run_probes(model, datamodule, model.freezer.probe,
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
