"""Same seed and config -> bit-identical metrics and weights on CPU, in two separate processes
(so nothing carried over inside one interpreter can make them agree)."""

from __future__ import annotations

import json

import pytest
import torch

from mtst.checkpoints.file_io import load_checkpoint
from tests.reliability.helpers import CLI_RESUME, MOOD_TASK, run_cli, run_folders


@pytest.mark.slow
def test_two_runs_with_the_same_seed_are_bit_identical(tmp_path) -> None:
    runs = []
    for name in ("first", "second"):
        log = tmp_path / name
        result = run_cli("train.py", CLI_RESUME + MOOD_TASK + [f"paths.log_dir={log}"])
        assert result.returncode == 0, result.stderr[-2000:]
        (run,) = run_folders(log)
        runs.append(run)
    a, b = (json.loads((run / "metrics.json").read_text())["metrics"] for run in runs)
    assert a == b  # exact float equality, every key
    assert {"val/score", "val/ner/f1", "val/topic/acc", "val/mood/acc", "test/score"} <= a.keys()
    wa, wb = (load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
              for run in runs)
    assert wa.keys() == wb.keys()
    assert [k for k in wa if not torch.equal(wa[k], wb[k])] == []
