"""Run folders that never collide (created exclusively), resume into the same folder, and a
run's metrics.json."""

from __future__ import annotations

import functools
import math
import os
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mtst.errors import MtstError, exit_with, first_line, root_cause
from mtst.files import write_json

# the folder holding conf/ (MTST_CONF_DIR points elsewhere); its parent is the project root
PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONF_DIR = Path(os.environ.get("MTST_CONF_DIR", PROJECT_ROOT / "conf"))
RUN_STAMP = "%Y-%m-%d_%H-%M-%S"
MAX_TRIES = 64
ERROR_FILE = "error.txt"


def unique_suffix() -> str:
    """Six hex digits: two runs started in the same second get different folders."""
    return secrets.token_hex(3)


def new_run_folder(parent: str | Path, stamp: str | None = None) -> str:
    """Create `<parent>/<stamp>_<6 hex>` and return it. The folder is made here, exclusively:
    when another run took the name (same second, same suffix) a new suffix is drawn, so two
    runs never share a folder."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = stamp or datetime.now().strftime(RUN_STAMP)
    for _ in range(MAX_TRIES):
        folder = parent / f"{stamp}_{unique_suffix()}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return str(folder)
    raise MtstError(f"could not create a new run folder under '{parent}': {MAX_TRIES} names "
                    f"starting with {stamp} are taken")


def run_dir(log_dir: str, ckpt_path: str | None) -> str:
    """The run folder: the resumed checkpoint's own run, or a new `<log_dir>/runs/<stamp>_<id>`.

    A checkpoint to resume that does not exist (`ckpt_path=last` with no run to continue, or a
    missing file) raises MtstError here, before Hydra makes a folder for a run that cannot start.
    """
    if ckpt_path:
        from mtst.checkpoints.file_io import resolve_ckpt_path

        path = Path(resolve_ckpt_path(ckpt_path, log_dir)).resolve()
        if path.parent.name == "checkpoints" and (path.parent.parent / ".hydra").is_dir():
            return str(path.parent.parent)
    return new_run_folder(Path(log_dir) / "runs")


def _exit_on_user_error(resolver: Callable[..., str]) -> Callable[..., str]:
    """Hydra resolves its run folder before it creates it and starts the task; a user error
    found there ends the command with one `error:` line and exit code 2 (Hydra would print an
    interpolation error over several lines with exit code 1). MTST_TRACEBACK=1 re-raises."""

    @functools.wraps(resolver)
    def wrapped(*args: Any) -> str:
        try:
            return resolver(*args)
        except MtstError as err:
            exit_with(err)  # SystemExit is not an Exception: OmegaConf and Hydra let it pass

    return wrapped


def run_name(output_dir: str, log_dir: str) -> str:
    """A tracker's name for a run (`conf/logger/mlflow.yaml`, `wandb.yaml`): its folder
    relative to `log_dir`, without `runs/` (`<stamp>_<6 hex>`, `multiruns/<stamp>/<job>`), so
    a run listed in MLflow's or W&B's UI leads to its folder; a folder elsewhere: its name."""
    folder, logs = Path(output_dir).resolve(), Path(log_dir).resolve()
    if not folder.is_relative_to(logs) or folder == logs:
        return folder.name
    parts = folder.relative_to(logs).parts
    return "/".join(parts[1:] if parts[0] == "runs" and len(parts) > 1 else parts)


def register_resolvers(project_root: Path = CONF_DIR.parent) -> None:
    """Resolvers used by conf/: cached, so every access within a run sees the same value (and
    a folder is created once). Anything that loads a run's saved config calls this first."""
    resolvers = {
        "mtst_root": lambda: str(project_root),
        "mtst_run_dir": _exit_on_user_error(run_dir),
        "mtst_new_dir": _exit_on_user_error(new_run_folder),
        "mtst_run_name": run_name,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=True)


def to_float_dict(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        number = float(value.item() if hasattr(value, "item") else value)
        out[key] = number if math.isfinite(number) else None
    return out


def record_failure(output_dir: str | Path, err: BaseException, sweep_job: bool = True) -> str:
    """A failed run leaves `error.txt` (the traceback, or the one-line user error); a failed
    sweep job also a `metrics.json` whose "error" says why, so reports list it instead of
    skipping it (a single run's metrics.json stays the mark of a finished run). Returns the
    one-line reason."""
    import traceback

    root = root_cause(err)  # Hydra's instantiate wraps the real error: "Error in call to ..."
    line = f"{type(root).__name__}: {first_line(root)}" if str(root).strip() else type(root).__name__
    if isinstance(err, MtstError):
        line, detail = str(err).splitlines()[0], str(err) + "\n"
    else:
        detail = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    Path(output_dir, ERROR_FILE).write_text(detail, encoding="utf-8")
    if sweep_job:
        write_json(Path(output_dir, "metrics.json"), {"error": line, "metrics": {}})
    return line
