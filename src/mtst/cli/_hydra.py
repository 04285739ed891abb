"""Shared Hydra entry-point plumbing: config location, resolvers, one-line user errors."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtst.config.runs import CONF_DIR, ERROR_FILE, record_failure, register_resolvers
from mtst.errors import MtstError, exit_with, first_line

register_resolvers()


def hydra_entry(config_name: str, task: Callable[[Any], Any]) -> Callable[[], Any]:
    """The console entry point of a Hydra task: the command line is checked first (unknown
    group options and keys are one-line errors, exit 2), then Hydra composes and runs `task`."""
    import hydra

    from mtst.config.overrides import check_command_line

    app = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(
        report_user_errors(task)
    )

    @functools.wraps(task)
    def main() -> Any:
        try:
            check_command_line(sys.argv[1:], CONF_DIR, config_name)
        except MtstError as err:
            exit_with(err)
        return app()

    return main


def report_user_errors(task: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A user's mistake ends the run with one line on stderr and exit code 2, not a traceback.

    Any failure is also recorded in the run folder (`error.txt` and the run's log; for a sweep
    job also metrics.json's "error"), so a folder left by a failed run says why. Set
    MTST_TRACEBACK=1 to see the traceback of a user error anyway.
    """

    @functools.wraps(task)  # Hydra names the job (and its log file) after the task's module
    def wrapped(cfg: Any) -> Any:
        try:
            result = task(cfg)
        except Exception as err:
            user_error = _user_error(err)
            line = _record_failure(user_error or err)
            if _sweep_goes_on(cfg) and not getattr(user_error, "ends_sweep", False):
                return _failed_job(cfg, line)
            if user_error is None or os.environ.get("MTST_TRACEBACK"):
                raise
            logging.getLogger("mtst").debug("user error", exc_info=True)
            exit_with(user_error)
        _clear_failure()
        return result

    return wrapped


def _run_folder() -> Path | None:
    """This job's output folder, on the process that writes the run's files (rank 0)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or int(os.environ.get("LOCAL_RANK", 0) or 0) != 0:
        return None
    if int(os.environ.get("NODE_RANK", 0) or 0) != 0:
        return None
    return Path(HydraConfig.get().runtime.output_dir)


def _record_failure(err: BaseException) -> str:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    folder = _run_folder()
    if folder is None:
        return first_line(err)
    line = record_failure(folder, err, sweep_job=HydraConfig.get().mode == RunMode.MULTIRUN)
    _log_to_files(f"run failed: {line} (details in {folder / ERROR_FILE})")
    return line


def _clear_failure() -> None:
    """A run resumed in the folder of a failed one and finished: the old error no longer holds."""
    folder = _run_folder()
    if folder is not None:
        (folder / ERROR_FILE).unlink(missing_ok=True)


def _log_to_files(message: str) -> None:
    """The error goes to the run's log file; the console already gets the one `error:` line."""
    record = logging.LogRecord("mtst", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


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


def _failed_job(cfg: Any, line: str) -> float:
    """Return `sweep.failed_score` to the sweeper for a failed job (already recorded in its
    folder), or with `failed_score: null` raise a plain error (Optuna marks the trial FAIL)."""
    from hydra.core.hydra_config import HydraConfig

    job = HydraConfig.get().job.num
    print(f"error: job {job} failed: {line}", file=sys.stderr)
    score = (cfg.get("sweep") or {}).get("failed_score")
    if score is None:
        raise RuntimeError(f"job {job} failed: {line}") from None
    return float(str(score).replace(".inf", "inf"))  # YAML -.inf may arrive as a string


def compose_in_process(
    output_dir: str | Path, overrides: list[str] | None = None, config_name: str = "train"
):
    """Compose the real conf/ tree without a Hydra app (tests, benchmarks, notebooks), with the
    run's outputs redirected to `output_dir`; `mtst.training.entry.train(cfg)` then runs it."""
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
