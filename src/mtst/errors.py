"""User-facing errors: raised for a user's mistake, printed as one line by the CLIs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, NoReturn


class MtstError(Exception):
    """A problem the user can fix (bad file, bad config, missing model). No traceback is shown."""


class DataError(MtstError):
    """Invalid training or prediction data; the message names file, line or record, and field."""

    def __init__(self, path: str, where: str | None, message: str) -> None:
        self.path, self.where = str(path), where
        place = f"{path}:{where}" if where else str(path)
        super().__init__(f"{place}: {message}")


def first_line(err: BaseException) -> str:
    """The first non-empty line of an error's message (libraries explain over many lines), or
    its type's name when it has no message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def root_cause(err: BaseException) -> BaseException:
    """The innermost `__cause__`: what Hydra's `instantiate` and similar wrappers wrap."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def choices_text(choices: Iterable[Any]) -> str:
    """Choices as a user types them in a config (`None` is `null`)."""
    return ", ".join("null" if c is None else str(c) for c in choices)


def exit_with(err: MtstError) -> NoReturn:
    """End the command with one `error:` line and exit code 2; MTST_TRACEBACK=1 re-raises."""
    if os.environ.get("MTST_TRACEBACK"):
        raise err
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(2) from None
