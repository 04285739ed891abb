"""Multi-task weighting methods behind `weighting=<name>` (see `base.Weighting`).

A new method is two files: a module with a `Weighting` subclass (`gradient.GradientWeighting`
for a gradient-level one) whose keyword-only arguments are its settings, and
`conf/weighting/<name>.yaml`, which names the class in `_target_` and holds every setting's
value. Hydra builds it (`build_weighting`); there is no registry to add to. The training module
calls `Weighting.step` whatever the method.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from mtst.errors import MtstError, choices_text, first_line
from mtst.weighting.base import Weighting
from mtst.weighting.fixed import Fixed
from mtst.weighting.gradient import GRAD_ON, GradientWeighting

# the keys of model.loss: where gradient methods act, and the conflict monitor's period
LOSS_KEYS = ("grad_on", "monitor_every")
# what the module passes itself, never a setting of the `weighting` node
PASSED = ("grad_on",)


def loss_settings(loss: Mapping[str, Any] | None) -> dict[str, Any]:
    """`model.loss` as a dict, checked: a key other than `LOSS_KEYS` (the method and its
    settings were keys of `model.loss` once) is one line, not a setting silently ignored."""
    loss = dict(loss or {})
    for key in loss:
        if key not in LOSS_KEYS:
            raise MtstError(f"model.loss.{key}: no such setting; model.loss has "
                            f"{', '.join(LOSS_KEYS)} (the method is the weighting node)")
    return loss


def weighting_partial(cfg: Mapping[str, Any]) -> functools.partial:
    """The `weighting` node (`_target_` and its settings) as the class with its settings bound,
    after checking them: a key the class does not take, or one it needs and the node lacks, is
    one line naming `weighting.<key>` and what the method takes. The values are not checked
    here (the class does, when built)."""
    try:
        build = instantiate(dict(cfg), _partial_=True, _convert_="all")
    except InstantiationException as err:  # a `_target_` that names nothing importable
        raise MtstError(f"weighting._target_: {first_line(err)}") from err
    if not (isinstance(build, functools.partial) and isinstance(build.func, type)
            and issubclass(build.func, Weighting)):
        raise MtstError(f"weighting._target_={cfg.get('_target_')!r}: not a Weighting")
    params = inspect.signature(build.func).parameters
    takes = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in PASSED]
    where = f"weighting={build.func.name} takes {', '.join(takes) or 'no setting'}"
    for key in build.keywords:
        if key not in takes:
            hint = f" (it is model.loss.{key})" if key in PASSED else ""
            raise MtstError(f"weighting.{key}: no such setting{hint}; {where}")
    for key in takes:
        if key not in build.keywords and params[key].default is inspect.Parameter.empty:
            raise MtstError(f"weighting.{key}: missing; {where}")
    return build


def build_weighting(cfg: Mapping[str, Any] | None, weights: Sequence[float],
                    grad_on: str | None = None) -> Weighting:
    """The method the `weighting` node builds (`conf/weighting/<name>.yaml`), for tasks with
    these fixed weights; None: `fixed`.

    Args:
        cfg: the `weighting` node, `_target_` and the method's settings.
        weights: each task's fixed weight (`tasks.<name>.weight`), in the module's task order.
        grad_on: `model.loss.grad_on`, which a gradient-level method needs (checked under every
            method: a typo is one whatever the method).
    """
    if grad_on is not None and grad_on not in GRAD_ON:
        raise MtstError(f"model.loss.grad_on={grad_on!r}: no such option; choose one of "
                        f"{choices_text(GRAD_ON)}")
    if not cfg:
        return Fixed(weights)
    build = weighting_partial(cfg)
    if not issubclass(build.func, GradientWeighting):
        return build(weights)
    if grad_on is None:
        raise MtstError(f"model.loss.grad_on: missing; weighting={build.func.name} takes the "
                        f"tasks' gradients on the {' or the '.join(GRAD_ON)}")
    return build(weights, grad_on=grad_on)


__all__ = ["GRAD_ON", "LOSS_KEYS", "GradientWeighting", "Weighting", "build_weighting",
           "loss_settings", "weighting_partial"]
