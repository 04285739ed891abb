"""`python train.py [overrides]` / `mtst-train`: train a multi-task model from the Hydra config."""

from __future__ import annotations

from omegaconf import DictConfig

from mtst.cli._hydra import hydra_entry


def train_task(cfg: DictConfig) -> float | None:
    """Returns `val/score` so that Hydra sweepers (Optuna) can optimise it."""
    from mtst.training.distributed import ddp_job_scope
    from mtst.training.entry import train

    with ddp_job_scope():  # a DDP job must not leak its process group into the next sweep job
        metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric", "val/score"))


main = hydra_entry("train", train_task)

if __name__ == "__main__":
    main()
