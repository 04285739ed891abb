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
        except MtstError as err:
            if os.environ.get("MTST_TRACEBACK"):
                raise
            logging.getLogger("mtst").debug("user error", exc_info=True)
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    wrapped.__name__ = task.__name__
    wrapped.__doc__ = task.__doc__
    return wrapped
