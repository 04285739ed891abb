"""`python evaluate.py ckpt_path=... [data overrides]` / `mtst-eval`: test metrics of a checkpoint."""

from __future__ import annotations

from omegaconf import DictConfig

from mtst.cli._hydra import hydra_entry


def evaluate_task(cfg: DictConfig) -> None:
    from mtst.training.entry import evaluate

    evaluate(cfg)


main = hydra_entry("eval", evaluate_task)

if __name__ == "__main__":
    main()
