"""Real process faults (slow): SIGKILL at a random step, SIGTERM from a scheduler, a kill in the
middle of a checkpoint write. Each resumed run must end exactly like an uninterrupted one."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import SAVE_EVERY_STEP
from tests.reliability.conftest import TOTAL_STEPS
from tests.reliability.helpers import (
    CLI_RESUME,
    ROOT,
    checkpoint_step,
    metrics_of,
    run_cli,
    run_folders,
)

pytestmark = pytest.mark.slow

FAULT = "+callbacks.fault._target_=tests.reliability.helpers.SignalAtStep"
KILL_SEED = 0  # the kill step is drawn, but reproducibly: a failure names a step that fails again


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, float]:
    log = tmp_path_factory.mktemp("uninterrupted")
    result = run_cli("train.py", CLI_RESUME + [f"paths.log_dir={log}"])
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = run_folders(log)
    assert checkpoint_step(run / "checkpoints" / "last.ckpt") == TOTAL_STEPS
    return metrics_of(run)


def assert_same_metrics(got: dict[str, float], want: dict[str, float]) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def test_sigkill_at_a_random_step_then_resume_with_ckpt_path_last(uninterrupted, tmp_path) -> None:
    step = random.Random(KILL_SEED).randrange(1, TOTAL_STEPS)
    args = CLI_RESUME + SAVE_EVERY_STEP + [f"paths.log_dir={tmp_path}"]
    killed = run_cli("train.py", args + [FAULT, f"+callbacks.fault.step={step}"])
    assert killed.returncode == -signal.SIGKILL, f"step {step}: {killed.stderr[-2000:]}"
    (run,) = run_folders(tmp_path)
    assert not (run / "metrics.json").exists()
    assert 1 <= checkpoint_step(run / "checkpoints" / "last.ckpt") <= step

    resumed = run_cli("train.py", args + ["ckpt_path=last"])
    assert resumed.returncode == 0, f"step {step}: {resumed.stderr[-2000:]}"
    assert run_folders(tmp_path) == [run]  # continued in the same folder
    assert checkpoint_step(run / "checkpoints" / "last.ckpt") == TOTAL_STEPS
    assert_same_metrics(metrics_of(run), uninterrupted)


def test_sigterm_saves_last_ckpt_and_exits_with_one_line(uninterrupted, tmp_path) -> None:
    # no step checkpoints: the only mid-epoch last.ckpt can come from the SIGTERM handler
    args = CLI_RESUME + ["callbacks.step_checkpoint.every_n_train_steps=1000",
                         f"paths.log_dir={tmp_path}"]
    stopped = run_cli("train.py", args + [FAULT, "+callbacks.fault.step=4",
                                          "+callbacks.fault.sig=SIGTERM"])
    assert stopped.returncode == 2, stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr
    (run,) = run_folders(tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    assert f"error: training stopped by SIGTERM at step 5; resume with ckpt_path={last}" in stopped.stderr
    assert checkpoint_step(last) == 5  # the batch in flight finished, then the state was saved
    assert not (run / "metrics.json").exists()

    resumed = run_cli("train.py", args + [f"ckpt_path={last}"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert run_folders(tmp_path) == [run]
    assert_same_metrics(metrics_of(run), uninterrupted)


def test_sigterm_ends_a_whole_multirun_even_when_failed_jobs_do_not(tmp_path) -> None:
    """`sweep.continue_on_error` lets a sweep pass a failed job; a SIGTERM is a request to stop
    the sweep (the fault fires in every job, so a sweep that went on would run job 1 too)."""
    args = CLI_RESUME + [f"paths.log_dir={tmp_path}", "sweep.continue_on_error=true"]
    stopped = run_cli("train.py", ["-m", "seed=1,2", *args, FAULT, "+callbacks.fault.step=2",
                                   "+callbacks.fault.sig=SIGTERM"])
    assert stopped.returncode == 2, stopped.stderr[-2000:]
    assert "error: training stopped by SIGTERM at step 3" in stopped.stderr
    (sweep,) = {p.parent for p in (tmp_path / "multiruns").rglob("multirun.yaml")}
    assert (sweep / "0").is_dir() and not (sweep / "1").exists()


def test_sigkill_inside_a_checkpoint_write_keeps_the_previous_last_ckpt(tmp_path) -> None:
    path = tmp_path / "last.ckpt"
    code = textwrap.dedent(f"""
        import os, signal, torch
        from mtst.checkpoints.file_io import AtomicCheckpointIO
        io = AtomicCheckpointIO()
        io.save_checkpoint({{"step": torch.tensor(1), "w": torch.ones(4096)}}, {str(path)!r})
        def dying_save(obj, handle, *args, **kwargs):
            handle.write(b"PK half written")
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        io.save_checkpoint({{"step": torch.tensor(2)}}, {str(path)!r})
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGKILL
    from mtst.checkpoints.file_io import AtomicCheckpointIO, load_checkpoint

    assert int(load_checkpoint(path)["step"]) == 1  # intact, loads with weights_only=True
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.ckpt"]
    assert leftovers and all(n.startswith(".last.ckpt.") and n.endswith(".tmp") for n in leftovers)
    AtomicCheckpointIO().save_checkpoint({"step": 3}, path)  # the next save sweeps the debris
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
