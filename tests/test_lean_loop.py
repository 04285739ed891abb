"""The cheaper pieces of Lightning's loop keep its behaviour: no profiler asked for means the
quiet one, one asked for is Lightning's; the hook name Lightning sets (a private attribute,
pinned here) is still set and still read by `self.log`; gradients are cleared as
`zero_grad()` clears them."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.profilers import SimpleProfiler

from mtst.training.lean_loop import LeanHooks, QuietProfiler, zero_grads
from mtst.training.pipeline import build_trainer
from tests.conftest import TINY_TRAIN, compose_config


@pytest.mark.parametrize(("setting", "expected"), [(None, QuietProfiler), ("simple", SimpleProfiler)])
def test_the_trainer_gets_the_quiet_profiler_only_when_none_is_configured(tmp_path, setting, expected) -> None:
    overrides = [*TINY_TRAIN] + ([f"trainer.profiler={setting}"] if setting else [])
    trainer = build_trainer(compose_config(tmp_path, overrides))
    assert type(trainer.profiler) is expected


def test_the_quiet_profiler_nests_and_lets_errors_through() -> None:
    profiler = QuietProfiler()
    with profiler.profile("outer"), profiler.profile("inner"):
        pass
    with pytest.raises(KeyError), profiler.profile("failing"):
        raise KeyError("x")


class HookNames(LeanHooks, L.LightningModule):
    """Records the hook name Lightning has set when its hooks run, and logs through it."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.seen: list[str | None] = []

    def _record(self) -> None:
        self.seen.append(self._current_fx_name)

    def training_step(self, batch, batch_idx):
        self._record()
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train/x", loss, on_step=False, on_epoch=True)  # checks _current_fx_name
        return loss

    def on_train_epoch_end(self) -> None:
        self._record()

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_still_names_the_running_hook_through_the_cheap_path(tmp_path, monkeypatch) -> None:
    module = HookNames()
    slow_path: list[str] = []
    module_setattr = torch.nn.Module.__setattr__

    def counted(self, name, value):
        if name == "_current_fx_name":
            slow_path.append(name)
        module_setattr(self, name, value)

    monkeypatch.setattr(torch.nn.Module, "__setattr__", counted)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, profiler=QuietProfiler())
    trainer.fit(module)
    assert module.seen == ["training_step", "training_step", "on_train_epoch_end"]
    assert "train/x" in trainer.callback_metrics
    assert not slow_path  # Lightning sets it ~50 times a step: none went through nn.Module
    assert "_current_fx_name" not in module._parameters and "_current_fx_name" not in module._modules


def test_other_attributes_still_go_through_nn_module() -> None:
    module = HookNames()
    module.extra = torch.nn.Linear(1, 1)
    module.weight_extra = torch.nn.Parameter(torch.zeros(1))
    assert "extra" in module._modules and "weight_extra" in module._parameters
    module._current_fx_name = None
    assert module._current_fx_name is None


class CountingSGD(torch.optim.SGD):
    calls = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        CountingSGD.calls += 1
        super().zero_grad(set_to_none)


def test_zero_grads_clears_as_zero_grad_does_and_calls_an_override() -> None:
    layer = torch.nn.Linear(3, 2)
    frozen = torch.nn.Linear(3, 2).requires_grad_(False)
    optimizer = torch.optim.AdamW([{"params": layer.parameters()}, {"params": frozen.parameters()}])
    layer(torch.randn(4, 3)).sum().backward()
    assert all(p.grad is not None for p in layer.parameters())
    zero_grads(optimizer)
    assert all(p.grad is None for p in [*layer.parameters(), *frozen.parameters()])

    custom = CountingSGD(layer.parameters(), lr=0.1)
    layer(torch.randn(4, 3)).sum().backward()
    zero_grads(custom)
    assert CountingSGD.calls == 1 and all(p.grad is None for p in layer.parameters())
