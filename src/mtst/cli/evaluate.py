"""`python evaluate.py ckpt_path=... [data overrides]` / `mtst-eval`: test metrics of a checkpoint."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mtst.cli._hydra import CONF_DIR, report_user_errors


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
@report_user_errors
def main(cfg: DictConfig) -> None:
    from mtst.training.pipeline import evaluate

    evaluate(cfg)


if __name__ == "__main__":
    main()
