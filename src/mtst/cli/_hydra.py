"""Shared Hydra entry-point plumbing: config location, resolvers, one-line user errors."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtst.errors import MtstError
from mtst.training.runs import register_resolvers

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONF_DIR = Path(os.environ.get("MTST_CONF_DIR", PROJECT_ROOT / "conf"))

register_resolvers(CONF_DIR.parent)


def report_user_errors(task: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A user's mistake ends the run with one line on stderr and exit code 2, not a traceback.

    Set MTST_TRACEBACK=1 to see the traceback anyway.
    """

    def wrapped(cfg: Any) -> Any:
        try:
            return task(cfg)
        except Exception as err:
            user_error = _user_error(err)
            if _sweep_goes_on(cfg):
                return _failed_job(cfg, user_error or err)
            if user_error is None or os.environ.get("MTST_TRACEBACK"):
                raise
            logging.getLogger("mtst").debug("user error", exc_info=True)
            print(f"error: {user_error}", file=sys.stderr)
            raise SystemExit(2) from None

    wrapped.__name__ = task.__name__
    wrapped.__doc__ = task.__doc__
    return wrapped


def _user_error(err: BaseException | None) -> MtstError | None:
    """The MtstError behind `err`: Hydra's `instantiate` wraps errors raised in constructors."""
    for _ in range(8):
        if err is None or isinstance(err, MtstError):
            return err
        err = err.__cause__
    return None


def _sweep_goes_on(cfg: Any) -> bool:
    """In a multirun with `sweep.continue_on_error`, one failed job must not end the sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return False
    return bool((cfg.get("sweep") or {}).get("continue_on_error", False))


def _failed_job(cfg: Any, err: Exception) -> float:
    """Record the failure in the job folder; return `sweep.failed_score` to the sweeper, or with
    `failed_score: null` raise a plain error (Optuna then marks the trial FAIL and goes on)."""
    from hydra.core.hydra_config import HydraConfig

    from mtst.training.runs import record_failure

    job = HydraConfig.get().job.num
    line = record_failure(HydraConfig.get().runtime.output_dir, err)
    print(f"error: job {job} failed: {line}", file=sys.stderr)
    score = (cfg.get("sweep") or {}).get("failed_score")
    if score is None:
        raise RuntimeError(f"job {job} failed: {line}") from None
    return float(str(score).replace(".inf", "inf"))  # YAML -.inf may arrive as a string


def compose_in_process(
    output_dir: str | Path, overrides: list[str] | None = None, config_name: str = "train"
):
    """Compose the real conf/ tree without a Hydra app (tests, benchmarks, notebooks), with the
    run's outputs redirected to `output_dir`; `mtst.training.pipeline.train(cfg)` then runs it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    output_dir = Path(output_dir)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides or []), return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig().set_config(cfg)
    return cfg
