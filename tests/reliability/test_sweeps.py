"""Sweeps: distinct job folders, the Optuna search space, and failed jobs that are recorded
while the sweep goes on."""

from __future__ import annotations

import csv
import json
import textwrap

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import open_dict, read_write

from mtst.cli import main as cli
from mtst.cli._hydra import report_user_errors
from mtst.errors import DataError
from tests.conftest import compose_config
from tests.reliability.helpers import CLI_TINY, run_cli

QUICK = CLI_TINY + ["trainer.max_epochs=1", "trainer.limit_train_batches=2",
                    "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]


def test_optuna_search_space_covers_lr_loss_weights_pooling_and_freezing(tmp_path) -> None:
    cfg = compose_config(tmp_path, ["hparams_search=optuna"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert cfg.optimized_metric == "val/score"
    # a loss weight for every configured task
    assert set(sweeper.params) == {
        "model.optimizer.lr_head", "model.optimizer.lr_backbone", "backbone.pooling", "freeze",
        *(f"tasks.{task}.weight" for task in cfg.tasks)}
    assert "weighted_mean" in sweeper.params["backbone.pooling"]
    assert "gradual" in sweeper.params["freeze"]
    assert sweeper.max_failure_rate == 1.0 and cfg.sweep.failed_score is None


def _as_sweep_job(tmp_path, failed_score):
    cfg = compose_config(tmp_path, [f"sweep.failed_score={failed_score}"])
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.job.num = 3
    HydraConfig().set_config(cfg)
    return cfg


def test_a_failed_sweep_job_leaves_a_marker_and_returns_the_failed_score(tmp_path, capsys) -> None:
    cfg = _as_sweep_job(tmp_path, "-.inf")

    @report_user_errors
    def job(cfg):
        raise DataError("train.jsonl", "line 7", "bad tag 'B-XYZ'")

    assert job(cfg) == float("-inf")
    marker = json.loads((tmp_path / "metrics.json").read_text())
    assert marker == {"error": "train.jsonl:line 7: bad tag 'B-XYZ'", "metrics": {}}
    assert "bad tag" in (tmp_path / "error.txt").read_text()
    assert "error: job 3 failed: train.jsonl:line 7" in capsys.readouterr().err


def test_with_failed_score_null_the_job_raises_a_plain_error_for_optuna(tmp_path) -> None:
    cfg = _as_sweep_job(tmp_path, "null")

    @report_user_errors
    def job(cfg):
        raise ZeroDivisionError("boom")

    with pytest.raises(RuntimeError, match="job 3 failed: ZeroDivisionError: boom"):
        job(cfg)
    assert "Traceback" in (tmp_path / "error.txt").read_text()  # a bug keeps its traceback


@pytest.mark.slow
@pytest.mark.filterwarnings("error")  # the report warns about nothing
def test_basic_multirun_records_a_failed_job_and_finishes_the_others(tmp_path, monkeypatch,
                                                                     capsys) -> None:
    result = run_cli("train.py", ["-m", *QUICK, f"paths.log_dir={tmp_path}", "data.batch_size=-1,8"])
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "multiruns").iterdir()
    failed, ok = sweep / "0", sweep / "1"
    error = json.loads((failed / "metrics.json").read_text())["error"]
    assert "data.batch_size=-1" in error
    assert (failed / "error.txt").is_file() and not (failed / "checkpoints").exists()
    assert "val/score" in json.loads((ok / "metrics.json").read_text())["metrics"]
    assert "error: job 0 failed:" in result.stderr

    monkeypatch.setattr(cli, "COMMANDS", {"report": cli.COMMANDS["report"]})
    assert cli.main(["report", str(sweep)]) == 0
    rows = list(csv.DictReader((sweep / "report.csv").read_text().splitlines()))
    assert [(r["job"], r["data.batch_size"], r["best"]) for r in rows] == [("1", "8", "1"),
                                                                           ("0", "-1", "0")]
    assert rows[1]["error"] == error and rows[1]["val/score"] == "" and not rows[0]["error"]
    assert "| 0 | -1 |" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.filterwarnings("error")  # the report warns about nothing
def test_optuna_study_goes_on_after_a_failed_trial(tmp_path, monkeypatch, capsys) -> None:
    conf = tmp_path / "conf" / "hparams_search"
    conf.mkdir(parents=True)
    (conf / "optuna_probe.yaml").write_text(textwrap.dedent("""\
        # @package _global_
        defaults:
          - optuna
        hydra:
          sweeper:
            n_trials: 3
            params:
              model.optimizer.lr_head: choice(0.003)
              model.optimizer.lr_backbone: choice(0.001)
              tasks.topic.weight: choice(1.0)
              tasks.ner.weight: choice(1.0)
              backbone.pooling: choice(mean)
              freeze: choice(none)
              data.batch_size: choice(-1, 8)
        """))
    log = tmp_path / "logs"
    quick = [a for a in QUICK if not a.startswith("data.batch_size")]  # else fixed, not searched
    result = run_cli("train.py", [f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
                                  "hparams_search=optuna_probe", *quick, f"paths.log_dir={log}"])
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (log / "multiruns").iterdir()
    markers = [json.loads((sweep / str(i) / "metrics.json").read_text()) for i in range(3)]
    assert any("error" in m for m in markers), markers  # seed 1234 draws batch_size=-1 once
    assert any("val/score" in m.get("metrics", {}) for m in markers)
    assert "best_value" in (sweep / "optimization_results.yaml").read_text()

    monkeypatch.setattr(cli, "COMMANDS", {"report": cli.COMMANDS["report"]})
    assert cli.main(["report", str(sweep)]) == 0
    rows = list(csv.DictReader((sweep / "report.csv").read_text().splitlines()))
    assert len(rows) == 3 and list(rows[0])[:3] == ["job", "data.batch_size", "val/score"]
    assert [(r["data.batch_size"], bool(r["error"])) for r in rows] == [("8", False), ("8", False),
                                                                         ("-1", True)]
    assert rows[0]["best"] == "1" and float(rows[0]["val/score"]) >= float(rows[1]["val/score"])
    out = capsys.readouterr().out
    assert "Sorted by val/score (higher is better)" in out and "`freeze=none`" in out


@pytest.mark.slow
def test_a_submitit_local_sweep_runs_each_job_in_its_own_process_and_reports(tmp_path) -> None:
    """Hydra's submitit launcher with the local executor: the job pickling, folders and result
    collection of `hydra/launcher=slurm`, without a scheduler."""
    result = run_cli("train.py", ["-m", "hydra/launcher=submitit_local", *QUICK,
                                  f"paths.log_dir={tmp_path}", "model.optimizer.lr_head=1e-3,3e-3"])
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (tmp_path / "multiruns").iterdir()
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2  # submitit ran both
    for job in ("0", "1"):
        assert "val/score" in json.loads((sweep / job / "metrics.json").read_text())["metrics"]
    assert cli.main(["report", str(sweep)]) == 0
    rows = list(csv.DictReader((sweep / "report.csv").read_text().splitlines()))
    assert sorted(r["model.optimizer.lr_head"] for r in rows) == ["0.001", "0.003"]
    assert all(r["val/score"] and not r.get("error") for r in rows)
