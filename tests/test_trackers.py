"""logger=mlflow and logger=wandb: a tiny run read back from each tracker's own store (MLflow's
SQLite database through its client, W&B's offline run file as `wandb sync` reads it), with the
metric names, hyper-parameters and best checkpoint TensorBoard gets."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mtst.config.runs import run_name
from mtst.training.entry import configured_tasks, train
from mtst.training.loggers import run_hparams
from tests.conftest import TINY_TRAIN, compose_config

FAST = TINY_TRAIN + [
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
]
HPARAMS = {"backbone": "package:mtst/assets/gpt_neo_tiny", "weighting": "fixed", "batch_size": 8}
METRICS = {"val/score", "val/topic/acc", "val/ner/f1", "train/loss", "test/score", "hp_metric"}


def test_mlflow_run_lands_in_the_sqlite_store(tmp_path) -> None:
    from mlflow.tracking import MlflowClient

    cfg = compose_config(tmp_path, FAST + ["logger=mlflow"])
    assert cfg.logger.mlflow.tracking_uri == f"sqlite:///{tmp_path}/logs/mlflow.db"
    metrics = train(cfg)
    client = MlflowClient(cfg.logger.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name("mtst")
    assert Path(experiment.artifact_location) == tmp_path / "logs" / "mlartifacts"
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == tmp_path.name
    assert set(run.data.metrics) >= METRICS, sorted(run.data.metrics)
    assert run.data.metrics["val/score"] == pytest.approx(metrics["val/score"])
    # the same dict as TensorBoard's HPARAMS (MLflow keeps params as strings)
    expected = run_hparams(cfg, configured_tasks(cfg))
    assert run.data.params == {k: str(v) for k, v in expected.items()}
    assert {k: run.data.params[k] for k in HPARAMS} == {k: str(v) for k, v in HPARAMS.items()}
    best = tmp_path / "checkpoints" / "best.ckpt"
    assert run.data.tags["best_checkpoint"] == str(best) and best.is_file()
    assert run.data.tags["run_dir"] == str(tmp_path)
    assert not list(tmp_path.rglob("mlruns")), "nothing in MLflow's default ./mlruns"


# W&B's offline run file (`run-<id>.wandb`): LevelDB's log format, 32 KiB blocks of records
# (CRC, length, type: full/first/middle/last) holding wandb's `Record` protobufs
BLOCK, HEADER, CHUNK = 32768, 7, 7


def wandb_records(path: Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:HEADER]
    pos, pieces = HEADER, b""
    while pos + CHUNK <= len(data):
        if BLOCK - pos % BLOCK < CHUNK:  # a block's tail too short for a chunk is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK])
        pieces += data[pos + CHUNK : pos + CHUNK + length]
        pos += CHUNK + length
        if kind in (1, 4):  # full, last
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            pieces = b""
            yield record


def item_key(item: Any) -> str:
    """A config, summary or history item's key: `key`, or `nested_key`'s parts (history)."""
    return item.key or "/".join(item.nested_key)


def read_wandb_run(run_file: Path) -> dict[str, Any]:
    """The run's name, config, summary, every metric key in its history, and its exit code."""
    out: dict[str, Any] = {"config": {}, "summary": {}, "history": set(), "exit": None}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["name"] = record.run.display_name
        elif kind == "config":
            out["config"].update({item_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            out["summary"].update(
                {item_key(i): json.loads(i.value_json) for i in record.summary.update}
            )
        elif kind == "history":
            out["history"] |= {item_key(i) for i in record.history.item}
        elif kind == "exit":
            out["exit"] = record.exit.exit_code
    return out


def finished_wandb_run(run_file: Path, seconds: float = 60.0) -> dict[str, Any]:
    """`read_wandb_run` once the run's exit record is on disk: wandb's service process writes
    the offline file on its own, and `finish()` can return before its writer has flushed the
    last records (seen on a loaded machine)."""
    deadline = time.monotonic() + seconds
    run = read_wandb_run(run_file)
    while run["exit"] is None and time.monotonic() < deadline:
        time.sleep(0.2)
        run = read_wandb_run(run_file)
    return run


@pytest.fixture
def wandb_sandbox(tmp_path, monkeypatch) -> None:
    """No account, no user settings, no cache outside tmp_path, and WANDB_MODE unset: the
    config alone must make the run offline. Should it ever go online, it only reaches a
    closed port on this machine."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT", "WANDB_DIR", "WANDB_SILENT",
                 "WANDB_DISABLE_WEAVE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home" / name.lower()))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")


def test_wandb_run_is_written_offline_under_the_run_folder(tmp_path, wandb_sandbox, capfd) -> None:
    # with these imported (as in a process that also serves or calls an API), wandb.init
    # advertises its LLM tracer on stderr unless told not to
    import huggingface_hub.inference._client  # noqa: F401
    import openai  # noqa: F401

    cfg = compose_config(tmp_path, FAST + ["logger=wandb"])
    metrics = train(cfg)
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    run = finished_wandb_run(run_file)
    assert run["exit"] == 0 and run["name"] == tmp_path.name
    assert run["history"] >= METRICS, sorted(run["history"])
    assert run["summary"]["val/score"] == pytest.approx(metrics["val/score"])
    assert run["config"] == run_hparams(cfg, configured_tasks(cfg))
    assert {k: run["config"][k] for k in HPARAMS} == HPARAMS
    best = tmp_path / "checkpoints" / "best.ckpt"
    assert run["summary"]["best_checkpoint"] == str(best) and best.is_file()
    # silent: none of wandb's own lines (they start `wandb:`) on the console
    captured = capfd.readouterr()
    assert "wandb:" not in captured.err + captured.out, captured.err[-2000:]


def test_a_wandb_setting_it_rejects_is_one_line(tmp_path, wandb_sandbox) -> None:
    from mtst.errors import MtstError
    from mtst.training.entry import build_trainer

    cfg = compose_config(tmp_path, FAST + ["logger=wandb", "logger.wandb.settings.console=bogus"])
    with pytest.raises(MtstError) as caught:
        build_trainer(cfg)
    message = str(caught.value)
    assert message.startswith("logger.wandb: settings.console='bogus': Input should be 'auto'")
    assert "\n" not in message


@pytest.mark.parametrize(
    "output_dir, expected",
    [
        ("logs/runs/2026-01-02_03-04-05_abc123", "2026-01-02_03-04-05_abc123"),
        ("logs/multiruns/2026-01-02_03-04-05_abc123/3", "multiruns/2026-01-02_03-04-05_abc123/3"),
        ("elsewhere/run", "run"),
    ],
)
def test_trackers_name_a_run_after_its_folder(tmp_path, output_dir, expected) -> None:
    assert run_name(str(tmp_path / output_dir), str(tmp_path / "logs")) == expected


def test_every_tracker_gets_tensorboards_metric_names(tmp_path, wandb_sandbox) -> None:
    """One run into all three (several options of the group: `logger=[tensorboard,mlflow,wandb]`,
    accepted by the command-line check too): the same scalar names in each."""
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mtst.cli._hydra import CONF_DIR
    from mtst.config.overrides import check_command_line

    chosen = "logger=[tensorboard,mlflow,wandb]"
    check_command_line([chosen], CONF_DIR, "train")
    cfg = compose_config(tmp_path, FAST + [chosen])
    train(cfg)
    (events,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
    board = EventAccumulator(str(events), size_guidance={"scalars": 0})
    board.Reload()
    names = set(board.Tags()["scalars"])
    assert names >= METRICS
    client = MlflowClient(cfg.logger.mlflow.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("mtst").experiment_id])
    assert set(run.data.metrics) == names
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    wandb_own = {"_step", "_runtime", "_timestamp", "trainer/global_step"}
    assert finished_wandb_run(run_file)["history"] - wandb_own == names
