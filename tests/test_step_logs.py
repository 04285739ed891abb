"""What the training step logs: its values through `self.log` on the steps Lightning hands to the
loggers only (decided from public counters, `global_step` and `log_every_n_steps`), under
Lightning's own step numbers; the conflict monitor's straight to the loggers under the same
numbers; epoch means batch-size weighted."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.loggers import Logger

from mtst.training.module import EpochMeans
from tests.conftest import freeze_config
from tests.test_freezing import make_datamodule, make_model, make_trainer


class Recorded(Logger):
    """Every `log_metrics` call: (step, metrics)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recorded"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append((int(step), dict(metrics)))

    def steps(self, name: str) -> list[int]:
        return [step for step, metrics in self.calls if name in metrics]


@pytest.mark.parametrize("accumulate", [1, 2])
def test_step_values_reach_every_logger_on_lightnings_logging_steps(tmp_path, accumulate) -> None:
    loggers = [Recorded(), Recorded()]
    dm = make_datamodule(train_stop=48)
    model = make_model(dm, freeze_config("none"))
    # a reference value through Lightning's own path, logged at every step: Lightning writes it
    # on its logging steps under its step numbers, which the module's values must match
    seen: dict[int, float] = {}  # optimizer step -> the loss of its last batch
    original = model.training_step

    def training_step(batch, batch_idx):
        loss = original(batch, batch_idx)
        model.log("reference", torch.tensor(1.0), on_step=True, on_epoch=False)
        seen[model.global_step] = float(model.step_values["train/loss"])
        return loss

    model.training_step = training_step
    make_trainer(2, batches=6, logger=loggers, log_every_n_steps=2, accumulate_grad_batches=accumulate,
                 default_root_dir=tmp_path).fit(model, datamodule=dm)
    expected = loggers[0].steps("reference")
    # 12 batches: 12 optimizer steps, or 6 when two batches make one; every second one logged
    assert expected == ([1, 3, 5, 7, 9, 11] if accumulate == 1 else [1, 3, 5])
    for logger in loggers:
        assert logger.steps("reference") == expected
        assert logger.steps("train/loss") == expected  # the module's step values, no more, no fewer
        # each the loss of the step it is written under, not one left over from an earlier step
        assert {step: m["train/loss"] for step, m in logger.calls if "train/loss" in m} == pytest.approx(
            {step: seen[step] for step in expected}, rel=1e-6)
    assert len(seen) == 12 // accumulate


def test_the_conflict_monitor_writes_under_the_steps_it_measured(tmp_path) -> None:
    logger = Recorded()
    dm = make_datamodule(train_stop=48)
    model = make_model(dm, freeze_config("none"))
    model.monitor_every = 2
    make_trainer(1, batches=6, logger=logger, log_every_n_steps=50,
                 default_root_dir=tmp_path).fit(model, datamodule=dm)
    monitored = [(step, m) for step, m in logger.calls if any(k.startswith("train/grad_norm/") for k in m)]
    assert [step for step, _ in monitored] == [0, 2, 4]  # once each, at the step it ran
    assert all(m["epoch"] == 0 for _, m in monitored)
    assert logger.steps("train/loss") == []  # 6 steps, none a multiple of 50


def test_epoch_means_are_batch_size_weighted_and_start_over() -> None:
    means = EpochMeans()
    means.add({"a": torch.tensor(1.0), "b": torch.tensor(4.0)}, 2)
    means.add({"a": torch.tensor(4.0)}, 1)
    got = means.pop()
    assert torch.allclose(got["a"], torch.tensor(2.0)) and torch.allclose(got["b"], torch.tensor(4.0))
    assert means.pop() == {}
