"""Components Hydra builds from a config node: `_target_` names the class, the other keys are its
keyword-only settings (`conf/freeze/<name>.yaml`, `conf/weighting/<name>.yaml`).

The node is bound, not built: the caller adds what only it knows (the tasks, their weights) and
builds it. Binding checks the keys against the class's signature first, so a typo or a missing
setting is one line naming `<node>.<key>` and what the class takes, before any data is read.
The classes check their settings' values with `check_number` and `check_integer`, in the same
words.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from mtst.errors import MtstError, first_line


def bind_component(cfg: Mapping[str, Any], node: str, base: type,
                   passed: Mapping[str, str] | None = None) -> functools.partial:
    """The class `cfg["_target_"]` names, with `cfg`'s other keys bound as its settings.

    Args:
        cfg: the config node, `_target_` and the settings.
        node: the node's config key, for messages (`freeze`, `weighting`).
        base: the class the target must subclass; its `name` labels the messages.
        passed: keyword-only arguments the caller passes itself, never settings of the node,
            each with where the user sets it (`{"grad_on": "model.loss.grad_on"}`).

    Returns:
        A `functools.partial` of the class; calling it with the caller's arguments builds it.

    Example:
        >>> bound = bind_component({"_target_": "mtst.weighting.dwa.DWA", "temperature": 2.0},
        ...                        "weighting", Weighting)  # doctest: +SKIP
        >>> bound([1.0, 1.0]).temperature  # doctest: +SKIP
        2.0
    """
    passed = dict(passed or {})
    if "_target_" not in cfg:
        raise MtstError(f"{node}: {dict(cfg)!r} names no _target_ (a {base.__name__} class, as "
                        f"conf/{node}/<name>.yaml does)")
    try:
        bound = instantiate(dict(cfg), _partial_=True, _convert_="all")
    except InstantiationException as err:  # a `_target_` that names nothing importable
        raise MtstError(f"{node}._target_: {first_line(err)}") from err
    if not (isinstance(bound, functools.partial) and isinstance(bound.func, type)
            and issubclass(bound.func, base)):
        raise MtstError(f"{node}._target_={cfg['_target_']!r}: not a {base.__name__}")
    params = inspect.signature(bound.func).parameters
    takes = [n for n, p in params.items()
             if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in passed]
    where = f"{node}={bound.func.name} takes {', '.join(takes) or 'no setting'}"
    for key in bound.keywords:
        if key not in takes:
            hint = f" (it is {passed[key]})" if key in passed else ""
            raise MtstError(f"{node}.{key}: no such setting{hint}; {where}")
    for key in takes:
        if key not in bound.keywords and params[key].default is inspect.Parameter.empty:
            raise MtstError(f"{node}.{key}: missing; {where}")
    return bound


def check_number(key: str, value: Any, low: float | None = None, high: float | None = None,
                 open_low: bool = False) -> float:
    """Setting `key` (`weighting.c`) as a float within bounds, or a one-line error naming it."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if ok and low is not None:
        ok = value > low if open_low else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bound = ("" if low is None else f" {'>' if open_low else '>='} {low}") + (
            "" if high is None else f" and <= {high}")
        raise MtstError(f"{key}={value!r}: expected a number{bound}")
    return float(value)


def check_integer(key: str, value: Any, low: int | None = None) -> int:
    """Setting `key` (`freeze.top_blocks`) as an integer >= `low`, or a one-line error naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        bound = "" if low is None else f" >= {low}"
        raise MtstError(f"{key}={value!r}: expected an integer{bound}")
    return value
