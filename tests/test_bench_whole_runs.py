"""benchmarks/whole_runs.py: the two trees take turns, and the figures are medians and per-repeat
ratios of what was timed."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import whole_runs


def test_trees_alternate_and_ratios_pair_each_repeat(tmp_path, monkeypatch) -> None:
    calls: list[tuple[str, str]] = []
    seconds = {"before": iter([10.0, 12.0] * 3), "after": iter([11.0, 12.0] * 3)}

    def timed_run(cmd: list[str], tree: Path, env: dict[str, str]) -> float:
        side = "before" if tree.name == "old" else "after"
        assert env["PYTHONPATH"] == str(tree / "src")  # each tree imports its own mtst
        calls.append((side, cmd[1]))
        return next(seconds[side])

    monkeypatch.setattr(whole_runs, "timed_run", timed_run)
    result = whole_runs.compare(tmp_path / "old", tmp_path / "new", 2, tmp_path, tmp_path)
    assert [side for side, _ in calls[:4]] == ["before", "after", "after", "before"]
    assert len(result["runs"]) == 3
    first = next(iter(result["runs"].values()))
    assert first["repeat_ratios"] == pytest.approx([1.1, 1.0])
    assert first["median_before_s"] == pytest.approx(11.0)
    assert first["ratio_after_over_before"] == pytest.approx(1.05)


def test_the_cached_loop_row_reports_the_ratio_against_its_aim() -> None:
    from benchmarks.report import sum_cached_loop
    from benchmarks.sections import md_cached_loop

    section = {"examples": 3250, "epochs": 4, "repeats": 2, "cpu": "x", "load_1min": [1.0, 1.1],
               "aim": 2.0, "epochs_s": {"mtst": [[9.0, 0.5, 0.4], [9.0, 0.6, 0.5]],
                                        "bare": [[8.0, 0.2, 0.2], [8.0, 0.3, 0.2]]},
               "later_epoch_s": {"mtst": 0.5, "bare": 0.22}, "ratio": 2.27, "repeat_ratios": [2.2, 2.3]}
    text = md_cached_loop(section)
    assert "| mtst | 0.500 | 0.500 / 0.400; 0.600 / 0.500 |" in text
    assert "**2.27×** (each repeat: 2.20×, 2.30×); aim ≤ 2×" in text
    (row,) = sum_cached_loop(section)
    assert row[2] == "2.27× (0.500 s vs 0.220 s)" and row[-1] == "**no**"
    assert sum_cached_loop({**section, "ratio": 1.5})[0][-1] == "yes"
