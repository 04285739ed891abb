"""Δm% in `mtst report` against single-task jobs, the `tasks_only` setting that makes them, and
the `hparams_search=weighting` preset that runs them beside every weighting method."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from hydra_plugins.mtst_sweepers.baselines import sweeper_jobs
from mtst.cli import main as cli
from mtst.errors import MtstError
from mtst.reports.delta_m import delta_m
from mtst.tasks import select_tasks
from mtst.training.entry import configured_tasks, drop_unselected_tasks
from tests.conftest import WEIGHTING_OPTIONS, compose_config

pytestmark = pytest.mark.filterwarnings("error")
TASKS = {"topic": {"type": "sentence_classification"},
         "ner": {"type": "token_classification"},
         "sts": {"type": "sentence_similarity", "main_metric": "loss"}}  # lower is better


@pytest.fixture(autouse=True)
def only_report(monkeypatch) -> None:
    monkeypatch.setattr(cli, "COMMANDS", {"report": cli.COMMANDS["report"]})


def write_job(folder: Path, overrides: list[str], tasks: dict, metrics: dict,
              tasks_only: object = None) -> None:
    """A job folder as a sweep leaves it: overrides, composed config, metrics.json."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {"tasks": tasks, "tasks_only": tasks_only, "seed": 42}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "metrics.json").write_text(json.dumps({"metrics": metrics}))


def report(folder: Path, *args: str) -> tuple[list[dict[str, str]], str]:
    assert cli.main(["report", str(folder), *args]) == 0
    rows = list(csv.DictReader((folder / "report.csv").read_text().splitlines()))
    return rows, (folder / "report.md").read_text()


def sweep_with_baselines(folder: Path) -> None:
    """Two seeds of topic alone, sts alone (its main metric a loss), and two multi-task jobs;
    ner has no single-task job. Val figures differ from test ones."""
    topic_only = ["tasks_only=topic", "weighting=fixed"]
    write_job(folder / "0", [*topic_only, "seed=1"], TASKS,
              {"test/topic/f1": 0.80, "val/topic/f1": 0.50}, tasks_only="topic")
    write_job(folder / "1", [*topic_only, "seed=2"], TASKS,
              {"test/topic/f1": 0.70, "val/topic/f1": 0.60}, tasks_only=["topic"])
    write_job(folder / "2", ["~tasks.topic", "~tasks.ner", "weighting=fixed", "seed=1"],
              {"sts": TASKS["sts"]}, {"test/sts/loss": 2.0, "val/sts/loss": 4.0})
    write_job(folder / "3", ["weighting=fixed", "seed=1"], TASKS,
              {"test/topic/f1": 0.78, "test/ner/f1": 0.6, "test/sts/loss": 1.5,
               "val/topic/f1": 0.55, "val/ner/f1": 0.5, "val/sts/loss": 5.0})
    write_job(folder / "4", ["tasks_only=[topic,sts]", "weighting=uncertainty",
                             "seed=2"], TASKS,
              {"test/topic/f1": 0.72, "test/sts/loss": 2.5, "val/topic/f1": 0.66,
               "val/sts/loss": 3.0}, tasks_only=["topic", "sts"])


def test_delta_m_is_the_mean_signed_relative_change_against_averaged_baselines(tmp_path) -> None:
    sweep_with_baselines(tmp_path)
    rows, markdown = report(tmp_path, "--metric", "delta_m")
    by_job = {r["job"]: r for r in rows}
    topic = (0.80 + 0.70) / 2  # two seeds averaged
    job3 = ((0.78 - topic) / topic - (1.5 - 2.0) / 2.0) / 2 * 100  # ner: no baseline, left out
    job4 = ((0.72 - topic) / topic - (2.5 - 2.0) / 2.0) / 2 * 100
    assert float(by_job["3"]["delta_m"]) == pytest.approx(job3, rel=1e-6)
    assert float(by_job["4"]["delta_m"]) == pytest.approx(job4, rel=1e-6)
    assert job3 == pytest.approx(14.5) and job4 == pytest.approx(-14.5)
    assert [r["job"] for r in rows] == ["3", "4", "0", "1", "2"]  # by Δm%, then the baselines
    assert all(by_job[j]["delta_m"] == "" for j in "012")
    assert list(rows[0])[:7] == ["job", "tasks_only", "weighting", "seed",
                                 "~tasks.topic", "~tasks.ner", "delta_m"]
    assert "Sorted by Δm% (higher is better); best: job 3." in markdown
    assert "| 3 (best) | (default) | fixed | 1 | (default) | (default) | +14.50 |" in markdown
    assert "| 2 | (default) | fixed | 1 | (deleted) | (deleted) | (single-task) |" in markdown
    assert ("Δm%: mean relative change of each task's main metric (test) against its "
            "single-task jobs (Maninis et al. 2019): sts loss vs job 2; "
            "topic f1 vs jobs 0, 1 (mean of 2).") in markdown
    assert "Job 3: no single-task test figure of ner to compare with" in markdown
    assert "Job 4:" not in markdown  # tasks_only=[topic,sts]: both have a baseline


def test_delta_m_follows_the_split(tmp_path) -> None:
    sweep_with_baselines(tmp_path)
    rows, markdown = report(tmp_path, "--split", "val")
    by_job = {r["job"]: r for r in rows}
    topic = (0.50 + 0.60) / 2
    expected = ((0.55 - topic) / topic - (5.0 - 4.0) / 4.0) / 2 * 100
    assert float(by_job["3"]["delta_m"]) == pytest.approx(expected, rel=1e-6)
    assert "main metric (val)" in markdown


def test_no_single_task_job_means_no_column(tmp_path, capsys) -> None:
    for job, weighting in enumerate(("fixed", "uncertainty")):
        write_job(tmp_path / str(job), [f"weighting={weighting}"], TASKS,
                  {"val/score": 0.5 + job / 10, "test/topic/f1": 0.7})
    rows, markdown = report(tmp_path)
    assert "delta_m" not in rows[0] and "Δm%" not in markdown
    capsys.readouterr()
    assert cli.main(["report", str(tmp_path), "--metric", "delta_m"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --metric delta_m: needs single-task jobs")


def test_a_broken_job_config_is_a_one_line_error(tmp_path, capsys) -> None:
    sweep_with_baselines(tmp_path)
    (tmp_path / "3" / ".hydra" / "config.yaml").write_text("tasks: {topic: [\n")
    assert cli.main(["report", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / '3' / '.hydra' / 'config.yaml'}: cannot read")


def test_the_formula_flips_the_sign_of_lower_is_better_metrics() -> None:
    multi, single = {"a": 0.9, "b": 3.0}, {"a": 0.6, "b": 2.0}
    assert delta_m(multi, single, {"a": "f1", "b": "loss"}) == pytest.approx(
        100 * (0.5 - 0.5) / 2)
    assert delta_m(multi, single, {"a": "f1", "b": "mse"}, frozenset({"mse"})) == pytest.approx(0)
    assert delta_m(multi, single, {"a": "f1", "b": "mse"}) == pytest.approx(100 * (0.5 + 0.5) / 2)
    assert delta_m({"a": 0.9, "c": 1.0}, single, {"a": "f1", "c": "f1"}) == pytest.approx(50.0)


def test_the_weighting_preset_runs_a_baseline_per_task_then_every_method(tmp_path) -> None:
    cfg = compose_config(tmp_path, ["hparams_search=weighting"])
    # every option of the `weighting` group (conf/weighting/), each once
    methods = cfg.hydra.sweeper.params["weighting"].split(",")
    assert sorted(methods) == list(WEIGHTING_OPTIONS) and methods[0] == "fixed"
    from omegaconf import OmegaConf

    sweeper = OmegaConf.create(OmegaConf.to_container(cfg.hydra.sweeper))  # two methods suffice
    sweeper.params["weighting"] = "fixed,uncertainty"
    assert sweeper_jobs(sweeper, cfg) == [
        ["tasks_only=topic", "weighting=fixed"],
        ["tasks_only=ner", "weighting=fixed"],
        ["weighting=fixed"],
        ["weighting=uncertainty"],
    ]
    seeds = sweeper_jobs(sweeper, cfg, ["seed=1,2", "data.batch_size=4"])
    assert len(seeds) == 2 * 2 + 2 * 2  # a baseline per task and seed, a run per method and seed
    assert seeds[:2] == [["seed=1", "data.batch_size=4", "tasks_only=topic",
                          "weighting=fixed"],
                         ["seed=2", "data.batch_size=4", "tasks_only=topic",
                          "weighting=fixed"]]
    assert ["weighting=uncertainty", "seed=2", "data.batch_size=4"] in seeds
    three = compose_config(tmp_path, ["hparams_search=weighting", "experiment=minilm_three_tasks"])
    baselines = [j for j in sweeper_jobs(three.hydra.sweeper, three) if "tasks_only" in j[0]]
    assert [j[0] for j in baselines] == [f"tasks_only={t}" for t in three.tasks]
    assert len(baselines) == 3


def test_sweeper_baselines_name_configured_tasks(tmp_path) -> None:
    cfg = compose_config(tmp_path, ["hparams_search=weighting", "hydra.sweeper.baselines=[ner]"])
    assert sweeper_jobs(cfg.hydra.sweeper, cfg)[0] == ["tasks_only=ner", "weighting=fixed"]
    cfg = compose_config(tmp_path, ["hparams_search=weighting", "hydra.sweeper.baselines=[nope]"])
    with pytest.raises(MtstError, match=r"^hydra.sweeper.baselines=nope: no such task; the "
                                        r"config has topic, ner$"):
        sweeper_jobs(cfg.hydra.sweeper, cfg)


@pytest.mark.parametrize("config_name", ["train", "eval"])
def test_tasks_only_keeps_the_named_tasks(tmp_path, config_name) -> None:
    cfg = compose_config(tmp_path, ["tasks_only=ner"], config_name)
    drop_unselected_tasks(cfg)
    assert list(cfg.tasks) == ["ner"] and list(configured_tasks(cfg)) == ["ner"]
    cfg = compose_config(tmp_path, ["tasks_only=[ner,topic]"], config_name)
    drop_unselected_tasks(cfg)
    assert list(cfg.tasks) == ["topic", "ner"]  # the config's order
    cfg = compose_config(tmp_path, ["~tasks.topic"], config_name)  # deleting still works
    drop_unselected_tasks(cfg)
    assert list(configured_tasks(cfg)) == ["ner"]


def test_an_unknown_task_in_tasks_only_is_a_one_line_error(tmp_path) -> None:
    from mtst.training.entry import train

    cfg = compose_config(tmp_path, ["tasks_only=[topic,nope]"])
    with pytest.raises(MtstError) as err:
        train(cfg)  # before any folder, data or model
    assert str(err.value) == "tasks_only=nope: no such task; the config has topic, ner"
    with pytest.raises(MtstError, match=r"^tasks_only=\[\]: keeps no task; name one or more of "
                                        r"topic, ner$"):
        select_tasks({"topic": {}, "ner": {}}, [])


@pytest.mark.slow
def test_the_weighting_preset_end_to_end(tmp_path) -> None:
    """Hydra finds the sweeper, the baselines train one task each, the report compares."""
    from tests.reliability.helpers import CLI_TINY, run_cli

    logs = tmp_path / "logs"
    quick = [a for a in CLI_TINY if not a.startswith("data.batch_size")] + [
        "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "data.batch_size=8"]
    # 11 tiny jobs in one process: the timeout guards against a hang, generously for loaded machines
    result = run_cli("train.py", ["-m", "hparams_search=weighting", *quick, f"paths.log_dir={logs}"],
                     timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (logs / "multiruns").iterdir()
    rows, markdown = report(sweep)
    by_job = {r["job"]: r for r in rows}
    assert [(by_job[j]["tasks_only"], by_job[j]["weighting"]) for j in "0123"] == [
        ("topic", "fixed"), ("ner", "fixed"), ("(default)", "fixed"), ("(default)", "uncertainty")]
    assert "test/ner/f1" not in {k for k, v in by_job["0"].items() if v}  # topic alone
    for job in "23":
        row = by_job[job]
        expected = ((float(row["test/topic/f1"]) - float(by_job["0"]["test/topic/f1"]))
                    / float(by_job["0"]["test/topic/f1"])
                    + (float(row["test/ner/f1"]) - float(by_job["1"]["test/ner/f1"]))
                    / float(by_job["1"]["test/ner/f1"])) / 2 * 100
        assert float(row["delta_m"]) == pytest.approx(expected, rel=1e-5)
    assert "ner f1 vs job 1; topic f1 vs job 0." in markdown


def test_the_report_summarises_and_draws_the_conflict_monitor(tmp_path, capsys) -> None:
    from torch.utils.tensorboard import SummaryWriter

    two = {k: TASKS[k] for k in ("topic", "ner")}
    cosines = {"0": [0.5, -0.25, 0.25, -0.5], "1": [0.1, 0.2, 0.3, 0.4]}
    for name, method in (("0", "fixed"), ("1", "pcgrad")):
        folder = tmp_path / name
        write_job(folder, [f"weighting={method}"], two,
                  {"test/topic/f1": 0.8, "test/ner/f1": 0.7, "val/score": 0.75})
        writer = SummaryWriter(str(folder / "tensorboard" / "version_0"))
        for step, value in enumerate(cosines[name]):
            writer.add_scalar("train/grad_cos/topic__ner", value, step * 20)
            writer.add_scalar("train/grad_norm/topic", 2.0 * (step + 1), step * 20)
            writer.add_scalar("train/grad_norm/ner", 1.0 * (step + 1), step * 20)
            writer.add_scalar("train/loss", 1.0, step * 20)
        writer.close()
    write_job(tmp_path / "2", ["weighting=dwa"], two,
              {"test/topic/f1": 0.8, "test/ner/f1": 0.7, "val/score": 0.75})  # no monitor
    assert cli.main(["report", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    section = text[text.index("## Gradient conflict"):]
    rows = [line for line in section.splitlines() if line.startswith("| 0 ") or line.startswith("| 1 ")]
    assert len(rows) == 2 and "| 2 " not in section
    # job 0: mean cosine 0, half the steps negative, norm ratio 2; job 1: 0.25, none negative
    assert "| 0 | fixed | topic / ner | +0.000 | 50% | 2.00 | 4 |" in rows
    assert "| 1 | pcgrad | topic / ner | +0.250 | 0% | 2.00 | 4 |" in rows
    assert (tmp_path / "conflict.png").stat().st_size > 0


@pytest.mark.parametrize("value", [0, -0.3, "high", True])
def test_a_baseline_that_is_not_a_positive_number_is_one_line(value) -> None:
    from mtst.tasks import build_tasks

    with pytest.raises(MtstError, match=r"^tasks\.topic\.baseline=.*expected the single-task run's f1"):
        build_tasks({"topic": {"type": "sentence_classification", "baseline": value}})
