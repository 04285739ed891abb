"""Every choice-valued setting in conf/, given a value outside its choices, ends the run with one
`error:` line that names it, and exit code 2: config groups, the values mtst reads, and the
values Lightning validates. A completeness check keeps new string settings from slipping by."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
from omegaconf import DictConfig, ListConfig

from mtst.cli._hydra import CONF_DIR, report_user_errors
from mtst.cli.train import train_task
from mtst.config.overrides import check_command_line, group_options
from mtst.config.settings import CHOICES, NON_NEGATIVE
from mtst.errors import MtstError
from tests.conftest import TINY_TRAIN, compose_config
from tests.reliability.helpers import run_cli

GROUPS = sorted(str(p.relative_to(CONF_DIR)) for p in CONF_DIR.iterdir()
                if p.is_dir() and p.name != "hydra")
# choice-valued settings that Lightning checks itself, and the override that sets them wrong
LIGHTNING_CHOICES = {
    "trainer.precision": "trainer.precision=bogus",
    "trainer.accelerator": "trainer.accelerator=bogus",
    "trainer.strategy": "+trainer.strategy=bogus",  # not in trainer/default.yaml
    "callbacks.model_checkpoint.mode": "callbacks.model_checkpoint.mode=bogus",
    "callbacks.lr_monitor.logging_interval": "callbacks.lr_monitor.logging_interval=bogus",
    "trainer.gradient_clip_algorithm": "trainer.gradient_clip_algorithm=bogus",
    "trainer.profiler": "trainer.profiler=bogus",
    # a metric name: known only once training logs
    "callbacks.model_checkpoint.monitor": "callbacks.model_checkpoint.monitor=bogus",
}
# what each key of CHOICES needs to be present in the composed config
REACH = {"freeze.probe.class_weight": ["freeze=all"], "freeze.cache_dtype": ["freeze=backbone"],
         "trainer.strategy.process_group_backend": ["trainer=ddp_cpu"],
         "trainer.strategy.sharding_strategy": ["trainer=fsdp_cpu"],
         "trainer.strategy.state_dict_type": ["trainer=fsdp_cpu"]}
# string settings that are not choices: names, paths, patterns, interpolations
FREE_FORM = ["*._target_", "paths.*", "*.dirpath", "*.save_dir", "logger.*.name",
             "logger.*.version", "backbone.name_or_path", "backbone.revision", "ckpt_path",
             "callbacks", "callbacks.*", "callbacks.model_checkpoint.filename", "data.eval_batch_size",
             "data.seed", "data.store_dir", "freeze.blocks_pattern", "freeze.embeddings_pattern",
             "model.net.max_length", "optimized_metric", "tasks.*.field", "sweep.failed_score", "task_name",
             "trainer.default_root_dir", "trainer.max_time", "tasks_only",
             # numbers or flags whose default is null
             "trainer.benchmark", "trainer.val_check_interval", "trainer.limit_predict_batches",
             "trainer.enable_model_summary", "trainer.min_steps", "data.max_tokens",
             "model.optimizer.fused", "data.pin_memory",
             "freeze.lora.target_modules", "freeze.lora.layers",  # null: defaults (test_lora.py)
             "trainer.strategy.block_classes",  # auto, or dotted class paths
             # logger=mlflow / logger=wandb: names, URIs, tags; wandb's own settings are checked
             # when the logger is built (tests/test_trackers.py)
             "logger.*.project", "logger.*.experiment_name", "logger.*.run_name",
             "logger.*.tracking_uri", "logger.*.artifact_location", "logger.*.tags.*",
             "logger.wandb.settings.*"]


def string_settings(node, prefix: str = "") -> set[str]:
    """Keys of the leaves holding a string or null (interpolations unresolved)."""
    keys: set[str] = set()
    if isinstance(node, DictConfig):
        for key in node:
            child = node._get_node(key)
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(child, (DictConfig, ListConfig)):
                keys |= string_settings(child, path)
            elif child._value() is None or isinstance(child._value(), str):
                keys.add(path)
    return keys


# task settings whose values are choices: checked when the tasks are built (see
# test_task_choices_are_one_line and tests/test_tasks.py)
TASK_CHOICES = {"tasks.*.type": "tasks.topic.type=bogus", "tasks.*.loss": "tasks.sts.loss=bogus"}


def test_every_string_setting_is_a_tested_choice_or_free_form(tmp_path) -> None:
    tested = set(CHOICES) | set(LIGHTNING_CHOICES) | set(TASK_CHOICES)
    unclassified = set()
    for group in GROUPS:
        for option in group_options(CONF_DIR, group):
            cfg = compose_config(tmp_path, [f"{group}={option}"])
            for key in string_settings(cfg) - {k for k in string_settings(cfg) if k.startswith("hydra")}:
                if key not in tested and not any(fnmatch.fnmatch(key, p) for p in [*FREE_FORM, *tested]):
                    unclassified.add(key)
    assert not unclassified, f"string settings neither tested as choices nor free-form: {unclassified}"


@pytest.mark.parametrize("group", GROUPS)
def test_an_unknown_group_option_names_the_group_and_its_options(group) -> None:
    options = group_options(CONF_DIR, group)
    with pytest.raises(MtstError) as caught:
        check_command_line([f"{group}=bogus"], CONF_DIR, "train")
    assert str(caught.value) == f"{group}=bogus: no such option; choose one of {', '.join(options)}"
    with pytest.raises(MtstError, match=f"{group}=bogus: no such option"):  # inside a sweep too
        check_command_line(["-m", f"{group}={options[0]},bogus"], CONF_DIR, "train")
    check_command_line(["-m", f"{group}={','.join(options)}"], CONF_DIR, "train")  # all valid


@pytest.mark.parametrize("override, expected", [
    ("model.optimizer.lr_hed=1e-3", "model.optimizer.lr_hed: no such setting; model.optimizer has lr_head, "),
    ("trainer.max_epoch=3", "trainer.max_epoch: no such setting; trainer has "),
    ("seeds=3", "seeds: no such setting; the config has task_name, seed, "),
    ("trainer.max_epochs=(", "Error parsing override 'trainer.max_epochs=('"),
])
def test_unknown_keys_and_unparsable_overrides_are_one_line(override, expected) -> None:
    with pytest.raises(MtstError) as caught:
        check_command_line([override], CONF_DIR, "train")
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)


def run_task(tmp_path: Path, overrides: list[str], capsys) -> str:
    cfg = compose_config(tmp_path, TINY_TRAIN + overrides)
    with pytest.raises(SystemExit) as caught:
        report_user_errors(train_task)(cfg)
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_a_value_outside_the_choices_is_one_line_naming_key_and_choices(key, tmp_path, capsys) -> None:
    err = run_task(tmp_path, [*REACH.get(key, []), f"{key}=bogus"], capsys)
    shown = ", ".join("null" if c is None else str(c) for c in CHOICES[key])
    assert err == f"error: {key}='bogus': unknown; choose one of {shown}"
    assert (tmp_path / "error.txt").is_file()  # the failed run's folder says why


@pytest.mark.parametrize("key", NON_NEGATIVE)
@pytest.mark.parametrize("value", ["-1", "abc", "true"])
def test_a_negative_or_non_numeric_rate_is_one_line(key, value, tmp_path, capsys) -> None:
    err = run_task(tmp_path, [f"{key}={value}"], capsys)
    assert err.startswith(f"error: {key}=") and err.endswith(": expected a number >= 0"), err


@pytest.mark.parametrize("key", sorted(TASK_CHOICES))
def test_task_choices_are_one_line(key, tmp_path, capsys) -> None:
    reach = ["data=conll_agnews_sts"] if "sts" in TASK_CHOICES[key] else []
    err = run_task(tmp_path, [*reach, TASK_CHOICES[key]], capsys)
    assert err.startswith(f"error: {TASK_CHOICES[key].split('=')[0]}='bogus': no such ")


@pytest.mark.parametrize("key", sorted(LIGHTNING_CHOICES))
def test_a_value_lightning_rejects_is_one_line(key, tmp_path, capsys) -> None:
    err = run_task(tmp_path, [LIGHTNING_CHOICES[key]], capsys)
    assert key.rsplit(".", 1)[1] in err  # Lightning's message names the argument
    if not key.endswith("monitor"):
        assert err.startswith(f"error: {key.rsplit('.', 1)[0]}: ")


@pytest.mark.parametrize("override, expected", [
    ("+model.optimizer.lr_hed=1e-3", "error: model.optimizer.lr_hed: no such setting; model.optimizer has lr_head"),
    ("+model.loss.ner_wieght=2", "error: model.loss.ner_wieght: no such setting; model.loss has grad_on"),
    ("+weighting.temp=1", "error: weighting.temp: no such setting; weighting=fixed takes no setting"),
    ("+data.batchsize=4", "error: data.batchsize: no such setting; data has max_length, batch_size"),
    ("+tasks.ner.wieght=2", "error: tasks.ner.wieght: no such setting for a token_classification task"),
    ("+trainer.max_epoch=3", "error: trainer: "),
])
def test_added_keys_nobody_reads_are_one_line(override, expected, tmp_path, capsys) -> None:
    assert run_task(tmp_path, [override], capsys).startswith(expected)


@pytest.mark.parametrize("overrides, expected, before_data", [
    (["weighting=dwa", "+weighting.temp=1"],
     "error: weighting.temp: no such setting; weighting=dwa takes temperature", True),
    (["weighting=nash_mtl", "~weighting.update_every"],
     "error: weighting.update_every: missing; weighting=nash_mtl takes max_norm, update_every, optim_iters",
     True),
    (["weighting=pcgrad", "+weighting.grad_on=parameters"],
     "error: weighting.grad_on: no such setting (it is model.loss.grad_on); weighting=pcgrad takes seed",
     True),
    (["+weighting.cagrad.c=1"], "error: weighting.cagrad: no such setting; weighting=fixed takes no setting",
     True),
    (["weighting=famo", "weighting.lr=0"], "error: weighting.lr=0: expected a number > 0", False),
])
def test_a_weighting_setting_nobody_takes_or_a_missing_one_is_one_line(
    overrides, expected, before_data, tmp_path, capsys, monkeypatch
) -> None:
    """The `weighting` node's keys are the method's keyword-only arguments, checked before the
    run reads any data (`check_settings`); their values are checked when the method is built."""
    import mtst.training.entry as entry

    if before_data:
        monkeypatch.setattr(entry, "build_datamodule", lambda *a: pytest.fail("data read"))
    assert run_task(tmp_path, overrides, capsys) == expected


def test_the_command_line_gets_one_line_and_exit_2(tmp_path) -> None:
    for script, args, expected in [
        ("train.py", ["experiment=quickstart", "weighting=bogus"],
         "error: weighting=bogus: no such option; choose one of cagrad, dwa, famo, fixed, gradnorm, "),
        ("train.py", ["backbone=bogus"], "error: backbone=bogus: no such option; choose one of "),
        ("evaluate.py", ["data=bogus"], "error: data=bogus: no such option; choose one of "),
    ]:
        result = run_cli(script, [*args, f"paths.log_dir={tmp_path}"], timeout=120)
        assert result.returncode == 2, result.stderr[-2000:]
        err = result.stderr.strip()
        assert len(err.splitlines()) == 1 and err.startswith(expected), err
