"""A non-finite loss stops training with the step and loss terms named, before any weight or
checkpoint is touched; non-finite weights are never written to a checkpoint."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mtst.checkpoints.file_io import load_checkpoint
from mtst.errors import MtstError
from mtst.training.callbacks import NonFiniteGuard, NonFiniteLossError
from mtst.training.entry import train
from mtst.training.module import MultiTaskModule
from tests.conftest import SAVE_EVERY_STEP, TINY_TRAIN, compose_config
from tests.reliability.helpers import MOOD_TASK, checkpoint_step

NAN_AT_STEP = 4  # epoch 2, after best.ckpt (epoch 1) and several last.ckpt writes


def finite_weights(path) -> bool:
    state = load_checkpoint(path)["state_dict"]
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())


def test_nan_loss_stops_with_step_and_terms_and_keeps_checkpoints_finite(tmp_path, monkeypatch) -> None:
    real = MultiTaskModule.task_losses

    def poisoned(self, batch, outputs):
        losses, present = real(self, batch, outputs)
        if self.training and self.global_step == NAN_AT_STEP:
            nan = torch.tensor([float("nan") if n == "ner" else 0.0 for n in self.tasks])
            losses = losses + nan.to(losses)
        return losses, present

    monkeypatch.setattr(MultiTaskModule, "task_losses", poisoned)
    cfg = compose_config(tmp_path, TINY_TRAIN + MOOD_TASK + [
        "trainer.max_epochs=2", "trainer.limit_train_batches=3",
        *SAVE_EVERY_STEP, "~callbacks.lr_monitor"])
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg)
    message = str(err.value)
    assert isinstance(err.value, MtstError) and "\n" not in message
    assert f"non-finite loss at step {NAN_AT_STEP} (epoch 1, batch 1)" in message
    assert "train/ner/loss=nan" in message and "train/loss=nan" in message
    for task in ("topic", "mood"):  # every finite term is named too
        assert f"train/{task}/loss=" in message and f"train/{task}/loss=nan" not in message
    ckpts = tmp_path / "checkpoints"
    assert checkpoint_step(ckpts / "last.ckpt") == NAN_AT_STEP  # the step before the NaN
    assert checkpoint_step(ckpts / "best.ckpt") == 3
    assert finite_weights(ckpts / "last.ckpt") and finite_weights(ckpts / "best.ckpt")
    assert not (tmp_path / "metrics.json").exists()


def test_a_non_finite_weight_stops_the_run_and_last_ckpt_keeps_the_previous_step(tmp_path) -> None:
    poison_at = 5  # epoch 1, batch 1: StepCheckpoint writes last.ckpt at this batch's end
    cfg = compose_config(tmp_path, TINY_TRAIN + [
        "trainer.max_epochs=2", "trainer.limit_train_batches=3",
        *SAVE_EVERY_STEP, "~callbacks.lr_monitor",
        "+callbacks.poison._target_=tests.reliability.helpers.PoisonWeightAtStep",
        f"+callbacks.poison.step={poison_at}"])
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert (f"refusing to write a checkpoint at step {poison_at}: non-finite weights in 1 tensors "
            "(first: net.heads.topic.out.weight)") in message
    ckpts = tmp_path / "checkpoints"
    assert checkpoint_step(ckpts / "last.ckpt") == poison_at - 1
    assert checkpoint_step(ckpts / "best.ckpt") == 3
    assert finite_weights(ckpts / "last.ckpt") and finite_weights(ckpts / "best.ckpt")
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt", "tensors"]
    assert not list(ckpts.rglob(".*.tmp"))  # no temp file, beside them or in tensors/
    assert not (tmp_path / "metrics.json").exists()


def test_a_checkpoint_with_non_finite_weights_is_never_written() -> None:
    guard = NonFiniteGuard()
    trainer = SimpleNamespace(global_step=7)
    fine = {"state_dict": {"w": torch.ones(3), "ids": torch.arange(3)}}
    guard.on_save_checkpoint(trainer, None, fine)  # no error
    broken = {"state_dict": {"w": torch.tensor([1.0, float("inf")]), "b": torch.zeros(2)}}
    with pytest.raises(NonFiniteLossError, match="step 7: non-finite weights in 1 tensors"):
        guard.on_save_checkpoint(trainer, None, broken)


def test_weights_a_fused_optimizer_wrote_are_checked_at_every_save() -> None:
    guard = NonFiniteGuard()
    module, trainer = torch.nn.Linear(2, 1), SimpleNamespace(global_step=3, world_size=1)
    frozen = torch.nn.Linear(2, 1).requires_grad_(False)
    model = torch.nn.ModuleDict({"head": module, "frozen": frozen})
    guard.on_save_checkpoint(trainer, model, {"state_dict": model.state_dict()})
    module.weight.grad = torch.full_like(module.weight, float("nan"))
    module.bias.grad = torch.zeros_like(module.bias)
    torch.optim.AdamW(module.parameters(), fused=True).step()  # on CPU: no version-counter bump
    assert module.weight.isnan().all()
    with pytest.raises(NonFiniteLossError, match=r"non-finite weights in 1 tensors \(first: head.weight\)"):
        guard.on_save_checkpoint(trainer, model, {"state_dict": model.state_dict()})
    checked = []
    guard._finite = lambda name, tensor, reuse=True: checked.append((name, reuse)) or True
    guard.on_save_checkpoint(trainer, model, {"state_dict": model.state_dict()})
    assert dict(checked) == {"head.weight#0": False, "head.bias#0": False,
                             "frozen.weight#0": True, "frozen.bias#0": True}


def test_a_frozen_weight_is_checked_once_and_any_in_place_write_to_it_is_seen(monkeypatch) -> None:
    checked: list[tuple[int, ...]] = []
    real = torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda t: checked.append(tuple(t.shape)) or real(t))
    guard, trainer = NonFiniteGuard(), SimpleNamespace(global_step=3, world_size=1)
    model = torch.nn.ModuleDict({"head": torch.nn.Linear(2, 1),
                                 "frozen": torch.nn.Linear(3, 4).requires_grad_(False)})
    for _ in range(3):  # a fresh state dict at every save, the last one during validation
        with torch.inference_mode(_ == 2):
            guard.on_save_checkpoint(trainer, model, {"state_dict": model.state_dict()})
    assert checked.count((4, 3)) == 1 and checked.count((1, 2)) == 3  # trained: every save
    poisoned = {**model.state_dict(), "frozen.weight": torch.full((4, 3), float("nan"))}
    model.load_state_dict(poisoned)  # an in-place copy into the frozen weight (a resume, a merge)
    with pytest.raises(NonFiniteLossError, match=r"1 tensors \(first: frozen.weight\)"):
        guard.on_save_checkpoint(trainer, model, {"state_dict": model.state_dict()})
    with torch.no_grad():
        model["frozen"].weight.fill_(1.0)
    guard.on_save_checkpoint(trainer, model, {"state_dict": model.state_dict()})
    with torch.no_grad():  # one element, through a view, as user code or a LoRA merge might
        model["frozen"].weight.view(-1)[5] = float("inf")
    with pytest.raises(NonFiniteLossError, match=r"first: frozen.weight"):
        guard.on_save_checkpoint(trainer, model, {"state_dict": model.state_dict()})


def test_a_weight_frozen_after_training_is_checked_again() -> None:
    guard, trainer = NonFiniteGuard(), SimpleNamespace(global_step=3, world_size=1)
    model = torch.nn.ModuleDict({"head": torch.nn.Linear(2, 1)})
    guard.on_save_checkpoint(trainer, model, {"state_dict": model.state_dict()})  # trained
    head = model["head"]
    head.weight.grad = torch.full_like(head.weight, float("nan"))
    head.bias.grad = torch.zeros_like(head.bias)
    torch.optim.AdamW(head.parameters(), fused=True).step()  # unseen by autograd's check
    head.requires_grad_(False)  # then frozen, before the next save
    with pytest.raises(NonFiniteLossError, match=r"first: head.weight"):
        guard.on_save_checkpoint(trainer, model, {"state_dict": model.state_dict()})
