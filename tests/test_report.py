"""`mtst report` over any multirun or Optuna sweep: rows labelled by the overrides that vary,
every logged metric, failed jobs with their error, sorted by the optimized metric, no warnings."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mtst.cli import main as cli
from mtst.reports.chart import LABEL_WIDTH, chart_figure
from mtst.reports.sweep import collect_sweep
from tests.reliability.helpers import CLI_TINY, run_cli

pytestmark = pytest.mark.filterwarnings("error")  # the report (chart included) warns about nothing

LR, BATCH = "model.optimizer.lr_head", "data.batch_size"


@pytest.fixture(autouse=True)
def only_report(monkeypatch) -> None:
    """The dispatcher imports every command's module; this file exercises `report` alone."""
    monkeypatch.setattr(cli, "COMMANDS", {"report": cli.COMMANDS["report"]})


def write_job(folder: Path, overrides: list[str], payload: dict | None) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if payload is not None:
        (folder / "metrics.json").write_text(json.dumps(payload))


def finished(score: float, **extra: float) -> dict:
    metrics = {"val/score": score, "val/topic/f1": score + 0.1, "val/ner/f1": score - 0.1,
               "val/loss": 2.0 - score, "test/score": score - 0.05} | extra
    return {"metrics": metrics, "trainable_params": 1234567, "train_seconds": 12.345}


def report(folder: Path, *args: str) -> tuple[list[dict[str, str]], str]:
    assert cli.main(["report", str(folder), *args]) == 0
    rows = list(csv.DictReader((folder / "report.csv").read_text().splitlines()))
    return rows, (folder / "report.md").read_text()


def test_rows_are_labelled_by_the_overrides_that_vary_and_sorted_best_first(tmp_path) -> None:
    scores = {(lr, b): 0.3 + 0.1 * i for i, (lr, b) in
              enumerate((lr, b) for lr in ("0.001", "0.003") for b in ("8", "16"))}
    for job, ((lr, b), score) in enumerate(scores.items()):
        write_job(tmp_path / str(job), ["experiment=quickstart", f"{LR}={lr}", f"+{BATCH}={b}",
                                        "trainer.max_epochs=1"], finished(score))
    rows, markdown = report(tmp_path)
    columns = list(rows[0])
    assert columns[:3] == ["job", LR, BATCH]  # the varying keys, nothing constant
    assert "experiment" not in columns and "trainer.max_epochs" not in columns
    assert columns[3] == "val/score"  # the sort key first, then every other logged metric
    assert set(columns[4:]) == {"val/topic/f1", "val/ner/f1", "val/loss", "test/score",
                                "train_seconds", "trainable_params", "best", "run_dir"}
    assert [r["job"] for r in rows] == ["3", "2", "1", "0"]  # val/score, higher first
    assert [(r[LR], r[BATCH]) for r in rows][0] == ("0.003", "16")
    assert [r["best"] for r in rows] == ["1", "0", "0", "0"]
    assert float(rows[0]["val/score"]) == pytest.approx(0.6)
    assert "Same in every job: `experiment=quickstart` `trainer.max_epochs=1`." in markdown
    assert "Sorted by val/score (higher is better); best: job 3." in markdown
    assert "| 3 (best) | 0.003 | 16 | 0.6000 |" in markdown
    assert "| 1,234,567 |" in markdown and "| 12.3 |" in markdown
    assert markdown.count("\n|") == 6  # header, rule, four jobs
    png = (tmp_path / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_failed_and_unfinished_jobs_are_rows_with_their_error(tmp_path, capsys) -> None:
    write_job(tmp_path / "0", [f"{BATCH}=-1"], {"error": "data.batch_size=-1: must be >= 1 | x",
                                                 "metrics": {}})
    write_job(tmp_path / "1", [f"{BATCH}=8"], finished(0.4))
    write_job(tmp_path / "2", [f"{BATCH}=16"], None)  # still running, or killed
    rows, markdown = report(tmp_path)
    assert [r["job"] for r in rows] == ["1", "0", "2"]  # jobs without the metric last
    assert rows[1]["error"] == "data.batch_size=-1: must be >= 1 | x"
    assert rows[2]["error"].startswith("unfinished: no metrics.json")
    assert rows[0]["error"] == "" and rows[1]["val/score"] == ""
    assert "| 0 | -1 |" in markdown and "must be >= 1 \\| x |" in markdown  # escaped pipe
    assert "unfinished: no metrics.json" in capsys.readouterr().out


def test_the_sweeps_direction_and_metric_choose_the_order(tmp_path, capsys) -> None:
    for job, score in enumerate((0.5, 0.7, 0.6)):
        write_job(tmp_path / str(job), [f"seed={job}"], finished(score))
    (tmp_path / "multirun.yaml").write_text(
        "optimized_metric: val/loss\nhydra:\n  sweeper:\n    direction: minimize\n")
    rows, markdown = report(tmp_path)
    assert [r["job"] for r in rows] == ["1", "2", "0"]  # lowest val/loss first
    assert "Sorted by val/loss (lower is better); best: job 1." in markdown
    rows, _ = report(tmp_path, "--metric", "val/ner/f1")
    assert [r["job"] for r in rows] == ["1", "2", "0"] and list(rows[0])[2] == "val/ner/f1"
    rows, _ = report(tmp_path, "--metric", "train_seconds")
    assert [r["job"] for r in rows] == ["0", "1", "2"]  # ties keep job order
    capsys.readouterr()
    assert cli.main(["report", str(tmp_path), "--metric", "val/nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--metric 'val/nope'" in err[0] and "val/ner/f1" in err[0]


def test_freezing_sweep_has_a_freeze_column_and_probe_figures(tmp_path) -> None:
    write_job(tmp_path / "0", ["freeze=none"], finished(0.5))
    write_job(tmp_path / "1", ["freeze=all"], {
        "metrics": {"val/score": 0.01, "probe/val/score": 0.45, "probe/val/topic/f1": 0.5},
        "trainable_params": 0, "train_seconds": 2.0})
    rows, markdown = report(tmp_path)
    assert [(r["job"], r["freeze"]) for r in rows] == [("0", "none"), ("1", "all")]
    assert float(rows[1]["val/score"]) == 0.45 and float(rows[1]["val/topic/f1"]) == 0.5
    assert rows[1]["trainable_params"] == "0"
    assert "Job 1: `freeze=all` trains nothing" in markdown


def test_every_task_of_every_job_gets_columns_and_a_bar(tmp_path) -> None:
    """Jobs with other task sets (a third task, a similarity task, one task removed): each
    task's metrics are columns, grouped per split and task, and the chart has a bar per task."""
    import matplotlib.pyplot as plt

    three = {"test/topic/acc": 0.8, "test/topic/f1": 0.7, "test/ner/precision": 0.6,
             "test/ner/recall": 0.5, "test/ner/f1": 0.55, "test/mood/f1": 0.4,
             "test/sts/spearman": 0.3, "test/sts/pearson": 0.35, "test/loss": 1.0}
    write_job(tmp_path / "0", ["+tasks.mood.type=sentence_classification"], finished(0.5, **three))
    write_job(tmp_path / "1", ["~tasks.topic"], finished(0.6, **{"test/ner/f1": 0.65}))
    rows, markdown = report(tmp_path, "--metric", "test/score")
    columns = [c for c in rows[0] if c.startswith("test/")]
    assert columns == ["test/score", "test/mood/f1", "test/ner/precision", "test/ner/recall",
                       "test/ner/f1", "test/sts/spearman", "test/sts/pearson", "test/topic/acc",
                       "test/topic/f1", "test/loss"]  # sort key first; per task, then the run's
    assert [r["job"] for r in rows] == ["1", "0"]
    assert rows[0]["test/topic/f1"] == "" and float(rows[1]["test/sts/spearman"]) == 0.3
    assert "| test/mood/f1 | test/ner/precision | test/ner/recall | test/ner/f1 |" in markdown
    fig = chart_figure(collect_sweep(tmp_path), "test")
    _, legend = fig.axes[0].get_legend_handles_labels()
    assert legend == ["test/mood/f1", "test/ner/f1", "test/sts/spearman", "test/topic/f1",
                      "test/score"]
    plt.close(fig)


def test_long_labels_and_many_jobs_make_a_chart_without_warnings(tmp_path) -> None:
    import matplotlib.pyplot as plt

    long = "[" + ",".join(f"/data/corpus/part-{i:04d}/very_long_file_name.jsonl" for i in range(4))
    for job in range(24):
        write_job(tmp_path / str(job), [f"data.train_files={long}{job}]",
                                        f"model.optimizer.lr_backbone={1e-5 * (job + 1):.17f}",
                                        f"backbone.pooling={'weighted_mean' if job % 2 else 'max'}"],
                  finished(job / 30))
    rows, markdown = report(tmp_path)
    png = (tmp_path / "report.png").read_bytes()
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert len(rows) == 24 and len(png) > 20000
    assert width < 1600 and height > 24 * 60  # labels wrapped, a row of bars tall enough per job
    fig = chart_figure(collect_sweep(tmp_path), "test")
    fig.canvas.draw()
    for ax in fig.axes:  # the bars keep their room however long the labels
        assert ax.get_window_extent().width >= 2 * fig.dpi
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0].startswith("job 23 (best)\n") and "backbone.pooling=weighted_mean" in labels[0]
    assert max(len(line) for label in labels for line in label.splitlines()) <= LABEL_WIDTH
    plt.close(fig)
    assert "| 0.00024 |" in markdown  # Optuna-like floats shortened in the table, exact in CSV
    assert rows[0]["model.optimizer.lr_backbone"] == f"{1e-5 * 24:.17f}"


def test_report_errors_are_one_line_and_write_nothing(tmp_path, capsys) -> None:
    assert cli.main(["report", str(tmp_path / "missing")]) == 2
    write_job(tmp_path / "0", ["seed=1"], None)
    assert cli.main(["report", str(tmp_path)]) == 2
    (tmp_path / "1" / ".hydra").mkdir(parents=True)
    (tmp_path / "1" / "metrics.json").write_text("{not json")
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "no job has ended yet" in err[1] and "1/metrics.json" in err[2]
    assert not list(tmp_path.glob("report.*")) and not list(tmp_path.glob(".report*"))


QUICK = [a for a in CLI_TINY if not a.startswith("data.batch_size")] + [
    "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1"]


@pytest.mark.slow
def test_report_on_a_real_two_by_two_multirun(tmp_path, capsys) -> None:
    logs = tmp_path / "logs"
    result = run_cli("train.py", ["-m", *QUICK, f"paths.log_dir={logs}", f"{LR}=1e-3,3e-2",
                                  f"{BATCH}=4,8"])
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (logs / "multiruns").iterdir()
    rows, markdown = report(sweep)
    assert len(rows) == 4 and sorted(r["job"] for r in rows) == ["0", "1", "2", "3"]
    assert list(rows[0])[1:3] == [LR, BATCH] and list(rows[0])[3] == "val/score"
    assert {(r[LR], r[BATCH]) for r in rows} == {(lr, b) for lr in ("0.001", "0.03")
                                                 for b in ("4", "8")}
    scores = [float(r["val/score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and rows[0]["best"] == "1"
    for row in rows:
        assert {"val/topic/f1", "val/ner/f1", "test/score"} <= row.keys() and not row.get("error")
        assert float(row["train_seconds"]) > 0 and int(row["trainable_params"]) > 0
    assert "Same in every job: `backbone=gpt_neo_tiny`" in markdown
    assert "paths.log_dir" not in list(rows[0])
    assert "| val/score |" in capsys.readouterr().out
