"""What TensorBoard's HPARAMS tab (and every other logger) receives: one flat dict of the settings
that shape a run, under short keys, with the weighting method's own settings only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata, plugin_data_pb2

from mtst.training.entry import configured_tasks, train
from mtst.training.loggers import run_hparams
from tests.conftest import TINY_TRAIN, WEIGHTING_OPTIONS, compose_config

# what every run logs (the first: the HPARAMS tab's first column)
ALWAYS = [
    "backbone",
    "pretrained",
    "pooling",
    "max_length",
    "batch_size",
    "max_epochs",
    "seed",
    "freeze",
    "weighting",
    "lr_head",
    "lr_backbone",
    "weight_decay",
    "warmup_ratio",
    "tasks",
    "weight/topic",
    "weight/ner",
]


def tensorboard_hparams(run_dir: Path) -> tuple[list[str], dict[str, Any]]:
    """(the HPARAMS tab's columns in order, the run's values) from the run's event file."""
    (events,) = (run_dir / "tensorboard").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content[metadata.EXPERIMENT_TAG]
    ).experiment
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content[metadata.SESSION_START_INFO_TAG]
    ).session_start_info
    values = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    return [h.name for h in experiment.hparam_infos], values


def others(method: str) -> set[str]:
    return {m for m in WEIGHTING_OPTIONS if m != method}


@pytest.mark.parametrize("method", ["fixed", "dwa"])
def test_the_loggers_get_the_runs_settings_and_only_its_methods(tmp_path, method) -> None:
    cfg = compose_config(
        tmp_path, TINY_TRAIN + [f"weighting={method}", "logger=many", "run_test=false"]
    )
    train(cfg)
    columns, values = tensorboard_hparams(tmp_path)
    assert columns[0] == "backbone" and set(columns) == set(values)
    assert set(ALWAYS) <= set(values), sorted(set(ALWAYS) - set(values))
    assert values["backbone"] == "package:mtst/assets/gpt_neo_tiny"
    assert (values["batch_size"], values["max_epochs"], values["seed"]) == (8, 1, 42)
    assert (values["freeze"], values["weighting"], values["tasks"]) == ("none", method, "topic,ner")
    assert (values["pooling"], values["max_length"]) == ("weighted_mean", 128)
    assert values["lr_head"] == pytest.approx(1e-3) and values["weight/ner"] == 1.0
    prefixes = {key.split("/")[0] for key in values if "/" in key}
    assert not prefixes & (others(method) | {"loss", "optimizer", "tasks"}), sorted(values)
    if method == "dwa":
        assert values["dwa/temperature"] == 2.0
    else:
        assert not [k for k in values if k.startswith(f"{method}/")]
    # every logger gets the same dict: the CSV logger's hparams.yaml holds it too
    assert yaml.safe_load((tmp_path / "csv" / "hparams.yaml").read_text()) == pytest.approx(values)


def test_gradient_methods_token_budgets_and_freeze_settings_are_named(tmp_path) -> None:
    cfg = compose_config(
        tmp_path,
        [
            "backbone=gpt_neo_tiny",
            "weighting=cagrad",
            "data.max_tokens=512",
            "freeze=gradual",
            "trainer.max_steps=7",
            "+model.optimizer.warmup_steps=3",
        ],
    )
    values = run_hparams(cfg, configured_tasks(cfg))
    assert (values["cagrad/c"], values["grad_on"]) == (0.4, "representation")
    assert values["max_tokens"] == 512 and "batch_size" not in values
    assert values["max_steps"] == 7
    assert values["warmup_steps"] == 3 and "warmup_ratio" not in values
    assert values["freeze"] == "gradual" and values["freeze/layer_decay"] == pytest.approx(1 / 2.6)
    assert not {k.split("/")[0] for k in values if "/" in k} & others("cagrad")
    assert all(isinstance(v, bool | int | float | str) for v in values.values()), values
