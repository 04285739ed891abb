"""The basic sweeper plus one single-task job per task: the baselines Δm% compares against.

Hydra's basic sweeper runs the cartesian product of its sweeps; single-task baselines are not a
factor of it (a baseline with every weighting method would repeat one run under names that do
not apply to one task). This sweeper runs the product and, before it, for every task and every
distinct combination of the other swept keys (seeds, say), a job with `tasks_only=<task>` and
`baseline_overrides` (e.g. `weighting=fixed`) in place of those keys' sweep values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.types import Override
from omegaconf import OmegaConf

SELECT_KEY = "tasks_only"


def override_key(text: str) -> str:
    """`+a.b=1` / `~a.b` / `a.b=1` -> `a.b`."""
    return text.partition("=")[0].lstrip("+~")


def baseline_jobs(grid: Sequence[Sequence[str]], tasks: Sequence[str],
                  baseline_overrides: Sequence[str]) -> list[list[str]]:
    """One job per task and per distinct rest of a grid job (the grid's overrides other than
    `tasks_only` and the keys `baseline_overrides` sets), task by task."""
    replaced = {SELECT_KEY, *(override_key(o) for o in baseline_overrides)}
    rests: list[tuple[str, ...]] = []
    for job in grid:
        rest = tuple(o for o in job if override_key(o) not in replaced)
        if rest not in rests:
            rests.append(rest)
    return [[*rest, f"{SELECT_KEY}={task}", *baseline_overrides] for task in tasks
            for rest in rests]


class BaselineSweeper(BasicSweeper):
    """`hydra/sweeper=baselines`: `baselines` is `all` (every task the config trains), a list of
    task names, or null (no baseline job: the basic sweeper)."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None,
                 baselines: str | list[str] | None = "all",
                 baseline_overrides: list[str] | None = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.baselines = baselines
        self.baseline_overrides = [str(o) for o in baseline_overrides or []]

    def baseline_tasks(self) -> list[str]:
        """The tasks of the composed config (after `tasks_only`) that get a baseline job."""
        from mtst.tasks import select_tasks

        assert self.config is not None
        tasks = OmegaConf.to_container(self.config.get("tasks") or {}, resolve=False)
        tasks = select_tasks(tasks, self.config.get(SELECT_KEY))
        if self.baselines is None:
            return []
        if self.baselines == "all":
            return list(tasks)
        return list(select_tasks(tasks, self.baselines, key="hydra.sweeper.baselines"))

    def split_arguments(self, overrides: list[Override],  # type: ignore[override]
                        max_batch_size: int | None) -> list[list[list[str]]]:
        (grid,) = BasicSweeper.split_arguments(overrides, None)
        jobs = baseline_jobs(grid, self.baseline_tasks(), self.baseline_overrides) + grid
        return list(BasicSweeper.split_overrides_to_chunks(jobs, max_batch_size))


def sweeper_jobs(sweeper_config: Any, config: Any, arguments: Sequence[str] = ()) -> list[list[str]]:
    """Every job's overrides, as `sweep` would launch them (for checking a preset)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    settings = {k: v for k, v in OmegaConf.to_container(sweeper_config).items() if k != "_target_"}
    sweeper = BaselineSweeper(**settings)
    sweeper.config = config
    parsed = OverridesParser.create().parse_overrides([*sweeper._parse_config(), *arguments])
    return [job for batch in sweeper.split_arguments(parsed, None) for job in batch]
