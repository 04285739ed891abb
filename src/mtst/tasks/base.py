"""What every task type has: its settings, its data kind, its head, its loss and its metrics.

A task type is one small module (see `sentence_classification`, `token_classification`,
`sentence_similarity`) registered in `mtst.tasks.TASK_TYPES`; adding a type means one module and
one entry there. A task *instance* is a type plus the settings of one entry of the `tasks`
config (its name, files, labels, weight, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import Metric

from mtst.data.labels import LabelSpace
from mtst.data.tasks import TaskData
from mtst.errors import MtstError, choices_text

# settings every task takes (the type adds its own in `options`)
# outputs[TOKEN_ROWS]: the flattened [B * T] positions token heads ran at (see `token_positions`)
TOKEN_ROWS = "token_rows"
COMMON = {"type": None, "train_files": [], "val_files": [], "test_files": [], "labels": None,
          "field": None, "weight": 1.0, "main_metric": None, "in_score": True, "baseline": None}


class Task:
    """One configured task. Subclasses set the class attributes and the loss/metric methods."""

    type: ClassVar[str]
    data_kind: ClassVar[str]  # how records are read (mtst.data.tasks.KINDS)
    head: ClassVar[str | None]  # mtst.model.heads.HEADS key; None: no parameters of its own
    metric_names: ClassVar[tuple[str, ...]]  # what `compute` returns; the first is the default main
    options: ClassVar[dict[str, Any]] = {}  # type-specific settings and their defaults

    def __init__(self, name: str, settings: Mapping[str, Any]) -> None:
        known = {**COMMON, **self.options}
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise MtstError(f"tasks.{name}.{unknown[0]}: no such setting for a {self.type} task; "
                            f"it has {choices_text(sorted(known))}")
        self.name = name
        self.settings = {**known, **dict(settings), "type": self.type}
        self.weight = float(self.settings["weight"])
        if not self.weight >= 0:
            raise MtstError(f"tasks.{name}.weight={self.settings['weight']!r}: expected a number >= 0")
        self.main_metric = self.settings["main_metric"] or self.metric_names[0]
        if self.main_metric not in self.metric_names:
            raise MtstError(f"tasks.{name}.main_metric={self.main_metric!r}: a {self.type} task "
                            f"reports {choices_text(self.metric_names)}")
        self.in_score = bool(self.settings["in_score"])
        self.baseline = self._baseline(self.settings["baseline"])
        self.data = TaskData.parse(name, self.data_kind, self.settings)
        if "dropout" in self.options:
            rate = self.settings["dropout"]
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1:
                raise MtstError(f"tasks.{name}.dropout={rate!r}: expected a probability in [0, 1)")
        self.check_options()

    def _baseline(self, value: Any) -> float | None:
        """The single-task run's figure of the main metric (as logged: 0.731, not 73.1), against
        which the run logs `<split>/delta_m`; None: this task is not compared."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise MtstError(f"tasks.{self.name}.baseline={value!r}: expected the single-task run's "
                            f"{self.main_metric} (a number > 0), or null")
        return float(value)

    def check_options(self) -> None:
        """Validate type-specific settings (one-line errors naming `tasks.<name>.<key>`)."""

    def network_spec(self, space: LabelSpace) -> dict[str, Any]:
        """This task's entry in the network config (`MultiTaskNetwork(tasks=...)`)."""
        spec: dict[str, Any] = {"type": self.type, "head": self.head, "labels": space.to_dict()}
        if "dropout" in self.options:
            spec["dropout"] = float(self.settings["dropout"])
        return spec

    def has(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """[B] bool: which rows of the batch supervise this task."""
        return batch[f"{self.name}.has"]

    # ---- training --------------------------------------------------------------------------
    def token_positions(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """[B, T] bool: the sub-token positions whose head outputs this task's loss reads; None
        when it reads none. With the encoder frozen, the training step runs the (position-wise)
        token heads at these positions only, so their work follows the labelled sub-tokens, not
        the padded batch; the loss then gets outputs of shape [N, ...] and
        `outputs[TOKEN_ROWS]`, the N flattened positions."""
        return None

    def loss(self, batch: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The task's mean loss over its rows; exactly 0 (still in the graph) when it has none,
        so every head gets a gradient each step and DDP never sees unused parameters."""
        raise NotImplementedError

    def new_metrics(self, space: LabelSpace) -> nn.ModuleDict:
        """Fresh metric states for one stage (torchmetrics: summed / gathered across ranks)."""
        raise NotImplementedError

    def update(self, metrics: nn.ModuleDict, batch: Mapping[str, torch.Tensor],
               outputs: Mapping[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def compute(self, metrics: nn.ModuleDict) -> dict[str, torch.Tensor]:
        """`metric_names` -> value (on the 0-1 scale) over everything seen this stage."""
        raise NotImplementedError

    @staticmethod
    def updated(metrics: nn.ModuleDict) -> bool:
        """Whether this rank saw any example of the task this stage."""
        return any(isinstance(m, Metric) and m.update_called for m in metrics.values())
