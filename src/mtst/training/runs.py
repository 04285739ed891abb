"""Run folders that never collide, resume into the same folder, and a run's metrics.json."""

from __future__ import annotations

import json
import math
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

RUN_STAMP = "%Y-%m-%d_%H-%M-%S"
ERROR_FILE = "error.txt"


def unique_suffix() -> str:
    """Six hex digits: two runs started in the same second get different folders."""
    return secrets.token_hex(3)


def run_dir(log_dir: str, ckpt_path: str | None) -> str:
    """The run folder: the resumed checkpoint's own run, or a new `<log_dir>/runs/<stamp>_<id>`."""
    if ckpt_path == "last":
        from mtst.training.checkpoints import resolve_ckpt_path

        try:
            ckpt_path = resolve_ckpt_path("last", log_dir)
        except Exception:  # reported properly by the training code, which resolves it again
            ckpt_path = None
    if ckpt_path:
        path = Path(ckpt_path).resolve()
        if path.parent.name == "checkpoints" and (path.parent.parent / ".hydra").is_dir():
            return str(path.parent.parent)
    return str(Path(log_dir) / "runs" / f"{datetime.now().strftime(RUN_STAMP)}_{unique_suffix()}")


def register_resolvers(project_root: Path) -> None:
    """Resolvers used by conf/: cached, so every access within a run sees the same value."""
    resolvers = {
        "mtst_root": lambda: str(project_root),
        "mtst_uid": unique_suffix,
        "mtst_run_dir": run_dir,
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

    from mtst.errors import MtstError

    root = err  # Hydra's instantiate wraps the real error: "Error in call to target ..."
    while root.__cause__ is not None:
        root = root.__cause__
    line = f"{type(root).__name__}: {root}".splitlines()[0] if str(root) else type(root).__name__
    if isinstance(err, MtstError):
        line, detail = str(err).splitlines()[0], str(err) + "\n"
    else:
        detail = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    Path(output_dir, ERROR_FILE).write_text(detail, encoding="utf-8")
    if sweep_job:
        write_json(Path(output_dir, "metrics.json"), {"error": line, "metrics": {}})
    return line


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write atomically: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
