"""benchmarks/whole_runs.py: the two trees take turns, and the figures are medians and per-repeat
ratios of what was timed."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import whole_runs


def test_trees_alternate_and_ratios_pair_each_repeat(tmp_path, monkeypatch) -> None:
    calls: list[tuple[str, str]] = []
    seconds = {"before": iter([10.0, 12.0] * 3), "after": iter([11.0, 12.0] * 3)}

    def timed(tree: Path, cmd: list[str], conll: Path) -> float:
        side = "before" if tree.name == "old" else "after"
        calls.append((side, cmd[1]))
        return next(seconds[side])

    monkeypatch.setattr(whole_runs, "timed", timed)
    result = whole_runs.compare(tmp_path / "old", tmp_path / "new", 2, tmp_path, tmp_path)
    assert [side for side, _ in calls[:4]] == ["before", "after", "after", "before"]
    assert len(result["runs"]) == 3
    first = next(iter(result["runs"].values()))
    assert first["repeat_ratios"] == pytest.approx([1.1, 1.0])
    assert first["median_before_s"] == pytest.approx(11.0)
    assert first["ratio_after_over_before"] == pytest.approx(1.05)
