"""Multi-task weighting methods behind `weighting=<name>` (see `base.Weighting`).

A new method is two files: a module with a `Weighting` subclass (`gradient.GradientWeighting`
for a gradient-level one) whose keyword-only arguments are its settings, and
`conf/weighting/<name>.yaml`, which names the class in `_target_` and holds every setting's
value. Hydra builds it (`build_weighting`); there is no registry to add to. The training module
calls `Weighting.step` whatever the method.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from mtst.components import bind_component
from mtst.errors import MtstError, choices_text
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
    """The `weighting` node as its class with the settings bound, checked
    (`mtst.components.bind_component`); the values are checked when the class is built."""
    return bind_component(cfg, "weighting", Weighting, {key: f"model.loss.{key}" for key in PASSED})


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
