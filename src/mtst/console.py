"""What reaches the user's terminal: mtst's own lines, not every dependency's chatter.

A library's logger may warn about things that say nothing to the user (transformers' `kernels`
dependency warns three times per process that it skips a publisher trust check in offline mode).
On the console such a warning would turn mtst's promised one-line error into four lines, so the
console shows only mtst's, Lightning's and Hydra's records, plus any library's errors. The run's
log file (`train.log`) keeps everything: nothing is lost, only moved off the terminal.
"""

from __future__ import annotations

import logging

# the loggers whose records speak to the user: mtst's, and the frameworks whose lines a user of
# Lightning and Hydra expects to see (Lightning's trainer summary, Hydra's job launches)
SHOWN_LOGGERS = ("mtst", "lightning", "hydra", "__main__")


class ConsoleFilter(logging.Filter):
    """Passes mtst's, Lightning's and Hydra's records, and any logger's errors.

    Used by `conf/hydra/default.yaml` on the console handler of `train.py` and `evaluate.py`, and
    by `quiet_console()` for the `mtst` commands.

    Example:
        >>> ConsoleFilter().filter(logging.makeLogRecord({"name": "kernels", "levelno": 30}))
        False
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".", 1)[0] in SHOWN_LOGGERS or record.levelno >= logging.ERROR


def quiet_console() -> None:
    """Attach `ConsoleFilter` to the root logger's console handlers (not to file handlers)."""
    for handler in logging.getLogger().handlers:
        on_console = isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        )
        if on_console and not any(isinstance(f, ConsoleFilter) for f in handler.filters):
            handler.addFilter(ConsoleFilter())
