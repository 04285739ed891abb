"""Resume: a crashed run continued from last.ckpt ends exactly like an uninterrupted one; the
run folder is reused; checkpoint writes are atomic."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mtst.checkpoints.file_io import AtomicCheckpointIO, load_checkpoint
from mtst.checkpoints.tensor_store import referenced_digests
from mtst.config.runs import run_dir
from mtst.training.entry import train
from tests.conftest import compose_config
from tests.reliability.conftest import RESUME_RUN, TOTAL_STEPS
from tests.reliability.helpers import Crash, checkpoint_step


def test_crash_mid_epoch_then_resume_matches_the_uninterrupted_run(reference_run, tmp_path) -> None:
    ref_dir, ref_metrics = reference_run
    crash = ["+callbacks.crash._target_=tests.reliability.helpers.RaiseAtStep",
             "+callbacks.crash.step=5"]  # before epoch 2's last batch: last.ckpt is mid-epoch
    with pytest.raises(Crash):
        train(compose_config(tmp_path, RESUME_RUN + crash))
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert checkpoint_step(last) == 5
    assert referenced_digests(last)  # resumed from a checkpoint whose large tensors are files
    assert not (tmp_path / "metrics.json").exists()
    metrics = train(compose_config(tmp_path, RESUME_RUN + [f"ckpt_path={last}"]))
    assert checkpoint_step(last) == checkpoint_step(ref_dir / "checkpoints" / "last.ckpt") == TOTAL_STEPS
    assert metrics.keys() == ref_metrics.keys()
    for key, value in ref_metrics.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key
    final = load_checkpoint(last)["state_dict"]
    reference = load_checkpoint(ref_dir / "checkpoints" / "last.ckpt")["state_dict"]
    assert all(torch.equal(final[k], reference[k]) for k in reference)  # same data, same dropout


def test_resume_reuses_the_checkpoints_run_folder(tmp_path) -> None:
    # the run named (started) first wrote its last.ckpt most recently: `last` picks it
    runs = {}
    for name, written in (("2026-01-01_00-00-00_abcdef", 2e9), ("2026-02-01_00-00-00_012345", 1e9)):
        run = tmp_path / "runs" / name
        (run / ".hydra").mkdir(parents=True)
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
        os.utime(run / "checkpoints" / "last.ckpt", (written, written))
        runs[written] = run
    newest, other = runs[2e9], runs[1e9]
    assert Path(run_dir(str(tmp_path), "last")).resolve() == newest.resolve()
    assert run_dir(str(tmp_path), str(other / "checkpoints" / "last.ckpt")) == str(other.resolve())
    fresh = Path(run_dir(str(tmp_path), None))  # no checkpoint: a new folder, created now
    assert fresh.parent == tmp_path / "runs" and fresh.is_dir() and fresh not in runs.values()


def test_a_crash_inside_a_checkpoint_write_leaves_the_previous_file_intact(tmp_path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": torch.tensor(1)}, path)
    before = path.read_bytes()

    def torn_save(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": torch.tensor(2)}, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt"]  # no temporary file left behind
    assert int(io.load_checkpoint(path)["step"]) == 1


@pytest.mark.parametrize("change, names", [
    ("tasks_only=topic", "it was trained with tasks ner, topic, this run has topic"),
    ("weighting=uncertainty", "weight 'weighting.log_vars' is absent there"),
])
def test_resuming_into_another_model_is_one_line(reference_run, tmp_path, change, names) -> None:
    import shutil

    from mtst.errors import MtstError

    shutil.copytree(reference_run[0] / "checkpoints", tmp_path / "saved")  # its tensor files too
    last = tmp_path / "saved" / "last.ckpt"
    cfg = compose_config(tmp_path / "run", RESUME_RUN + [f"ckpt_path={last}", change])
    with pytest.raises(MtstError, match=f"^ckpt_path={last}: {names}.*start a new run"):
        train(cfg)


@pytest.mark.parametrize("weighting", ["uncertainty", "famo"])
def test_a_checkpoint_naming_the_weighting_loss_fn_loads_into_weighting(weighting) -> None:
    """Checkpoints written before the rename hold the method's state as `loss_fn.*`;
    `on_load_checkpoint` renames those keys, so they resume with their state, strictly loaded."""
    from types import SimpleNamespace

    from tests.conftest import make_datamodule, make_module

    dm = make_datamodule()
    saved = make_module(dm, weighting=weighting)
    for buffer in [*saved.weighting.parameters(), *saved.weighting.buffers(recurse=False)]:
        buffer.data.uniform_(0.1, 0.9)  # state a fresh module would not have
    old = {k.replace("weighting.", "loss_fn.", 1): v for k, v in saved.state_dict().items()}
    assert any(k.startswith("loss_fn.") for k in old)
    resumed = make_module(dm, weighting=weighting)
    resumed._trainer = SimpleNamespace(ckpt_path="old.ckpt")
    checkpoint = {"state_dict": old}
    resumed.on_load_checkpoint(checkpoint)
    assert not any(k.startswith("loss_fn.") for k in checkpoint["state_dict"])
    resumed.load_state_dict(checkpoint["state_dict"], strict=True)
    for key, value in saved.weighting.state_dict().items():
        assert torch.equal(resumed.weighting.state_dict()[key], value), key


def test_a_run_with_loader_workers_resumed_mid_epoch_matches_the_uninterrupted_run(tmp_path) -> None:
    """Loader workers take batch indices as soon as torch's iterator exists: the resumed run's
    iterator must not exist before the checkpoint's data position is applied (at
    `on_train_start`), or the workers would replay the epoch from its start."""
    workers = ["data.num_workers=2"]
    reference = train(compose_config(tmp_path / "reference", RESUME_RUN + workers))
    crash = ["+callbacks.crash._target_=tests.reliability.helpers.RaiseAtStep",
             "+callbacks.crash.step=5"]  # mid-epoch 2
    run = tmp_path / "crashed"
    with pytest.raises(Crash):
        train(compose_config(run, RESUME_RUN + workers + crash))
    last = run / "checkpoints" / "last.ckpt"
    assert checkpoint_step(last) == 5
    metrics = train(compose_config(run, RESUME_RUN + workers + [f"ckpt_path={last}"]))
    for key, value in reference.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key
    final = load_checkpoint(last)["state_dict"]
    expected = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.ckpt")["state_dict"]
    assert all(torch.equal(final[k], expected[k]) for k in expected)
