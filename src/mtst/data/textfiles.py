"""Text files read line by line: the training readers (`mtst.data.readers`) and the inputs of
`mtst predict` and `mtst plot-embeddings` (`mtst.inference.inputs`) name a missing file and a
byte that is not UTF-8 in the same words.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mtst.errors import DataError


def check_file(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(path, None, "file not found")
    if not p.is_file():
        raise DataError(path, None, "not a file")
    return p


def utf8_error(path: str) -> DataError:
    """The error naming the line and column of the first byte that is not UTF-8 (read again
    line by line only on this error path: reading itself decodes in bulk)."""
    with open(path, "rb") as handle:
        for n, raw in enumerate(handle, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return DataError(
                    path,
                    f"line {n}",
                    f"byte 0x{raw[e.start]:02x} at column "
                    f"{e.start + 1} is not valid UTF-8; re-save the file as UTF-8",
                )
    return DataError(path, None, "is not valid UTF-8; re-save the file as UTF-8")


def iter_lines(path: str, keep_ends: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, text) one line at a time, so a file of any size streams in constant memory.

    Splits on ``\n`` only (JSON strings may hold U+2028); strips the BOM and ``\r``.
    """
    visible = False
    try:
        with check_file(path).open("r", encoding="utf-8", newline="\n") as handle:
            for n, line in enumerate(handle, 1):
                if n == 1:
                    line = line.removeprefix("\ufeff")
                if not keep_ends:
                    line = line.removesuffix("\n").removesuffix("\r")
                if not visible and line.strip():
                    visible = True
                yield n, line
    except UnicodeDecodeError:
        raise utf8_error(path) from None
    if not visible:
        raise DataError(path, None, "file is empty")


def read_text(path: str) -> str:
    """The whole file, decoded and checked like ``iter_lines``."""
    return "".join(line for _, line in iter_lines(path, keep_ends=True))
