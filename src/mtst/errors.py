"""User-facing errors: raised for a user's mistake, printed as one line by the CLIs."""

from __future__ import annotations


class MtstError(Exception):
    """A problem the user can fix (bad file, bad config, missing model). No traceback is shown."""


class DataError(MtstError):
    """Invalid training or prediction data; the message names file, line or record, and field."""

    def __init__(self, path: str, where: str | None, message: str) -> None:
        self.path, self.where = str(path), where
        place = f"{path}:{where}" if where else str(path)
        super().__init__(f"{place}: {message}")
