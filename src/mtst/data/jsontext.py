"""JSON parsing and text checks shared by the training readers, `mtst predict` and `mtst serve`.

Two kinds of input pass `json.loads` or make it fail outside its own `JSONDecodeError`:

* The parser's limits: nesting deeper than the interpreter's recursion limit is a
  `RecursionError`, an integer of more than `sys.get_int_max_str_digits()` digits a bare
  `ValueError`. `parse_json` turns both into `JSONLimitError`, so every caller can report them
  as invalid JSON in its own words (a `DataError` naming file and line, a 400).
* A `\\ud800` escape without its pair: valid JSON, but it decodes to a string with a lone
  surrogate, which is not Unicode text. It cannot be encoded as UTF-8, so tokenizers refuse it
  with a `TypeError` long after the input was read, and printing it fails too. `lone_surrogate`
  and `find_lone_surrogate` name the field and the character instead.

Kept in the data layer so that `mtst.data` and `mtst.inference` share one copy.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

_DIGITS = re.compile(r"value has (\d+) digits")


class JSONLimitError(ValueError):
    """JSON that `json.loads` refuses for its own limits rather than for its syntax."""


def parse_json(text: str) -> Any:
    """`json.loads(text)`; the parser's limits raise `JSONLimitError` with a one-line reason
    (`nested too deeply`, `a number of N digits, over the limit of M`), syntax errors stay
    `json.JSONDecodeError`."""
    try:
        return json.loads(text)
    except RecursionError:
        raise JSONLimitError("nested too deeply") from None
    except json.JSONDecodeError:
        raise
    except ValueError as err:  # the only other ValueError: int() of too many digits
        found = _DIGITS.search(str(err))
        digits = f"{found.group(1)} digits" if found else "too many digits"
        raise JSONLimitError(
            f"a number of {digits}, over the limit of {sys.get_int_max_str_digits()}"
        ) from None


def printable(text: str) -> str:
    """`text` with each lone surrogate written as its escape (`\\ud800`), so that a message
    quoting user input can always be printed or sent as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def lone_surrogate(text: str, name: str) -> str | None:
    """`<name>: character N is a lone surrogate (U+D800), ...` for the first lone surrogate in
    `text`, or None when the text is valid Unicode (the usual case costs one encode)."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        code = ord(text[err.start])
        return (
            f"{name}: character {err.start + 1} is a lone surrogate (U+{code:04X}), which is "
            "not Unicode text (a \\u escape of half a surrogate pair)"
        )
    return None


def may_hold_surrogate(source: str) -> bool:
    """Whether JSON text can decode to a lone surrogate: text decoded from UTF-8 holds none,
    so only a `\\u` escape can make one. Callers skip `find_lone_surrogate` when it is False
    (nearly always), so checking costs one substring search per line."""
    return "\\u" in source


def find_lone_surrogate(value: Any) -> str | None:
    """The `lone_surrogate` message for the first string or field name in a parsed JSON value
    that holds one, its field named as a path (`text`, `tokens[1]`, `meta.note`), else None."""
    stack: list[tuple[str, Any]] = [("value", value)]
    while stack:  # a loop, not recursion: the value may be nested as deep as the parser allows
        name, item = stack.pop()
        if isinstance(item, str):
            problem = lone_surrogate(item, name)
            if problem:
                return problem
        elif isinstance(item, dict):  # a field name is checked as a string, before its value
            children = []
            for key, child in item.items():
                children.append((f"field name '{printable(key)}'", key))
                children.append((key if name == "value" else f"{name}.{key}", child))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(reversed([(f"{name}[{i}]", child) for i, child in enumerate(item)]))
    return None
