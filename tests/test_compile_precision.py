"""The GPU path's switches, on CPU: `trainer.compile` compiles the encoder (checkpoints unchanged)
or is refused in one line; a bf16-mixed run trains under autocast without NaN; batches move to
an accelerator with non-blocking copies."""

from __future__ import annotations

import pytest
import torch

from mtst.checkpoints.file_io import load_checkpoint
from mtst.cli._hydra import report_user_errors
from mtst.cli.train import train_task
from mtst.training.entry import build_trainer, train
from tests.conftest import TINY_TRAIN, compose_config, sample_tasks

RUN = TINY_TRAIN + ["trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "run_test=false",
                    "~callbacks.lr_monitor"]


def test_compile_with_a_graph_capturing_backend_trains_and_keeps_checkpoint_keys(tmp_path) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    before = sum(torch._dynamo.utils.counters["stats"].values())
    train(compose_config(tmp_path / "plain", RUN))
    assert sum(torch._dynamo.utils.counters["stats"].values()) == before  # off by default
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    metrics = train(compose_config(tmp_path / "compiled", RUN + ["trainer.compile=eager"]))
    # one graph is the up-front check's (compiled afresh after the reset); the rest the encoder's
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs > 1
    assert metrics and all(v == v for v in metrics.values())
    keys = [set(load_checkpoint(tmp_path / d / "checkpoints" / "last.ckpt")["state_dict"])
            for d in ("plain", "compiled")]
    assert keys[0] == keys[1] and not any("_orig_mod" in k for k in keys[1])
    torch._dynamo.reset()


@pytest.mark.parametrize("value", ["bogus", "1.5"])
def test_an_unknown_compile_setting_is_one_line(tmp_path, capsys, value) -> None:
    cfg = compose_config(tmp_path, RUN + [f"trainer.compile={value}"])
    with pytest.raises(SystemExit) as caught:
        report_user_errors(train_task)(cfg)
    assert caught.value.code == 2
    shown = repr(float(value)) if value[0].isdigit() else repr(value)
    assert capsys.readouterr().err.strip() == (
        f"error: trainer.compile={shown}: expected true, false or a torch.compile backend "
        "(inductor, cudagraphs, aot_eager, eager)")


def test_compile_is_not_a_trainer_argument(tmp_path) -> None:
    trainer = build_trainer(compose_config(tmp_path, RUN + ["trainer.compile=true"]))
    assert trainer.max_epochs == 1  # built: the key was kept away from Lightning


class LinearOutputs:
    """Records the dtype of the backbone's first linear layer's outputs during training."""

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()

    def hook(self, module, inputs, output) -> None:
        if module.training:
            self.dtypes.add(output.dtype)


def test_bf16_mixed_trains_under_autocast_without_nan(tmp_path, monkeypatch) -> None:
    from mtst.training.module import MultiTaskModule

    seen = LinearOutputs()
    original = MultiTaskModule.on_fit_start

    def on_fit_start(self) -> None:
        linear = next(m for m in self.net.encoder.backbone.modules() if isinstance(m, torch.nn.Linear))
        linear.register_forward_hook(seen.hook)
        original(self)

    monkeypatch.setattr(MultiTaskModule, "on_fit_start", on_fit_start)
    metrics = train(compose_config(tmp_path, RUN + ["trainer.precision=bf16-mixed",
                                                    "trainer.limit_train_batches=4"]))
    assert seen.dtypes == {torch.bfloat16}  # the matmuls ran in bf16
    assert metrics["val/loss"] == metrics["val/loss"] and abs(metrics["val/loss"]) < 1e3
    state = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["state_dict"]
    floats = [t for t in state.values() if t.is_floating_point()]
    assert all(t.dtype == torch.float32 and bool(torch.isfinite(t).all()) for t in floats)


CALLS: list[tuple[tuple, dict]] = []


class RecordingTensor(torch.Tensor):
    """A tensor whose `.to` records the copy's options instead of copying (no GPU needed)."""

    def to(self, *args, **kwargs):
        CALLS.append((args, kwargs))
        return self


@pytest.mark.parametrize("device, non_blocking", [("cuda:0", True), ("cpu", False)])
def test_batches_move_to_an_accelerator_without_blocking(device, non_blocking) -> None:
    # collated batches move through Lightning's own transfer_batch_to_device: non-blocking copies
    # to CUDA (which overlap with compute when data.pin_memory=true), plain ones elsewhere
    from mtst.training.module import MultiTaskModule

    CALLS.clear()
    flat = {"input_ids": torch.zeros(2).as_subclass(RecordingTensor),
            "labels": torch.zeros(2).as_subclass(RecordingTensor)}
    moved = MultiTaskModule.transfer_batch_to_device(None, flat, torch.device(device), 0)
    assert set(moved) == set(flat)
    assert [args for args, _ in CALLS] == [(torch.device(device),)] * 2
    assert [kwargs.get("non_blocking", False) for _, kwargs in CALLS] == [non_blocking] * 2


def test_an_explicitly_fused_optimizer_with_clipping_under_bf16_is_one_line(tmp_path, capsys) -> None:
    cfg = compose_config(tmp_path, RUN + ["trainer.precision=bf16-mixed", "model.optimizer.fused=true"])
    with pytest.raises(SystemExit):
        report_user_errors(train_task)(cfg)
    assert capsys.readouterr().err.strip() == (
        "error: model.optimizer.fused=true: Lightning cannot clip the gradients of a fused "
        "optimizer under trainer.precision=bf16-mixed; set model.optimizer.fused=null (or false), "
        "or trainer.gradient_clip_val=null")


@pytest.mark.parametrize("precision, clip, fused", [("32-true", 1.0, True), ("bf16-mixed", 1.0, False),
                                                    ("bf16-mixed", None, True)])
def test_the_default_optimizer_is_fused_wherever_lightning_allows(tmp_path, precision, clip, fused) -> None:
    from mtst.training.optim import use_fused

    trainer = build_trainer(compose_config(tmp_path, RUN + [f"trainer.precision={precision}",
                                                            f"trainer.gradient_clip_val={clip or 'null'}"]))
    assert use_fused(None, trainer) is fused


@pytest.mark.parametrize("setting, cuda, pinned", [(None, True, True), (None, False, False),
                                                   (False, True, False), (True, False, True)])
def test_batches_are_pinned_by_default_only_for_cuda(setting, cuda, pinned) -> None:
    from types import SimpleNamespace

    from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

    from mtst.data.datamodule import MultiTaskDataModule
    from mtst.tasks import build_tasks

    tasks = {n: t.data for n, t in build_tasks(sample_tasks()).items()}
    datamodule = MultiTaskDataModule(tasks, pin_memory=setting)
    assert datamodule.pins_memory() is (setting is True)  # no trainer attached yet
    accelerator = CUDAAccelerator() if cuda else CPUAccelerator()
    datamodule.trainer = SimpleNamespace(accelerator=accelerator)
    assert datamodule.pins_memory() is pinned
