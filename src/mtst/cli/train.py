"""`python train.py [overrides]` / `mtst-train`: train a multi-task model from the Hydra config."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mtst.cli._hydra import CONF_DIR, report_user_errors


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    """Returns `val/score` so that Hydra sweepers (Optuna) can optimise it."""
    from mtst.training.distributed import ddp_job_scope
    from mtst.training.pipeline import train

    with ddp_job_scope():  # a DDP job must not leak its process group into the next sweep job
        metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric", "val/score"))


if __name__ == "__main__":
    main()
