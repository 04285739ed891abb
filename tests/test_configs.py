"""Every config group option composes, and run folders never collide."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mtst.cli._hydra import CONF_DIR
from mtst.config import runs
from mtst.config.runs import new_run_folder, run_dir
from mtst.errors import MtstError
from mtst.tasks import build_tasks
from mtst.training.entry import MTST_TRAINER_KEYS, trainer_arguments
from tests.conftest import compose_config


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiments_compose(tmp_path, experiment) -> None:
    cfg = compose_config(tmp_path, [f"experiment={experiment}"])
    assert cfg.model._target_.endswith("MultiTaskModule")
    assert cfg.data.max_length == cfg.model.net.max_length
    assert list(cfg.tasks)[:2] == ["topic", "ner"]


@pytest.mark.parametrize("debug", options("debug"))
def test_debug_configs_compose_and_build_a_trainer(tmp_path, debug) -> None:
    cfg = compose_config(tmp_path, [f"debug={debug}", "backbone=gpt_neo_tiny"])
    trainer = instantiate(trainer_arguments(cfg), logger=False, enable_checkpointing=False)
    assert trainer.max_epochs is not None


def test_backbones_carry_pooling_and_no_remote_code(tmp_path) -> None:
    for backbone in options("backbone"):
        cfg = compose_config(tmp_path, [f"backbone={backbone}"])
        assert cfg.backbone.trust_remote_code is False
        assert cfg.model.net.pooling == cfg.backbone.pooling


def test_quickstart_uses_the_offline_tiny_backbone(tmp_path) -> None:
    cfg = compose_config(tmp_path, ["experiment=quickstart"])
    assert cfg.backbone.name_or_path == "package:mtst/assets/gpt_neo_tiny"
    assert cfg.backbone.pretrained is False


def test_run_folders_started_in_the_same_second_differ(tmp_path) -> None:
    folders = {run_dir(str(tmp_path), None) for _ in range(50)}
    assert len(folders) == 50
    assert all(Path(f).parent == tmp_path / "runs" for f in folders)


def test_the_configs_run_and_sweep_folders_are_new_folders_made_on_resolution(tmp_path) -> None:
    name = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{6}")
    seen = set()
    for _ in range(2):
        cfg = compose_config(tmp_path)  # paths.log_dir: tmp_path/logs
        for key, parent in (("run", "runs"), ("sweep", "multiruns")):
            folder = Path(cfg.hydra[key].dir)
            assert folder.parent == tmp_path / "logs" / parent and folder.is_dir(), key
            assert name.fullmatch(folder.name) and folder not in seen
            seen.add(folder)


def test_a_taken_run_folder_name_is_never_reused(tmp_path, monkeypatch) -> None:
    suffixes = iter(["aaaaaa", "aaaaaa", "bbbbbb"])  # the second draw collides with the first
    monkeypatch.setattr(runs, "unique_suffix", lambda: next(suffixes))
    stamp = "2026-01-01_00-00-00"
    first = Path(new_run_folder(tmp_path, stamp))
    (first / "train.log").write_text("the first run's", encoding="utf-8")
    second = Path(new_run_folder(tmp_path, stamp))
    assert (first.name, second.name) == (f"{stamp}_aaaaaa", f"{stamp}_bbbbbb")
    assert second.is_dir() and not any(second.iterdir())
    assert (first / "train.log").read_text(encoding="utf-8") == "the first run's"
    monkeypatch.setattr(runs, "unique_suffix", lambda: "aaaaaa")  # every name taken
    with pytest.raises(MtstError, match=f"{runs.MAX_TRIES} names starting with {stamp} are taken"):
        new_run_folder(tmp_path, stamp)


@pytest.mark.parametrize("ckpt_path", ["last", "missing.ckpt"])
def test_nothing_to_resume_is_an_error_before_any_folder_exists(tmp_path, ckpt_path) -> None:
    with pytest.raises(MtstError, match="no run under|does not exist"):
        run_dir(str(tmp_path / "logs"), ckpt_path)
    assert not (tmp_path / "logs").exists()


def test_resuming_a_checkpoint_reuses_its_run_folder(tmp_path) -> None:
    run = tmp_path / "runs" / "2026-01-01_00-00-00_abcdef"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert run_dir(str(tmp_path), str(run / "checkpoints" / "last.ckpt")) == str(run)
    assert run_dir(str(tmp_path), "last") == str(run)


# Settings a user reaches for first; each must be settable as `trainer.<key>=...` (no `+`).
COMMON_TRAINER_KEYS = {"max_steps", "val_check_interval", "accumulate_grad_batches",
                       "gradient_clip_algorithm", "limit_predict_batches", "benchmark", "profiler"}


@pytest.mark.parametrize("option", options("trainer"))
def test_every_trainer_config_key_is_a_lightning_trainer_argument(option) -> None:
    import inspect

    import lightning
    import yaml

    arguments = set(inspect.signature(lightning.Trainer.__init__).parameters) - {"self"}
    config = yaml.safe_load((CONF_DIR / "trainer" / f"{option}.yaml").read_text())
    # `compile` (and any other MTST_TRAINER_KEYS) is read by mtst and never reaches the Trainer:
    # it sits under `trainer.` because it is a setting of how training runs (trainer.compile=true)
    keys = set(config) - {"_target_", "defaults"} - set(MTST_TRAINER_KEYS)
    assert keys
    assert not keys - arguments, f"not Trainer arguments: {sorted(keys - arguments)}"
    if option == "default":
        assert keys >= COMMON_TRAINER_KEYS, sorted(COMMON_TRAINER_KEYS - keys)
        assert not keys & {"callbacks", "logger", "plugins"}  # built by the pipeline


def test_common_trainer_settings_need_no_plus(tmp_path) -> None:
    from mtst.training.entry import train
    from tests.conftest import TINY_TRAIN
    from tests.reliability.helpers import checkpoint_step

    cfg = compose_config(tmp_path, TINY_TRAIN + [  # 3 epochs x 3 batches would be 9 steps
        "trainer.max_epochs=3", "trainer.max_steps=5", "trainer.val_check_interval=1.0",
        "trainer.accumulate_grad_batches=1", "trainer.gradient_clip_algorithm=norm",
        "run_test=false"])
    train(cfg)
    assert checkpoint_step(tmp_path / "checkpoints" / "last.ckpt") == 5


@pytest.mark.parametrize("preset, tasks", [("sample", ["topic", "ner"]), ("conll_agnews", ["topic", "ner"]),
                                           ("conll_agnews_sts", ["topic", "ner", "sts"])])
def test_data_presets_are_one_word_and_set_the_tasks(tmp_path, preset, tasks) -> None:
    cfg = compose_config(tmp_path, [f"data={preset}"])
    assert list(cfg.tasks) == tasks
    built = build_tasks(OmegaConf.to_container(cfg.tasks, resolve=True))
    assert [t.type for t in built.values()][:2] == ["sentence_classification", "token_classification"]
    for task in built.values():
        assert task.data.split_files("train") and task.data.split_files("val")


def test_tasks_are_added_and_removed_on_the_command_line(tmp_path) -> None:
    cfg = compose_config(tmp_path, ["~tasks.topic", "+tasks.sts.type=sentence_similarity",
                                    "+tasks.sts.val_files=[pairs.jsonl]"])
    assert list(cfg.tasks) == ["ner", "sts"]
    built = build_tasks(OmegaConf.to_container(cfg.tasks, resolve=True))
    assert built["sts"].data.split_files("train") == () and built["sts"].weight == 1.0


def test_every_target_in_conf_names_an_object_that_exists() -> None:
    """A module moved to another room takes its `_target_:` lines along (a group that no test
    composes, `trainer=fsdp` or `logger=wandb`, would otherwise fail only when someone picks it)."""
    from hydra.utils import get_object

    targets = set()
    for path in CONF_DIR.rglob("*.yaml"):
        targets |= set(re.findall(r"^\s*_target_:\s*([\w.]+)", path.read_text("utf-8"), re.M))
    assert any(t.startswith("mtst.") for t in targets)
    missing = []
    for target in sorted(targets):
        try:
            get_object(target)
        except Exception as err:  # ImportError, or hydra's wrapping of it
            missing.append(f"{target}: {type(err).__name__}")
    assert not missing, "\n".join(missing)
