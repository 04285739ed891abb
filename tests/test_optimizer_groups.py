"""What the optimizer holds. An evaluation-only task (no `train_files`) is scored but never trained
on: its loss is an in-graph zero every step, so its head gets zero gradients, and AdamW's
decoupled weight decay alone would still shrink it. Its head therefore stays out of every group."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from mtst.training.entry import train
from tests.conftest import (
    TINY_TRAIN,
    compose_config,
    freeze_config,
    make_datamodule,
    make_module,
    optimizer_config,
    sample_tasks,
)


def eval_only_topic() -> dict[str, dict]:
    tasks = sample_tasks()
    tasks["topic"]["train_files"] = []
    return tasks


@pytest.mark.parametrize("freeze", [None, freeze_config("bitfit"), freeze_config("gradual")])
def test_an_evaluation_only_tasks_head_is_in_no_optimizer_group(freeze) -> None:
    tasks = eval_only_topic()
    module = make_module(make_datamodule(tasks), freeze=freeze, tasks=tasks)
    groups = module.freezer.param_groups(module, optimizer_config())
    grouped = {id(p) for g in groups for p in g["params"]}
    names = {n for n, p in module.named_parameters() if id(p) not in grouped}
    assert names and all(n.startswith("net.heads.topic.") for n in names), names
    assert {n for n in dict(module.named_parameters()) if n.startswith("net.heads.topic.")} == names


class HeadWeights(Callback):
    """The heads' weights when training starts and when it ends."""

    seen: dict[str, dict[str, torch.Tensor]] = {}

    @staticmethod
    def _copy(pl_module) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in pl_module.net.heads.named_parameters()}

    def on_train_start(self, trainer, pl_module) -> None:
        HeadWeights.seen["start"] = self._copy(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        HeadWeights.seen["end"] = self._copy(pl_module)


def test_an_evaluation_only_tasks_head_is_bitwise_unchanged_by_training(tmp_path) -> None:
    cfg = compose_config(
        tmp_path,
        TINY_TRAIN
        + [
            "tasks.topic.train_files=[]",
            "run_test=false",
            "+callbacks.head_weights._target_=tests.test_optimizer_groups.HeadWeights",
        ],
    )
    metrics = train(cfg)
    assert "val/topic/acc" in metrics  # still scored
    start, end = HeadWeights.seen["start"], HeadWeights.seen["end"]
    topic = [n for n in start if n.startswith("topic.")]
    assert topic and all(torch.equal(start[n], end[n]) for n in topic)
    assert any(not torch.equal(start[n], end[n]) for n in start if n.startswith("ner."))


def test_a_missing_optimizer_setting_is_one_line() -> None:
    """model.optimizer's values live in conf/model/multitask.yaml only: a node without one of
    them is a one-line error naming the key, not a default picked in code."""
    from mtst.errors import MtstError
    from mtst.training.optim import build_optimizer

    settings = optimizer_config()
    del settings["eps"]
    with pytest.raises(MtstError, match=r"model.optimizer.eps: missing; model.optimizer needs "
                                        r"lr_head, lr_backbone, weight_decay"):
        build_optimizer(object(), settings)
