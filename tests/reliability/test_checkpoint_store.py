"""Checkpoints that do not rewrite unchanged weights: large state-dict tensors are written once
to content-addressed files in `checkpoints/tensors/`, checkpoints refer to them, loading gives
back bitwise the saved state, a checkpoint without its tensor files fails with one line, and
files no checkpoint refers to are collected."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import mtst
from mtst.checkpoints import file_io as checkpoints_module
from mtst.checkpoints.file_io import AtomicCheckpointIO, load_checkpoint
from mtst.checkpoints.tensor_store import REFS_KEY, TENSOR_FOLDER, content_hash, referenced_digests
from mtst.cli.main import main
from mtst.errors import MtstError
from mtst.training.entry import train
from tests.conftest import TINY_TRAIN, compose_config

SMALL = 1024  # bytes: tensors from this size on go to tensor files in the unit tests


def state(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"encoder.weight": torch.randn(64, 32, generator=generator),
            "encoder.half": torch.randn(64, 32, generator=generator).to(torch.bfloat16),
            "encoder.bias": torch.randn(32, generator=generator),  # small: stays inside
            "head.weight": torch.randn(16, 32, generator=generator),
            "steps": torch.tensor(3)}


FILES = {"tokenizer.json": bytes(range(256)) * 16, "config.json": b'{"hidden_size": 32}'}


def checkpoint(weights: dict[str, torch.Tensor], step: int = 1) -> dict:
    return {"state_dict": weights, "global_step": step,
            "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(16, 32)}}}],
            "mtst": {"version": 2, "files": dict(FILES)}}


def tensor_files(folder: Path) -> set[str]:
    return {p.name for p in (folder / TENSOR_FOLDER).iterdir()}


def test_unchanged_tensors_are_written_once_and_load_back_bitwise(tmp_path) -> None:
    io = AtomicCheckpointIO(min_bytes=SMALL)
    weights = state()
    io.save_checkpoint(checkpoint(weights), tmp_path / "last.ckpt")
    first = io.bytes_written
    assert len(tensor_files(tmp_path)) == 4  # encoder.weight, encoder.half, head.weight, tokenizer
    raw = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert set(raw["state_dict"]) == {"encoder.bias", "steps"}
    assert set(raw[REFS_KEY]["tensors"]) == {"encoder.weight", "encoder.half", "head.weight"}
    assert raw["mtst"]["files"] == {"config.json": FILES["config.json"]}  # small: inside
    assert set(raw[REFS_KEY]["files"]) == {"tokenizer.json"}

    trained = {**weights, "head.weight": weights["head.weight"] + 1}  # the head trained
    io.save_checkpoint(checkpoint(trained, 2), tmp_path / "best.ckpt")
    second = io.bytes_written - first
    ckpt_size = (tmp_path / "best.ckpt").stat().st_size
    head_file = 16 * 32 * 4
    assert head_file < second - ckpt_size < head_file + 200  # the new head's file, nothing else
    assert len(tensor_files(tmp_path)) == 5

    loaded = load_checkpoint(tmp_path / "best.ckpt")
    assert loaded["mtst"] == {"version": 2, "files": FILES}
    assert list(loaded["state_dict"]) == list(trained)  # saved order, every key
    for key, value in trained.items():
        assert loaded["state_dict"][key].dtype == value.dtype
        assert torch.equal(loaded["state_dict"][key], value), key
    assert REFS_KEY not in loaded and loaded["global_step"] == 2
    assert torch.equal(loaded["optimizer_states"][0]["state"][0]["exp_avg"], torch.ones(16, 32))


def test_files_no_checkpoint_refers_to_are_collected(tmp_path) -> None:
    io = AtomicCheckpointIO(min_bytes=SMALL)
    first, second, third = state(0), state(1), state(2)
    io.save_checkpoint(checkpoint(first), tmp_path / "best.ckpt")
    io.save_checkpoint(checkpoint(first), tmp_path / "last.ckpt")
    kept = tensor_files(tmp_path)
    io.save_checkpoint(checkpoint(second), tmp_path / "last.ckpt")  # best still needs `first`
    assert kept < tensor_files(tmp_path)
    io.save_checkpoint(checkpoint(second), tmp_path / "best.ckpt")  # nothing needs `first` now
    assert tensor_files(tmp_path) == {f"{d}.safetensors" for d in referenced_digests(tmp_path / "best.ckpt")}
    assert {f"{content_hash(second[k])}.safetensors" for k in ("encoder.weight", "head.weight")
            } < tensor_files(tmp_path)
    # a top-k checkpoint ModelCheckpoint removes takes its files with it
    io.save_checkpoint(checkpoint(third), tmp_path / "epoch=2.ckpt")
    assert len(tensor_files(tmp_path)) == 7  # the tokenizer file is shared
    io.remove_checkpoint(tmp_path / "epoch=2.ckpt")
    assert len(tensor_files(tmp_path)) == 4
    # a checkpoint that cannot be read might refer to anything: nothing is collected then
    (tmp_path / "foreign.ckpt").write_bytes(b"not a checkpoint")
    io.save_checkpoint(checkpoint(third), tmp_path / "last.ckpt")
    io.save_checkpoint(checkpoint(third), tmp_path / "best.ckpt")
    assert len(tensor_files(tmp_path)) == 7
    (tmp_path / "foreign.ckpt").unlink()
    io.save_checkpoint(checkpoint(third), tmp_path / "best.ckpt")
    assert len(tensor_files(tmp_path)) == 4


def test_a_checkpoint_copied_alone_fails_with_one_line_naming_the_missing_file(tmp_path, capsys
                                                                              ) -> None:
    AtomicCheckpointIO(min_bytes=SMALL).save_checkpoint(checkpoint(state()), tmp_path / "run" / "best.ckpt")
    alone = tmp_path / "elsewhere" / "best.ckpt"
    alone.parent.mkdir()
    shutil.copy(tmp_path / "run" / "best.ckpt", alone)
    with pytest.raises(MtstError) as caught:
        load_checkpoint(alone)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"{alone}: ")
    missing = alone.parent / TENSOR_FOLDER / f"{content_hash(state()['encoder.weight'])}.safetensors"
    assert str(missing) in message and "missing" in message
    # copied with its tensors/ folder it loads
    shutil.copytree(tmp_path / "run" / TENSOR_FOLDER, alone.parent / TENSOR_FOLDER)
    assert torch.equal(load_checkpoint(alone)["state_dict"]["encoder.weight"], state()["encoder.weight"])


def test_tensor_references_cannot_leave_the_tensor_folder_and_files_are_checked(tmp_path) -> None:
    path = tmp_path / "run" / "last.ckpt"
    AtomicCheckpointIO(min_bytes=SMALL).save_checkpoint(checkpoint(state()), path)
    good = torch.load(path, weights_only=True)
    secret = tmp_path / "secret.safetensors"
    shutil.copy(next((path.parent / TENSOR_FOLDER).iterdir()), secret)
    hostile = {"folder": "..", "digest": "../../secret"}
    for field, value in hostile.items():
        refs = dict(good[REFS_KEY])
        if field == "folder":
            refs["folder"] = value
        else:
            refs["tensors"] = {**refs["tensors"], "encoder.weight": value}
        torch.save({**good, REFS_KEY: refs}, path)
        with pytest.raises(MtstError, match=f"^{path}: not an mtst checkpoint \\(malformed "):
            load_checkpoint(path)
    # a tensor file whose bytes are not what its name says (swapped, corrupt) is refused
    torch.save(good, path)
    files = sorted((path.parent / TENSOR_FOLDER).iterdir())
    files[0].write_bytes(files[1].read_bytes())
    with pytest.raises(MtstError, match="does not match its name") as caught:
        load_checkpoint(path)
    assert len(str(caught.value).splitlines()) == 1
    files[0].write_bytes(b"\x80\x04 not safetensors")
    with pytest.raises(MtstError, match=f"^{files[0]}: not a tensor file of {path}"):
        load_checkpoint(path)


def test_a_crash_after_the_tensor_files_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    io = AtomicCheckpointIO(min_bytes=SMALL)
    path = tmp_path / "last.ckpt"
    io.save_checkpoint(checkpoint(state(0)), path)

    def torn_save(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", torn_save)
        with pytest.raises(OSError, match="disk full"):
            io.save_checkpoint(checkpoint(state(1)), path)  # new tensor files, then the crash
    assert torch.equal(load_checkpoint(path)["state_dict"]["encoder.weight"], state(0)["encoder.weight"])
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt", TENSOR_FOLDER]
    io.save_checkpoint(checkpoint(state(0), 2), path)  # the orphans of the failed save go
    assert tensor_files(tmp_path) == {f"{d}.safetensors" for d in referenced_digests(path)}


def test_a_checkpoint_replaced_while_it_is_read_is_read_again(tmp_path, monkeypatch) -> None:
    """A reader of a run still training can read the old checkpoint's pickle, then find its
    tensor files collected by the save that replaced it: it reads the new checkpoint."""
    io = AtomicCheckpointIO(min_bytes=SMALL)
    path = tmp_path / "last.ckpt"
    io.save_checkpoint(checkpoint(state(0)), path)
    old = torch.load(path, weights_only=True)
    real_load = torch.load
    calls = []

    def load_then_replace(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the trainer saves the next checkpoint right after this read
            io.save_checkpoint(checkpoint(state(1), 2), path)
            return old
        return real_load(*args, **kwargs)

    monkeypatch.setattr(checkpoints_module.torch, "load", load_then_replace)
    loaded = load_checkpoint(path)
    assert loaded["global_step"] == 2
    assert torch.equal(loaded["state_dict"]["encoder.weight"], state(1)["encoder.weight"])


# ---- through the pipeline (tiny GPT-Neo) ---------------------------------------------------
class RecordingIO(AtomicCheckpointIO):
    """Per save: the epoch of the checkpoint and the bytes of tensor files written for it."""

    saves: list[tuple[int, int]] = []
    files: list[tuple[int, str]] = []  # (epoch, file name) of every save
    copies: list[int] = []  # bytes of tensor copies the digest memo holds after each save

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        before = self.bytes_written
        super().save_checkpoint(checkpoint, path, storage_options)
        tensor_bytes = self.bytes_written - before - Path(path).stat().st_size
        RecordingIO.saves.append((int(checkpoint["epoch"]), tensor_bytes))
        RecordingIO.files.append((int(checkpoint["epoch"]), Path(path).name))
        RecordingIO.copies.append(self.memo._bytes)


def recorded_run(tmp_path: Path, freeze: str, monkeypatch) -> dict[int, list[int]]:
    """Tensor-file bytes written by each save of a 3-epoch tiny run, by epoch."""
    RecordingIO.saves, RecordingIO.files, RecordingIO.copies = [], [], []
    monkeypatch.setattr("mtst.training.entry.AtomicCheckpointIO", RecordingIO)
    train(compose_config(tmp_path, TINY_TRAIN + [f"freeze={freeze}", "trainer.max_epochs=3",
                                                 "run_test=false"]))
    per_epoch: dict[int, list[int]] = {}
    for epoch, written in RecordingIO.saves:
        per_epoch.setdefault(epoch, []).append(written)
    return per_epoch


def test_frozen_backbone_epochs_write_only_what_trains_and_none_collects(tmp_path, monkeypatch
                                                                         ) -> None:
    embedding = 2048 * 64 * 4  # the tiny backbone's token embedding: one tensor file
    hashed, _ = counted_hashes(monkeypatch)
    checked = finiteness_checks(monkeypatch)
    frozen = recorded_run(tmp_path / "backbone", "backbone", monkeypatch)
    # hashed and checked for non-finite values at the first save only, whatever mode a save
    # runs under (best.ckpt is written during validation, under inference_mode)
    assert len(RecordingIO.saves) > 3 and hashed.count((2048, 64)) == checked.count((2048, 64)) == 1
    assert sorted(frozen) == [0, 1, 2]
    first, *rest = frozen[0]
    assert first > embedding and rest == [0] * len(rest)  # the frozen weights, once
    assert frozen[1] == [0] * len(frozen[1]) and frozen[2] == [0] * len(frozen[2])
    # the frozen backbone's digests are kept by write watch: no copy of its weights
    assert max(RecordingIO.copies) < embedding
    folder = tmp_path / "backbone" / "checkpoints"
    refs = [referenced_digests(folder / n) for n in ("best.ckpt", "last.ckpt")]
    assert refs[0] == refs[1] and tensor_files(folder) == {f"{d}.safetensors" for d in refs[0]}

    # an epoch end writes last.ckpt once (step_checkpoint's), best.ckpt when the score improves
    for epoch in range(3):
        names = [name for e, name in RecordingIO.files if e == epoch]
        assert names.count("last.ckpt") == 1 and set(names) <= {"best.ckpt", "last.ckpt"}, names

    trained = recorded_run(tmp_path / "none", "none", monkeypatch)
    assert all(written[0] > embedding for written in trained.values())  # everything changed
    assert min(RecordingIO.copies) > embedding  # trained tensors are compared with copies
    folder = tmp_path / "none" / "checkpoints"
    referenced = set().union(*(referenced_digests(folder / n) for n in ("best.ckpt", "last.ckpt")))
    assert tensor_files(folder) == {f"{d}.safetensors" for d in referenced}  # no growth
    reloaded = mtst.load(tmp_path / "none")  # the run folder: best.ckpt and its tensor files
    assert torch.equal(reloaded.state_dict()["encoder.backbone.wte.weight"],
                       load_checkpoint(folder / "best.ckpt")["state_dict"][
                           "net.encoder.backbone.wte.weight"])


def test_export_is_self_contained_and_a_lone_checkpoint_is_one_cli_line(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    train(compose_config(run, TINY_TRAIN + ["freeze=backbone", "run_test=false"]))
    assert referenced_digests(run / "checkpoints" / "best.ckpt")
    expected = mtst.load(run).predict(["Ada Lovelace flew to Paris."])
    assert main(["export", "--checkpoint", str(run), "--out", str(tmp_path / "export")]) == 0
    alone = tmp_path / "alone.ckpt"
    shutil.copy(run / "checkpoints" / "best.ckpt", alone)
    shutil.rmtree(run)  # the export needs nothing of the run
    assert not any(p.suffix == ".ckpt" or p.name == TENSOR_FOLDER
                   for p in (tmp_path / "export").rglob("*"))
    assert mtst.load(tmp_path / "export").predict(["Ada Lovelace flew to Paris."]) == expected
    capsys.readouterr()
    assert main(["predict", "-c", str(alone), "Ada Lovelace flew to Paris."]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {alone}: its weights are in "
                                                         f"{tmp_path / TENSOR_FOLDER}"), err


def counted_hashes(monkeypatch) -> tuple[list[tuple[int, ...]], Any]:
    """(the shapes the digest memo hashes, as it hashes them; the real hash function)."""
    from mtst.checkpoints import digests

    hashed: list[tuple[int, ...]] = []
    real_hash = digests.content_hash
    monkeypatch.setattr(digests, "content_hash",
                        lambda t: hashed.append(tuple(t.shape)) or real_hash(t))
    return hashed, real_hash


def finiteness_checks(monkeypatch) -> list[tuple[int, ...]]:
    """The shapes `torch.isfinite` is asked about, as it is asked."""
    checked: list[tuple[int, ...]] = []
    real = torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda t: checked.append(tuple(t.shape)) or real(t))
    return checked


def test_the_digest_memo_hashes_an_unchanged_tensor_once_and_sees_every_change(monkeypatch) -> None:
    from mtst.checkpoints import digests

    hashed, real_hash = counted_hashes(monkeypatch)
    memo = digests.DigestMemo()
    param = torch.nn.Parameter(torch.randn(64, 32))
    first = memo.digest("w", param)
    assert memo.digest("w", param.detach().clone()) == first and len(hashed) == 1
    torch.optim.AdamW([param], lr=0.1).zero_grad()
    param.grad = torch.randn_like(param)
    torch.optim.AdamW([param], lr=0.1, fused=True).step()  # writes in place
    assert memo.digest("w", param) == real_hash(param) != first and len(hashed) == 2
    with torch.no_grad():
        param.data.view(-1)[7] = -0.0 if float(param.view(-1)[7]) == 0.0 else 0.0  # one element
    assert memo.digest("w", param) == real_hash(param) and len(hashed) == 3
    # the same bytes under another dtype or shape are another tensor
    assert memo.digest("w", param.detach().view(torch.int32)) == real_hash(param.detach().view(torch.int32))
    assert memo.digest("w", param.detach().reshape(32, 64)) == real_hash(param.detach().reshape(32, 64))
    small = digests.DigestMemo(max_bytes=64 * 32 * 4 - 1)  # too small to remember
    for _ in range(2):
        assert small.digest("w", param) == real_hash(param)
    assert len(hashed) == 7


def test_a_frozen_tensor_is_hashed_once_without_a_copy_and_every_write_is_seen(monkeypatch) -> None:
    from mtst.checkpoints import digests

    hashed, real_hash = counted_hashes(monkeypatch)
    memo = digests.DigestMemo()
    weight = torch.nn.Parameter(torch.randn(64, 32), requires_grad=False)
    first = memo.digest("w", weight, frozen=True)
    for _ in range(3):  # a state dict hands out a fresh detached view at every save
        assert memo.digest("w", weight.detach(), frozen=True) == first
    assert len(hashed) == 1 and memo._bytes == 0  # no copy of a frozen tensor is kept
    with torch.no_grad():
        weight.copy_(torch.randn(64, 32))  # as load_state_dict does
    assert memo.digest("w", weight, frozen=True) == real_hash(weight) != first and len(hashed) == 2
    with torch.no_grad():  # one element, through a view
        weight.view(-1)[7] = -0.0 if float(weight.view(-1)[7]) == 0.0 else 0.0
    assert memo.digest("w", weight, frozen=True) == real_hash(weight) and len(hashed) == 3
    assert memo.digest("w", weight.detach().clone(), frozen=True) == real_hash(weight)  # another
    assert len(hashed) == 4                                                          # tensor


def test_a_frozen_tensor_saved_under_saved_tensor_hooks_is_hashed_at_every_save(monkeypatch) -> None:
    from mtst.checkpoints import digests

    hashed, real_hash = counted_hashes(monkeypatch)
    memo = digests.DigestMemo()
    weight = torch.randn(64, 32)
    with torch.autograd.graph.save_on_cpu():  # no write watch can be made: nothing is trusted
        first = memo.digest("w", weight, frozen=True)
        assert memo.digest("w", weight, frozen=True) == first and len(hashed) == 2
        weight.add_(1.0)
        assert memo.digest("w", weight, frozen=True) == real_hash(weight) != first
    assert len(hashed) == 3 and memo._bytes == 0


def test_a_tensor_trained_before_its_freeze_is_compared_not_trusted(monkeypatch) -> None:
    from mtst.checkpoints import digests

    memo = digests.DigestMemo()
    param = torch.nn.Parameter(torch.randn(64, 32))
    memo.digest("w", param, frozen=False)
    param.grad = torch.randn_like(param)
    torch.optim.AdamW([param], lr=0.1, fused=True).step()  # writes without a version bump
    # frozen from now on: its first frozen save compares the bytes with those last hashed
    assert memo.digest("w", param, frozen=True) == digests.content_hash(param)


def test_collecting_reads_only_checkpoints_it_did_not_write_itself(tmp_path, monkeypatch) -> None:
    from mtst.checkpoints import tensor_store

    reads: list[str] = []
    real_read = tensor_store.referenced_digests
    monkeypatch.setattr(tensor_store, "referenced_digests",
                        lambda path: reads.append(path.name) or real_read(path))
    io = AtomicCheckpointIO(min_bytes=SMALL)
    io.save_checkpoint(checkpoint(state(0)), tmp_path / "best.ckpt")
    io.save_checkpoint(checkpoint(state(1)), tmp_path / "last.ckpt")
    io.save_checkpoint(checkpoint(state(2)), tmp_path / "last.ckpt")
    assert reads == []  # each checkpoint is known from its own save
    # what the files hold decides: the first last.ckpt's own tensors are gone
    kept = referenced_digests(tmp_path / "best.ckpt") | referenced_digests(tmp_path / "last.ckpt")
    assert tensor_files(tmp_path) == {f"{d}.safetensors" for d in kept}
    assert content_hash(state(1)["encoder.weight"]) not in kept
    # a checkpoint replaced behind the writer's back (another process, a copy) is read again
    other = AtomicCheckpointIO(min_bytes=SMALL)
    other.save_checkpoint(checkpoint(state(3)), tmp_path / "other" / "best.ckpt")
    shutil.copy(tmp_path / "other" / "best.ckpt", tmp_path / "best.ckpt")
    shutil.copy(tmp_path / "other" / TENSOR_FOLDER / f"{content_hash(state(3)['encoder.weight'])}.safetensors",
                tmp_path / TENSOR_FOLDER)
    io.save_checkpoint(checkpoint(state(4)), tmp_path / "last.ckpt")
    assert reads == ["best.ckpt"]
    assert content_hash(state(0)["encoder.weight"]) not in referenced_digests(tmp_path / "best.ckpt")
    assert f"{content_hash(state(0)['encoder.weight'])}.safetensors" not in tensor_files(tmp_path)
