"""Freeze strategies on the tiny backbone: after real optimizer steps, frozen tensors are
bitwise unchanged and trainable ones moved; the frozen head's loss still reaches the encoder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from mtst.errors import MtstError
from mtst.freezing.strategies import build_freeze_strategy
from mtst.tasks import build_tasks
from mtst.training.module import MultiTaskModule
from tests.conftest import freeze_config, make_module, sample_tasks
from tests.conftest import make_datamodule as _make_datamodule

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
OPTIMIZER = {"lr_head": 1e-2, "lr_backbone": 1e-3, "weight_decay": 0.01, "warmup_steps": 0}


def three_tasks(train_stop: int | None = None, val_stop: int | None = None) -> dict[str, dict]:
    """topic + ner + a third sentence task (`mood`, the same field under another name): every
    freezing guarantee is checked with more tasks than the two defaults."""
    def spec(split: str, stop: int | None) -> list[dict[str, Any]]:
        return [{"path": str(SAMPLE / f"{split}.jsonl"), **({"stop": stop} if stop else {})}]

    tasks = sample_tasks(spec("train", train_stop), spec("val", val_stop), spec("test", None))
    tasks["mood"] = {**tasks["topic"], "labels": None}
    return tasks


def make_datamodule(train_stop: int | None = None, val_stop: int | None = None,
                    batch_size: int = 8):
    """The sample corpus tokenised with the tiny tokenizer (optionally its first examples only)."""
    return _make_datamodule(three_tasks(train_stop, val_stop), batch_size=batch_size)


def make_model(dm, freeze: dict[str, Any], dropout: float = 0.1,
               optimizer: dict[str, Any] | None = None, seed: int = 0) -> MultiTaskModule:
    return make_module(dm, freeze, three_tasks(), optimizer=optimizer or OPTIMIZER, seed=seed,
                       dropout=dropout)


def make_trainer(epochs: int, batches: int = 3, **kwargs: Any) -> L.Trainer:
    settings: dict[str, Any] = dict(
        accelerator="cpu", devices=1, max_epochs=epochs, limit_train_batches=batches,
        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0)
    settings.update(kwargs)
    return L.Trainer(**settings)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.fixture(scope="module")
def dm():
    return make_datamodule()


def _enc(name: str) -> bool:
    return name.startswith("net.encoder.")


# expected trainable set, written from the strategy definitions (not from the implementation)
CASES = {
    "none": (freeze_config("none"), 1, lambda n: True),
    "backbone": (freeze_config("backbone", cache_features=True), 2, lambda n: not _enc(n)),
    "head_topic": (freeze_config("head", heads=["topic"]), 1,
                   lambda n: not n.startswith("net.heads.topic.")),
    "head_ner": (freeze_config("head", heads=["ner"]), 1, lambda n: not n.startswith("net.heads.ner.")),
    "heads_topic_mood": (freeze_config("head", heads=["topic", "mood"]), 1,
                         lambda n: not n.startswith(("net.heads.topic.", "net.heads.mood."))),
    "bitfit": (freeze_config("bitfit", lr_backbone=1e-3), 1,
               lambda n: not _enc(n) or n.endswith(".bias")),
    "lora": (freeze_config("lora", lora={"r": 2, "alpha": 4, "dropout": 0.1}), 1,
             lambda n: not _enc(n) or ".lora_" in n),
    "gradual_stage1": (freeze_config("gradual", stage1_epochs=1), 1, lambda n: not _enc(n)),
    "gradual_stage2": (freeze_config("gradual", stage1_epochs=1, top_blocks=1), 2,
                       lambda n: not _enc(n) or ".h.1." in n or ".ln_f." in n),
}


@pytest.mark.parametrize("case", list(CASES))
def test_frozen_tensors_unchanged_and_trainable_ones_moved(dm, case: str) -> None:
    freeze, epochs, expected_trainable = CASES[case]
    model = make_model(dm, freeze)
    before = snapshot(model)
    make_trainer(epochs).fit(model, train_dataloaders=dm.train_dataloader())
    assert model.global_step == 3 * epochs
    frozen = [n for n in before if not expected_trainable(n)]
    trainable = [n for n in before if expected_trainable(n)]
    assert trainable, "every strategy trains something"
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, before[name]), f"{case}: frozen {name} changed"
        else:
            assert not torch.equal(param, before[name]), f"{case}: trainable {name} did not change"
    if case == "backbone":
        assert not model.net.encoder.training, "a frozen encoder runs in eval mode (no dropout)"
        assert model.net.heads["topic"].training


def test_freeze_all_trains_nothing_and_leaves_modes_for_eval(dm) -> None:
    model = make_model(dm, freeze_config("all"))
    model.freezer.apply(model, 0)
    assert model.freezer.trains_nothing
    assert not any(p.requires_grad for p in model.net.parameters())
    assert not model.net.encoder.training


@pytest.mark.parametrize("head", ["topic", "ner", "mood"])
def test_frozen_head_loss_still_reaches_the_encoder(dm, head: str) -> None:
    batch = next(iter(dm.train_dataloader()))
    grads = {}
    for weight in (0.0, 1.0, 2.0):
        model = make_model(dm, freeze_config("head", heads=[head], frozen_head_weight=weight),
                           dropout=0.0)
        model.double()  # float64 (GPT-Neo still takes attention scores in fp32)
        assert float(model.weighting.weights[list(model.tasks).index(head)]) == weight
        model.freezer.apply(model, 0)
        model.compute_loss(batch, model.encode_batch(batch))[0].backward()
        assert all(p.grad is None for p in model.net.heads[head].parameters())
        grads[weight] = model.net.encoder.backbone.h[0].mlp.c_fc.weight.grad.clone()
    assert grads[1.0].dtype == torch.float64
    # the frozen head's loss adds to the encoder's gradient in proportion to its weight; the
    # tolerance is relative to the gradient's size, 1000x above the fp32 attention's rounding
    contribution = grads[1.0] - grads[0.0]
    scale = float(grads[1.0].abs().max())
    assert float(contribution.abs().max()) > 1e-2 * scale
    torch.testing.assert_close(grads[2.0] - grads[1.0], contribution, rtol=0, atol=1e-6 * scale)


def test_bad_settings_are_one_line_user_errors() -> None:
    tasks = build_tasks(three_tasks())
    with pytest.raises(MtstError, match="freeze._target_: Error locating target 'mtst.freezing.Frozen'"):
        build_freeze_strategy({"_target_": "mtst.freezing.Frozen"})
    with pytest.raises(MtstError, match="freeze: {'name': 'all'} names no _target_"):
        build_freeze_strategy({"name": "all"})
    with pytest.raises(MtstError, match="freeze._target_='torch.nn.Linear': not a FreezeStrategy"):
        build_freeze_strategy({"_target_": "torch.nn.Linear"})
    with pytest.raises(MtstError, match="freeze.cache_dtyp: no such setting; freeze=backbone takes "
                                        "cache_features, cache_dtype, cache_max_mb"):
        build_freeze_strategy({**freeze_config("backbone"), "cache_dtyp": "float32"})
    with pytest.raises(MtstError, match="freeze.cache_max_mb: missing; freeze=backbone takes"):
        build_freeze_strategy({"_target_": "mtst.freezing.strategies.FreezeBackbone",
                               "cache_features": True, "cache_dtype": "float16"})
    with pytest.raises(MtstError, match="freeze.heads: 'nerr' is not a task; tasks are topic, ner, mood"):
        build_freeze_strategy(freeze_config("head", heads=["nerr"]), tasks)
    with pytest.raises(MtstError, match="freeze.heads: name the task heads"):
        build_freeze_strategy(freeze_config("head", heads=[]), tasks)
    with pytest.raises(MtstError, match=re.escape("freeze.top_blocks=0")):
        build_freeze_strategy(freeze_config("gradual", top_blocks=0))
    with pytest.raises(MtstError, match="freeze.layer_decay"):
        build_freeze_strategy(freeze_config("gradual", layer_decay=1.5))
    with pytest.raises(MtstError, match="freeze.cache_dtype"):
        build_freeze_strategy(freeze_config("backbone", cache_features=True, cache_dtype="int8"))
    with pytest.raises(MtstError, match="freeze.frozen_head_weight"):
        build_freeze_strategy(freeze_config("head", heads=["topic"], frozen_head_weight=-1), tasks)
