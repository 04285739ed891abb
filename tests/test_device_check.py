"""The device check's CPU dry run: `scripts/device_check.sh --cpu` (scripts/device_check.py)
measures every row with tiny sizes and writes the Markdown section that BENCHMARKS.md includes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks import report
from benchmarks.common import ROOT
from benchmarks.report import render
from scripts import device_check
from scripts.device_check import render_section


def test_the_cpu_dry_run_measures_every_row_and_writes_the_section(tmp_path) -> None:
    section, raw = tmp_path / "device_check.md", tmp_path / "device_check.json"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run([str(ROOT / "scripts" / "device_check.sh"), "--cpu", "--out", str(section),
                           "--json", str(raw)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(raw.read_text())
    rows = {row["backbone"]: row for row in result["train"]}
    assert set(rows) == {"gpt_neo_tiny", "minilm"}
    for row in rows.values():
        assert "error" not in row, row
        assert row["tokens_per_s"] > 0 and row["losses_finite"] and row["peak_share"] > 0
        assert row["tokens_per_s"] == pytest.approx(row["batch"] * row["tokens"] / (row["step_ms"] / 1e3))
    assert rows["minilm"]["params"] > 20 * rows["gpt_neo_tiny"]["params"]
    encode = result["encode"]
    assert encode["min_cosine"] > 0.9999 and encode["mtst_per_s"] > 0 and encode["st_per_s"] > 0
    (pipeline,) = result["pipeline"]
    assert pipeline["ok"], pipeline
    fsdp = result["fsdp"]  # trainer=fsdp_cpu, one process: the sharded path, blocks found
    assert fsdp["ok"], fsdp
    assert fsdp["wrapped_blocks"] == ["GPTNeoBlock"] and fsdp["checkpoint_activations"]
    assert fsdp["strategy"] == "HydraFSDPStrategy" and len(fsdp["step_s"]) == 2
    text = section.read_text()
    assert text == render_section(result)
    assert text.startswith("## GPU device check (CPU dry run: not a GPU measurement)")
    assert "| gpt_neo_tiny |" in text and "| minilm |" in text and "not measured" not in text
    assert "trainer=cpu trainer.precision=bf16-mixed data.max_tokens=1024" in text
    assert "`backbone=gpt_neo_tiny` (random weights)" in text and "| GPTNeoBlock | yes |" in text


def test_the_dry_run_never_writes_the_committed_gpu_section() -> None:
    assert device_check.default_out(cpu=False) == device_check.SECTION == report.DEVICE_SECTION
    assert device_check.default_out(cpu=True).parent == ROOT / "logs" / "device_check"


def report_results() -> dict:
    """The smallest results.json `render` accepts: one skipped section."""
    versions = {k: "1" for k in ("python", "torch", "transformers", "lightning", "tokenizers",
                                 "sentence-transformers", "mtst")}
    return {"mode": "quick", "command": "python -m benchmarks --quick", "corpora": [],
            "data_dir": "/data", "budget": {"name": "quick"},
            "sections": {"encode": {"skipped": "missing corpora: ag_news"}}, "section_seconds": {},
            "environment": {"cpu": "cpu", "logical_cpus": 2, "torch_threads": 2, "ram_gib": 1.0,
                            "platform": "linux", "mtst_commit": "abc", "versions": versions}}


def test_benchmarks_md_includes_the_section_or_says_how_to_make_it(tmp_path, monkeypatch) -> None:
    section = tmp_path / "device_check.md"
    monkeypatch.setattr(report, "DEVICE_SECTION", section)
    assert "\n## GPU device check\n\nNot run yet: no GPU was available" in render(report_results())
    section.write_text("## GPU device check\n\n| backbone | tokens/s |\n|---|---|\n| x | 1 |\n")
    text = render(report_results())
    assert text.endswith("## GPU device check\n\n| backbone | tokens/s |\n|---|---|\n| x | 1 |\n")
    assert "written by `scripts/device_check.sh`" in text and "Not run yet" not in text
