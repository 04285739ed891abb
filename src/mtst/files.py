"""Outputs that appear whole or not at all: a failed export, prediction or plot leaves nothing
half-written behind (a later run, or a person, would otherwise trust a broken folder)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mtst.errors import MtstError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish(tmp: Path, mode: int) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries: give the result the usual permissions."""
    os.chmod(tmp, mode & ~_umask())


@contextmanager
def atomic_folder(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to `target`; on success it is renamed to `target`.

    An existing non-empty `target` is an error unless `overwrite`; it is then replaced only once
    the new folder is complete (the old one is moved aside first and removed last).
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise MtstError(f"output '{target}' exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise MtstError(f"output folder '{target}' already exists and is not empty (use --overwrite)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        _publish(tmp, 0o777)
        old = None
        if target.is_dir():
            old = target.with_name(f"{tmp.name}.old")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in `target`'s folder; renamed to `target` only on success."""
    target = Path(target)
    if target.is_dir():
        raise MtstError(f"output '{target}' is a folder, expected a file path")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _publish(tmp, 0o666)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_figure(fig: Any, path: str | Path) -> Path:
    """A matplotlib figure as a PNG file, written atomically."""
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return Path(path)


def write_json(path: str | Path, payload: Any) -> Path:
    """Indented, key-sorted JSON, written atomically: readers never see half a file."""
    import json

    with atomic_file(path) as tmp:
        Path(tmp).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Path(path)
