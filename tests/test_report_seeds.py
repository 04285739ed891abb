"""`mtst report --mean-over seed`: a row per configuration, mean ± std over seeds, Δm% paired
with each seed's own baselines."""

from __future__ import annotations

from pathlib import Path
from statistics import mean, stdev

import pytest

from mtst.cli import main as cli
from mtst.reports.seeds import group_jobs, paired_delta_m
from mtst.reports.sweep import collect_sweep
from tests.test_delta_m import write_job

pytestmark = pytest.mark.filterwarnings("error")
TASKS = {"topic": {"type": "sentence_classification"}, "ner": {"type": "token_classification"}}
# seed -> (topic alone, ner alone): seed 3's baselines are far better, as a lucky seed is
BASELINES = {1: (0.80, 0.50), 2: (0.78, 0.52), 3: (0.90, 0.70)}
# method -> seed -> (topic, ner)
JOINT = {"fixed": {1: (0.79, 0.40), 2: (0.77, 0.44), 3: (0.89, 0.60)},
         "nash_mtl": {1: (0.81, 0.48), 2: (0.78, 0.50), 3: (0.88, 0.69)}}
RATIO_WEIGHTS = {1: 2.5, 2: 2.7, 3: 2.6}


@pytest.fixture(autouse=True)
def only_report(monkeypatch) -> None:
    monkeypatch.setattr(cli, "COMMANDS", {"report": cli.COMMANDS["report"]})


def study(folder: Path) -> None:
    """As scripts/weighting_study.sh leaves a folder: baselines, two methods, each on three
    seeds, and `fixed` with a per-seed task weight."""
    n = 0
    for seed, (topic, ner) in BASELINES.items():
        for task, value in (("topic", topic), ("ner", ner)):
            write_job(folder / str(n), [f"seed={seed}", f"tasks_only={task}",
                                        "weighting=fixed", "data.batch_size=16"],
                      TASKS, {f"test/{task}/f1": value}, tasks_only=task)
            n += 1
    for method, seeds in JOINT.items():
        for seed, (topic, ner) in seeds.items():
            write_job(folder / str(n), [f"seed={seed}", f"weighting={method}"], TASKS,
                      {"test/topic/f1": topic, "test/ner/f1": ner})
            n += 1
    for seed, weight in RATIO_WEIGHTS.items():
        write_job(folder / f"ratio_seed{seed}", [f"seed={seed}", "weighting=fixed",
                                                 f"tasks.ner.weight={weight}"], TASKS,
                  {"test/topic/f1": 0.80, "test/ner/f1": 0.45 + seed / 100})


def paired(method: str) -> list[float]:
    """Δm% of each seed's job against that seed's baselines, by hand."""
    return [((t - BASELINES[s][0]) / BASELINES[s][0] + (n - BASELINES[s][1]) / BASELINES[s][1])
            / 2 * 100 for s, (t, n) in JOINT[method].items()]


def test_jobs_that_differ_only_in_the_averaged_keys_make_one_group(tmp_path) -> None:
    study(tmp_path)
    sweep = collect_sweep(tmp_path)
    groups = group_jobs(sweep, ["seed", "tasks.*.weight"])
    sizes = {tuple(sorted(g.label.items())): len(g.jobs) for g in groups}
    assert len(groups) == 5  # topic alone, ner alone, fixed, nash_mtl, fixed with weights
    assert set(sizes.values()) == {3}
    weighted = [g for g in groups if "tasks.ner.weight" in g.averaged]
    assert len(weighted) == 1 and weighted[0].averaged["tasks.ner.weight"] == ["2.5", "2.7", "2.6"]
    # without the weight among the averaged keys, each weighted job is its own configuration
    assert len(group_jobs(sweep, ["seed"])) == 7


def test_delta_m_pairs_each_job_with_its_own_seeds_baselines(tmp_path) -> None:
    study(tmp_path)
    sweep = collect_sweep(tmp_path)
    deltas = paired_delta_m(sweep.jobs, ["seed"], "test")
    fixed = [deltas[j.name] for j in sweep.jobs if j.overrides.get("weighting") == "fixed"
             and "tasks_only" not in j.overrides and "tasks.ner.weight" not in j.overrides]
    assert sorted(fixed) == pytest.approx(sorted(paired("fixed")), rel=1e-9)
    # pooled baselines (the per-job table's Δm%) would give another figure: the pairing matters
    pooled = [j.values["delta_m"] for j in sweep.jobs if j.name in {"6", "7", "8"}]
    assert sorted(pooled) != pytest.approx(sorted(fixed), rel=1e-3)


def test_the_table_shows_mean_and_sample_std_and_the_figure_is_written(tmp_path, capsys) -> None:
    study(tmp_path)
    assert cli.main(["report", str(tmp_path), "--mean-over", "seed,tasks.*.weight"]) == 0
    out = capsys.readouterr().out
    heading = "## Mean ± standard deviation over seed, tasks.*.weight"
    assert heading in out
    markdown = (tmp_path / "report.md").read_text().split(heading)[1]  # after the per-job table
    nash = paired("nash_mtl")
    topic = [t for t, _ in JOINT["nash_mtl"].values()]
    row = next(line for line in markdown.splitlines() if "| nash_mtl |" in line)
    assert f"{mean(topic):.4f} ± {stdev(topic):.4f}" in row
    assert f"{mean(nash):.2f} ± {stdev(nash):.2f}" in row
    assert row.startswith("| 3 |")
    weighted = next(line for line in markdown.splitlines() if "2.600 ± 0.100" in line)
    assert "| fixed |" in weighted and "1,2,3" in weighted
    baseline = next(line for line in markdown.splitlines() if "| topic |" in line)
    assert "(single-task)" in baseline
    # best Δm% first after the baselines: nash_mtl above fixed
    lines = markdown.splitlines()
    fixed = next(x for x in lines if "| fixed | (default) | 1,2,3 |  |" in x)
    assert lines.index(row) < lines.index(fixed)
    assert f"{mean(paired('fixed')):.2f} ± {stdev(paired('fixed')):.2f}" in fixed
    assert (tmp_path / "seeds.png").stat().st_size > 10_000


def test_without_mean_over_no_section_and_no_figure(tmp_path) -> None:
    study(tmp_path)
    assert cli.main(["report", str(tmp_path)]) == 0
    assert "Mean ±" not in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "seeds.png").exists()
