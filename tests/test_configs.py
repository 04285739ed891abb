"""Every config group option composes, and run folders never collide."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate

from mtst.cli._hydra import CONF_DIR
from mtst.training.runs import run_dir
from tests.conftest import compose_config


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiments_compose(tmp_path, experiment) -> None:
    cfg = compose_config(tmp_path, [f"experiment={experiment}"])
    assert cfg.model._target_.endswith("MultiTaskModel")
    assert cfg.data.max_length == cfg.model.max_length


@pytest.mark.parametrize("debug", options("debug"))
def test_debug_configs_compose_and_build_a_trainer(tmp_path, debug) -> None:
    cfg = compose_config(tmp_path, [f"debug={debug}", "backbone=gpt_neo_tiny"])
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.max_epochs is not None


def test_backbones_carry_pooling_and_no_remote_code(tmp_path) -> None:
    for backbone in options("backbone"):
        cfg = compose_config(tmp_path, [f"backbone={backbone}"])
        assert cfg.backbone.trust_remote_code is False
        assert cfg.model.pooling == cfg.backbone.pooling


def test_quickstart_uses_the_offline_tiny_backbone(tmp_path) -> None:
    cfg = compose_config(tmp_path, ["experiment=quickstart"])
    assert cfg.backbone.name_or_path == "package:mtst/assets/gpt_neo_tiny"
    assert cfg.backbone.pretrained is False


def test_run_folders_started_in_the_same_second_differ(tmp_path) -> None:
    folders = {run_dir(str(tmp_path), None) for _ in range(50)}
    assert len(folders) == 50
    assert all(Path(f).parent == tmp_path / "runs" for f in folders)


def test_resuming_a_checkpoint_reuses_its_run_folder(tmp_path) -> None:
    run = tmp_path / "runs" / "2026-01-01_00-00-00_abcdef"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert run_dir(str(tmp_path), str(run / "checkpoints" / "last.ckpt")) == str(run)
    assert run_dir(str(tmp_path), "last") == str(run)
