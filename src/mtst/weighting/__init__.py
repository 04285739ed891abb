"""Multi-task weighting methods behind `model.loss.weighting=<name>` (see `base.Weighting`).

A new method is one module with a `Weighting` subclass (`gradient.GradientWeighting` for a
gradient-level one), one entry in `METHODS` and its hyper-parameters under `model.loss.<name>`
in conf/model/multitask.yaml. The training module calls `Weighting.step` whatever the method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mtst.errors import MtstError, choices_text
from mtst.weighting.base import Weighting
from mtst.weighting.cagrad import CAGrad
from mtst.weighting.dwa import DWA
from mtst.weighting.famo import FAMO
from mtst.weighting.fixed import Fixed, Uncertainty
from mtst.weighting.gradient import GRAD_ON, GradientWeighting
from mtst.weighting.gradnorm import GradNorm
from mtst.weighting.nash_mtl import NashMTL
from mtst.weighting.pcgrad import PCGrad
from mtst.weighting.rlw import RLW

METHODS: dict[str, type[Weighting]] = {cls.name: cls for cls in (
    Fixed, Uncertainty, DWA, RLW, FAMO,  # loss level
    PCGrad, CAGrad, NashMTL, GradNorm,  # gradient level
)}
WEIGHTINGS = tuple(METHODS)
# the keys of model.loss read here: the method, where gradient methods act, the conflict
# monitor's period, and one settings node per method
LOSS_KEYS = ("weighting", "grad_on", "monitor_every", *METHODS)


def build_weighting(loss: Mapping[str, Any] | None, weights: Sequence[float]) -> Weighting:
    """The method `loss["weighting"]` names, with its settings `loss[<name>]` (and, for a
    gradient-level one, `loss["grad_on"]`)."""
    loss = dict(loss or {})
    name = loss.get("weighting", "fixed")
    if name not in METHODS:
        raise MtstError(f"model.loss.weighting={name!r}: no such option; choose one of "
                        f"{choices_text(METHODS)}")
    grad_on = loss.get("grad_on", "representation")
    if grad_on not in GRAD_ON:  # checked under every method: a typo is one whatever it is for
        raise MtstError(f"model.loss.grad_on={grad_on!r}: no such option; choose one of "
                        f"{choices_text(GRAD_ON)}")
    method = METHODS[name]
    where = {"grad_on": grad_on} if issubclass(method, GradientWeighting) else {}
    return method(weights, **where, **dict(loss.get(name) or {}))


__all__ = ["GRAD_ON", "LOSS_KEYS", "METHODS", "WEIGHTINGS", "GradientWeighting", "Weighting",
           "build_weighting"]
