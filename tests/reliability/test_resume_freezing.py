"""Resume under freeze strategies whose trainable set changes with the epoch: a run crashed at an
epoch boundary or in the middle of an epoch and resumed from `last.ckpt` ends with exactly the
weights of an uninterrupted run (through the pipeline, dropout on, every tensor)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mtst.checkpoints.file_io import load_checkpoint
from mtst.freezing.strategies import build_freeze_strategy
from mtst.model.backbone import load_tokenizer
from mtst.training.entry import build_datamodule, build_model, configured_tasks, train
from tests.conftest import FREEZE_OPTIONS, compose_config
from tests.reliability.conftest import RESUME_RUN, TOTAL_STEPS
from tests.reliability.helpers import Crash, checkpoint_step

# strategies whose trainable parameters differ between epochs, with settings that change them
# between RESUME_RUN's two epochs (the first test checks this list against every conf/freeze option)
EPOCH_DEPENDENT = {"gradual": ["freeze=gradual", "freeze.stage1_epochs=1", "freeze.top_blocks=1"]}
# resumed too: LoRA's adapters are parameters the network gains when the module is built, and
# their dropout draws random numbers
RESUMED = {**EPOCH_DEPENDENT, "lora": ["freeze=lora", "freeze.lora.r=2", "freeze.lora.layers=1"]}
EPOCHS = 2


def trainable_sets(overrides: list[str], tmp_path: Path) -> list[frozenset[str]]:
    cfg = compose_config(tmp_path, RESUME_RUN + overrides)
    tasks = configured_tasks(cfg)
    datamodule = build_datamodule(cfg, load_tokenizer(cfg.backbone.name_or_path), tasks)
    net = build_model(cfg, tasks, datamodule.label_spaces).net
    strategy = build_freeze_strategy(OmegaConf.to_container(cfg.freeze, resolve=True), tasks)
    return [frozenset(n for n, _ in net.named_parameters() if strategy.trainable(n, net, e))
            for e in range(EPOCHS + 2)]


def strategy_overrides(name: str) -> list[str]:
    """`freeze=<name>`, with the heads to freeze where the strategy needs them."""
    return [f"freeze={name}"] + (["freeze.heads=[topic]"] if name == "head" else [])


def test_every_epoch_dependent_strategy_is_covered(tmp_path) -> None:
    dependent = {name for name in FREEZE_OPTIONS
                 if len(set(trainable_sets(strategy_overrides(name), tmp_path))) > 1}
    assert dependent == set(EPOCH_DEPENDENT)
    for name, overrides in EPOCH_DEPENDENT.items():
        first, second, *_ = trainable_sets(overrides, tmp_path)
        assert first < second, name  # more trains in the epoch the crashed runs resume into


def last_state(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of each strategy, trained once for the module."""
    runs: dict[str, tuple[dict[str, torch.Tensor], dict[str, float]]] = {}

    def get(name: str) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        if name not in runs:
            folder = tmp_path_factory.mktemp(f"reference_{name}")
            metrics = train(compose_config(folder, RESUME_RUN + RESUMED[name]))
            runs[name] = last_state(folder), metrics
        return runs[name]

    return get


# step 3: last.ckpt from the end of epoch 0; step 5: from the middle of epoch 1 (steps 3-5)
@pytest.mark.parametrize("step", [3, 5])
@pytest.mark.parametrize("name", sorted(RESUMED))
def test_crash_then_resume_matches_the_uninterrupted_run(name, step, reference, tmp_path) -> None:
    run = RESUME_RUN + RESUMED[name]
    expected, ref_metrics = reference(name)
    crashed = tmp_path
    cfg = compose_config(crashed, run)
    assert all(task.dropout > 0 for task in cfg.tasks.values())  # the resumed steps draw dropout
    crash = ["+callbacks.crash._target_=tests.reliability.helpers.RaiseAtStep",
             f"+callbacks.crash.step={step}"]
    with pytest.raises(Crash):
        train(compose_config(crashed, run + crash))
    last = crashed / "checkpoints" / "last.ckpt"
    assert checkpoint_step(last) == step
    metrics = train(compose_config(crashed, run + [f"ckpt_path={last}"]))
    assert checkpoint_step(last) == TOTAL_STEPS
    final = last_state(crashed)
    assert final.keys() == expected.keys()
    assert [k for k in expected if not torch.equal(final[k], expected[k])] == []
    assert metrics.keys() == ref_metrics.keys()
    for key, value in ref_metrics.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key
