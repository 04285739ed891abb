"""`freeze=all` (linear probes on the frozen encoder) and `mtst report` over a multirun."""

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
from mtst.training.pipeline import train
from mtst.training.probes import probe_train
from tests.conftest import TINY_TRAIN, compose_config
from tests.test_freezing import (
    make_datamodule,
    make_model,
    make_trainer,
    snapshot,
)

ROOT = Path(__file__).resolve().parents[1]
PROBE_KEYS = {f"probe/{s}/{m}" for s in ("val", "test")
              for m in ("cls_acc", "cls_f1", "ner_precision", "ner_recall", "ner_f1", "score")}


def test_freeze_all_fits_probes_without_touching_the_network(tmp_path) -> None:
    dm = make_datamodule(train_stop=160)
    model = make_model(dm, {"name": "all", "probe": {"max_iter": 200}})
    before = snapshot(model)
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "seed": 0, "run_test": True})
    metrics = probe_train(cfg, model, dm, make_trainer(1, limit_val_batches=2, limit_test_batches=2))
    assert metrics.keys() >= PROBE_KEYS
    assert {"val/cls_f1", "test/ner_f1"} <= metrics.keys()  # the model as it is, evaluated
    for key in PROBE_KEYS:
        assert 0.0 <= metrics[key] <= 1.0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["trainable_params"] == 0 and saved["freeze"] == "all"
    assert saved["metrics"] == pytest.approx(metrics)
    assert "micro avg" in (tmp_path / "probe_ner_report.txt").read_text()
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name


def test_train_with_freeze_all_goes_through_the_probe_branch(tmp_path) -> None:
    metrics = train(compose_config(tmp_path, TINY_TRAIN + ["freeze=all"]))
    assert metrics.keys() >= PROBE_KEYS
    assert not (tmp_path / "checkpoints").exists(), "no optimizer, no fit, no checkpoint"


@pytest.fixture(autouse=True)
def only_report(monkeypatch) -> None:
    """The dispatcher imports every command's module; this file exercises `report` alone."""
    monkeypatch.setattr(cli, "COMMANDS", {"report": cli.COMMANDS["report"]})


def mtst_main(argv: list[str]) -> int:
    return cli.main(argv)


def write_run(folder: Path, strategy: str, metrics: dict[str, float] | None,
              params: int = 0, seconds: float = 0.0, extra: list[str] | None = None) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(f"freeze:\n  name: {strategy}\n")
    overrides = [f"freeze={strategy}", *(extra or [])]
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        payload = {"metrics": metrics, "best_checkpoint": None, "freeze": strategy,
                   "trainable_params": params, "train_seconds": seconds}
        (folder / "metrics.json").write_text(json.dumps(payload))


def fake_metrics(base: float, probe: bool = False) -> dict[str, float]:
    prefix = "probe/" if probe else ""
    return {f"{prefix}{s}/{m}": round(base + 0.01 * i + (0.1 if s == "test" else 0), 4)
            for s in ("val", "test") for i, m in enumerate(("cls_f1", "ner_f1", "score"))}


def test_report_writes_markdown_csv_and_chart(tmp_path, capsys) -> None:
    sweep = tmp_path / "multirun"
    write_run(sweep / "0", "none", fake_metrics(0.5), params=1234567, seconds=61.25)
    write_run(sweep / "1", "backbone", fake_metrics(0.3), params=845, seconds=9.5)
    write_run(sweep / "2", "all", fake_metrics(0.2, probe=True) | fake_metrics(0.01), seconds=3.0)
    write_run(sweep / "3", "gradual", None)  # still running / crashed
    assert mtst_main(["report", str(sweep)]) == 0
    rows = list(csv.DictReader((sweep / "report.csv").open()))
    assert [r["strategy"] for r in rows] == ["none", "backbone", "all (probe)"]
    assert rows[0]["trainable_params"] == "1234567" and float(rows[0]["train_seconds"]) == 61.25
    assert float(rows[1]["test_ner_f1"]) == fake_metrics(0.3)["test/ner_f1"]
    assert float(rows[2]["val_score"]) == fake_metrics(0.2, probe=True)["probe/val/score"]
    markdown = (sweep / "report.md").read_text()
    assert "| none | 1,234,567 | 61.2 |" in markdown
    assert "Unfinished jobs (no metrics.json): 3" in markdown
    assert markdown.count("\n|") == 5  # header, rule, three runs
    png = (sweep / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert "| backbone | 845 |" in capsys.readouterr().out


def test_report_tells_runs_of_one_strategy_apart_by_their_other_overrides(tmp_path) -> None:
    write_run(tmp_path / "0", "none", fake_metrics(0.4), extra=["seed=1"])
    write_run(tmp_path / "1", "none", fake_metrics(0.5), extra=["seed=2"])
    assert mtst_main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "report.csv").open()))
    assert [r["strategy"] for r in rows] == ["none [seed=1]", "none [seed=2]"]


def test_report_errors_are_one_line_and_write_nothing(tmp_path, capsys) -> None:
    assert mtst_main(["report", str(tmp_path / "missing")]) == 2
    write_run(tmp_path / "0", "none", None)
    assert mtst_main(["report", str(tmp_path)]) == 2
    (tmp_path / "1" / ".hydra").mkdir(parents=True)
    (tmp_path / "1" / "metrics.json").write_text("{not json")
    assert mtst_main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "no finished run" in err[1] and "1/metrics.json" in err[2]
    assert not list(tmp_path.glob("report.*")) and not list(tmp_path.glob(".report*"))


@pytest.mark.slow
def test_report_on_a_real_tiny_multirun(tmp_path) -> None:
    logs = tmp_path / "logs"
    command = [sys.executable, "train.py", "-m", "freeze=none,backbone", "backbone=gpt_neo_tiny",
               "debug=limit", "trainer.max_epochs=2", "trainer.accelerator=cpu",
               "trainer.enable_progress_bar=false", "~callbacks.rich_progress_bar",
               "~callbacks.model_summary", "data.batch_size=8", f"paths.log_dir={logs}"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    (sweep,) = (logs / "multiruns").iterdir()
    assert mtst_main(["report", str(sweep)]) == 0
    rows = {r["strategy"]: r for r in csv.DictReader((sweep / "report.csv").open())}
    assert rows.keys() == {"none", "backbone"}
    assert int(rows["backbone"]["trainable_params"]) < int(rows["none"]["trainable_params"])
    for row in rows.values():
        assert float(row["train_seconds"]) > 0 and 0 <= float(row["test_score"]) <= 1
    assert (sweep / "report.png").stat().st_size > 5000
