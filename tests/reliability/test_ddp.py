"""DDP through Lightning's launcher under Hydra: one run folder written by rank 0 only, NER
counts gathered across ranks before scoring, single-task batches without unused-parameter
errors, frozen/cached encoders, and back-to-back DDP jobs in one multirun."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from mtst.inference.loading import load_checkpoint_network
from mtst.training import distributed
from mtst.training.distributed import HydraDDPStrategy, any_rank, child_command, ddp_job_scope
from mtst.training.module import MultiTaskModule
from tests.conftest import compose_config, make_datamodule, sample_tasks
from tests.reliability.helpers import (
    CLI_TINY,
    MOOD_TASK,
    ForceTag,
    interleaved_partial,
    metrics_of,
    only_task,
    run_cli,
    run_folders,
    sample_records,
    task_files,
    write_jsonl,
)

RUN_FILES = {".hydra", "checkpoints", "tensorboard", "metrics.json", "ner_report.txt",
             "ner_report.png", "_hydra.log", "train.log"}


# every word predicted B-LOC at validation: F1 then depends on where the LOC entities are
FORCE_LOC = ["+callbacks.force._target_=tests.reliability.helpers.ForceTag", "+callbacks.force.tag=B-LOC"]


def loc_on_rank_zero(records: list[dict]) -> list[dict]:
    """Records with a LOC entity at even positions (rank 0's shard) as far as they go."""
    with_loc = [r for r in records if "B-LOC" in r["ner_tags"]]
    ordered = with_loc + [r for r in records if "B-LOC" not in r["ner_tags"]]
    evens, odds = ordered[: (len(records) + 1) // 2], ordered[(len(records) + 1) // 2 :]
    return [(evens if i % 2 == 0 else odds)[i // 2] for i in range(len(records))]


def validate_single_process(ckpt: Path, val_file: Path) -> dict[str, float]:
    """The checkpoint's topic, ner and mood tasks validated on `val_file` in this process."""
    net = load_checkpoint_network(ckpt)
    tasks = sample_tasks(train=[], val=[str(val_file)], test=[])
    tasks["mood"] = {**tasks["topic"], "labels": None}
    dm = make_datamodule(tasks, net.encoder.tokenizer, "validate", batch_size=8,
                         label_spaces=dict(net.label_spaces))
    model = MultiTaskModule(net, tasks)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[ForceTag("B-LOC")])
    trainer.validate(model, datamodule=dm, verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@pytest.mark.slow
def test_ddp_cpu_scores_equal_single_process_with_one_run_folder(tmp_path) -> None:
    train = sample_records("train", 160)
    topic_file = write_jsonl(tmp_path / "topic.jsonl", [only_task(r, "topic") for r in train[:80]])
    ner_file = write_jsonl(tmp_path / "ner.jsonl", [only_task(r, "ner") for r in train[80:]])
    # 97 records (odd: a padding sampler would duplicate one); rank 0 gets no topic (and no
    # mood) label at all
    val_records = interleaved_partial(loc_on_rank_zero(sample_records("val")))
    val_file = write_jsonl(tmp_path / "val.jsonl", val_records)
    log = tmp_path / "logs"
    result = run_cli("train.py", ["trainer=ddp_cpu", *CLI_TINY, "trainer.max_epochs=1",
                                  "trainer.limit_train_batches=4", f"paths.log_dir={log}",
                                  *task_files("topic", topic_file, val_file),
                                  *task_files("ner", ner_file, val_file), *MOOD_TASK,
                                  "data.sampling=round_robin",
                                  "model.optimizer.lr_head=0.05", *FORCE_LOC])
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = run_folders(log)  # children reused rank 0's folder
    assert {p.name for p in run.iterdir()} <= RUN_FILES
    assert not any(p.name.startswith("ddp_rank") for p in run.rglob("*"))
    ddp = metrics_of(run)
    ckpt = run / "checkpoints" / "last.ckpt"
    single = validate_single_process(ckpt, val_file)
    assert ddp["val/ner/f1"] > 0
    keys = [f"val/{task}/{m}" for task, metrics in (("ner", ("f1", "precision", "recall")),
                                                   ("topic", ("acc", "f1")), ("mood", ("acc", "f1")))
            for m in metrics]
    for key in [*keys, "val/score"]:
        assert ddp[key] == pytest.approx(single[key], abs=1e-7), key
    # what each rank scores on its own shard (ShardedEvalSampler: examples r, r+2, ...): rank 0
    # holds most LOC entities, rank 1 few, so the mean of their F1s is far from the F1 of all
    # entities, which is what DDP reports
    per_rank = [validate_single_process(ckpt, write_jsonl(tmp_path / f"rank{r}.jsonl",
                                                          val_records[r::2]))["val/ner/f1"]
                for r in (0, 1)]
    assert per_rank[0] > 2 * per_rank[1] > 0
    assert abs((per_rank[0] + per_rank[1]) / 2 - ddp["val/ner/f1"]) > 1e-3, per_rank


@pytest.mark.slow
def test_ddp_jobs_back_to_back_in_a_multirun_with_frozen_and_gradual_encoders(tmp_path) -> None:
    log = tmp_path / "logs"
    result = run_cli("train.py", ["-m", "trainer=ddp_cpu", *CLI_TINY, "trainer.max_epochs=2",
                                  "trainer.limit_train_batches=2", "trainer.limit_val_batches=2",
                                  "trainer.limit_test_batches=1", f"paths.log_dir={log}",
                                  "freeze=backbone,gradual"], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (log / "runs").exists()  # no child created a run folder of its own
    (sweep,) = (log / "multiruns").iterdir()
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    for job in jobs:
        assert "val/score" in metrics_of(sweep / job)
        assert (sweep / job / ".hydra" / "config.yaml").is_file()
    assert "find_unused_parameters=True" in result.stdout + result.stderr


def test_child_ranks_run_this_job_once_in_rank_zeros_folder(tmp_path) -> None:
    compose_config(tmp_path, ["trainer=ddp_cpu", "ckpt_path=last", "data.batch_size=8"])
    command, cwd = child_command(1)
    assert "hydra.mode=RUN" in command and "hydra.output_subdir=null" in command
    assert f"hydra.run.dir='{tmp_path}'" in command
    assert f"ckpt_path='{tmp_path / 'checkpoints' / 'last.ckpt'}'" in command  # resolved once
    overrides = command[command.index("trainer=ddp_cpu"):]  # after the interpreter and script
    assert "ckpt_path=last" not in overrides
    assert "-m" not in overrides and "--multirun" not in overrides
    assert "data.batch_size=8" in overrides


def test_ddp_job_scope_restores_the_launcher_environment(monkeypatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with ddp_job_scope():
        os.environ["LOCAL_RANK"], os.environ["MASTER_PORT"] = "0", "12345"
    assert "LOCAL_RANK" not in os.environ and "MASTER_PORT" not in os.environ
    assert any_rank([True, False]) == [True, False]  # no process group: the flags themselves


class Frozen(BoringModel):
    freezer = SimpleNamespace(name="backbone")


class Unfrozen(BoringModel):
    freezer = SimpleNamespace(name="none")


class RecordedDDP:
    """Stands in for DistributedDataParallel: what the strategy built it from."""

    def __init__(self, module: Any, **kwargs: Any) -> None:
        self.module, self.kwargs, self.hooks = module, kwargs, []

    def register_comm_hook(self, state: Any, hook: Any) -> None:
        self.hooks.append((state, hook))


def wrapped(monkeypatch, module: L.LightningModule, **strategy_kwargs: Any) -> RecordedDDP:
    monkeypatch.setattr(distributed, "DistributedDataParallel", RecordedDDP)
    strategy = HydraDDPStrategy(parallel_devices=[torch.device("cpu")], **strategy_kwargs)
    strategy.connect(module)
    strategy.configure_ddp()
    assert isinstance(strategy.model, RecordedDDP) and strategy.model.module is module
    return strategy.model


def test_ddp_wraps_with_find_unused_parameters_exactly_when_a_freeze_strategy_is_active(
        monkeypatch, caplog) -> None:
    with caplog.at_level("INFO", logger="mtst"):
        frozen = wrapped(monkeypatch, Frozen(), find_unused_parameters=False)  # conf/trainer/ddp.yaml
    assert frozen.kwargs == {"device_ids": None, "broadcast_buffers": False,
                             "find_unused_parameters": True}
    assert "freeze=backbone under DDP: using find_unused_parameters=True" in caplog.text
    assert wrapped(monkeypatch, Unfrozen(), find_unused_parameters=False).kwargs == {
        "device_ids": None, "broadcast_buffers": False, "find_unused_parameters": False}
    # the other DistributedDataParallel arguments pass through; one given explicitly is kept
    given = wrapped(monkeypatch, BoringModel(), broadcast_buffers=True, find_unused_parameters=True,
                    gradient_as_bucket_view=True, process_group_backend="gloo").kwargs
    assert given == {"device_ids": None, "broadcast_buffers": True, "find_unused_parameters": True,
                     "gradient_as_bucket_view": True}


def test_ddp_registers_a_communication_hook_on_cuda_only(monkeypatch) -> None:
    def hook(state: Any, bucket: Any) -> None: ...

    def wrapper(inner: Any) -> Any:
        return ("wrapped", inner)

    assert wrapped(monkeypatch, Frozen(), ddp_comm_hook=hook).hooks == []  # the CPU: gloo
    monkeypatch.setattr(HydraDDPStrategy, "determine_ddp_device_ids", lambda self: None)
    monkeypatch.setattr(distributed, "DistributedDataParallel", RecordedDDP)
    strategy = HydraDDPStrategy(parallel_devices=[torch.device("cuda", 0)], ddp_comm_state="state",
                                ddp_comm_hook=hook, ddp_comm_wrapper=wrapper)
    strategy.connect(Frozen())
    strategy.configure_ddp()
    assert strategy.model.hooks == [("state", ("wrapped", hook))]
