"""`freeze=all` (linear probes on the frozen encoder) and `mtst report` over a real freezing
sweep (tests/test_report.py covers the report itself)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mtst.cli import main as cli
from mtst.training.entry import train
from mtst.training.probe_run import probe_train
from tests.conftest import TINY_TRAIN, compose_config, freeze_config
from tests.test_freezing import (
    make_datamodule,
    make_model,
    make_trainer,
    snapshot,
)

ROOT = Path(__file__).resolve().parents[1]
METRICS = {"topic": ("acc", "f1"), "mood": ("acc", "f1"), "ner": ("precision", "recall", "f1")}


def probe_keys(tasks: tuple[str, ...]) -> set[str]:
    """Every probe metric of every task, and the score, on val and test."""
    return {f"probe/{s}/{key}" for s in ("val", "test")
            for key in ["score", *(f"{t}/{m}" for t in tasks for m in METRICS[t])]}


def test_freeze_all_fits_probes_without_touching_the_network(tmp_path) -> None:
    dm = make_datamodule(train_stop=160)
    model = make_model(dm, freeze_config("all", probe={"max_iter": 200}))
    before = snapshot(model)
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "seed": 0, "run_test": True})
    metrics = probe_train(cfg, model, dm, make_trainer(1, limit_val_batches=2, limit_test_batches=2))
    keys = probe_keys(("topic", "ner", "mood"))
    assert metrics.keys() >= keys
    # the model as it is, evaluated
    assert {"val/topic/f1", "val/mood/f1", "test/ner/f1"} <= metrics.keys()
    for key in keys:
        assert 0.0 <= metrics[key] <= 1.0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["trainable_params"] == 0 and saved["freeze"] == "all"
    assert saved["metrics"] == pytest.approx(metrics)
    assert "micro avg" in (tmp_path / "probe_ner_report.txt").read_text()
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name


def test_train_with_freeze_all_goes_through_the_probe_branch(tmp_path) -> None:
    metrics = train(compose_config(tmp_path, TINY_TRAIN + ["freeze=all"]))
    assert metrics.keys() >= probe_keys(("topic", "ner"))
    assert not (tmp_path / "checkpoints").exists(), "no optimizer, no fit, no checkpoint"


@pytest.fixture
def only_report(monkeypatch) -> None:
    """The dispatcher imports every command's module; the report test needs `report` alone."""
    monkeypatch.setattr(cli, "COMMANDS", {"report": cli.COMMANDS["report"]})


@pytest.mark.slow
def test_report_on_a_real_freezing_multirun(tmp_path, only_report) -> None:
    logs = tmp_path / "logs"
    command = [sys.executable, "train.py", "-m", "freeze=none,backbone", "backbone=gpt_neo_tiny",
               "debug=limit", "trainer.max_epochs=2", "trainer.accelerator=cpu",
               "trainer.enable_progress_bar=false", "~callbacks.rich_progress_bar",
               "~callbacks.model_summary", "data.batch_size=8", f"paths.log_dir={logs}"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    (sweep,) = (logs / "multiruns").iterdir()
    assert cli.main(["report", str(sweep)]) == 0
    rows = list(csv.DictReader((sweep / "report.csv").read_text().splitlines()))
    assert list(rows[0])[:3] == ["job", "freeze", "val/score"]  # the one override that varies
    rows = {r["freeze"]: r for r in rows}
    assert rows.keys() == {"none", "backbone"}
    assert int(rows["backbone"]["trainable_params"]) < int(rows["none"]["trainable_params"])
    for row in rows.values():
        assert float(row["train_seconds"]) > 0 and 0 <= float(row["test/score"]) <= 1
    assert (sweep / "report.png").stat().st_size > 5000
