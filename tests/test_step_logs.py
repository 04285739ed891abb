"""`step_logs_needed` reads a private Lightning attribute (no public hook says whether this step's
values reach the loggers); these tests pin that it still exists and still means that."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import Logger

from mtst.training.step_logs import EpochMeans, log_step_values, step_logs_needed


class StepsSeen(Logger):
    """Records the steps at which `train/x` reached the logger."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[int] = []
        self.metrics: list[dict[str, float]] = []

    @property
    def name(self) -> str:
        return "steps"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if "train/x" in metrics:
            self.steps.append(int(step))
            self.metrics.append(dict(metrics))


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.needed: list[int] = []

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if step_logs_needed(self.trainer):
            self.needed.append(self.global_step - 1)  # the step that just ran
            self.log("train/x", outputs["loss"], on_step=True, on_epoch=False)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(24, 2))
        return torch.utils.data.DataLoader(data, batch_size=2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_private_flag_exists_and_matches_what_reaches_the_logger(tmp_path) -> None:
    logger = StepsSeen()
    module = Tiny()
    trainer = L.Trainer(max_epochs=1, log_every_n_steps=4, logger=logger, accelerator="cpu",
                        default_root_dir=tmp_path, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    assert hasattr(trainer._logger_connector, "should_update_logs")  # else: every step logs
    trainer.fit(module)
    assert module.needed == [3, 7, 11]  # 12 steps, every 4th (0-based global steps)
    assert logger.steps == module.needed  # exactly those values were written, none lost


def test_epoch_means_are_batch_size_weighted_and_start_over() -> None:
    means = EpochMeans()
    means.add({"a": torch.tensor(1.0), "b": torch.tensor(4.0)}, 2)
    means.add({"a": torch.tensor(4.0)}, 1)
    got = means.pop()
    assert torch.allclose(got["a"], torch.tensor(2.0)) and torch.allclose(got["b"], torch.tensor(4.0))
    assert means.pop() == {}


class Direct(Tiny):
    """Logs its step loss with `log_step_values`, as `MultiTaskModule` does."""

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if step_logs_needed(self.trainer):
            self.needed.append(self.global_step - 1)
            log_step_values(self.trainer, {"train/x": outputs["loss"].detach()})


def test_step_values_reach_every_logger_at_lightnings_step_numbers(tmp_path) -> None:
    loggers = [StepsSeen(), StepsSeen()]
    module = Direct()
    trainer = L.Trainer(max_epochs=2, log_every_n_steps=4, logger=loggers, accelerator="cpu",
                        default_root_dir=tmp_path, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module)
    # 12 steps an epoch, every 4th logged, under the step numbers `self.log` gets (the test above)
    assert module.needed == [3, 7, 11, 15, 19, 23]
    for logger in loggers:
        assert logger.steps == module.needed
        assert [m["epoch"] for m in logger.metrics] == [0, 0, 0, 1, 1, 1]
        assert all(isinstance(m["train/x"], float) and m["train/x"] > 0 for m in logger.metrics)


def test_nothing_is_written_without_values_or_loggers(tmp_path) -> None:
    logger = StepsSeen()
    trainer = L.Trainer(logger=logger, accelerator="cpu", default_root_dir=tmp_path)
    log_step_values(trainer, {})
    assert logger.steps == []
    log_step_values(L.Trainer(logger=False, accelerator="cpu", default_root_dir=tmp_path),
                    {"train/x": 1.0})  # no logger: no error
