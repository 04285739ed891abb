"""Same seed and config -> bit-identical metrics and weights on CPU."""

from __future__ import annotations

import json

import torch

from mtst.training.pipeline import train
from tests.conftest import compose_config
from tests.reliability.conftest import RESUME_RUN


def test_two_runs_with_the_same_seed_are_bit_identical(reference_run, tmp_path) -> None:
    first, _ = reference_run
    train(compose_config(tmp_path, RESUME_RUN))
    a = json.loads((first / "metrics.json").read_text())["metrics"]
    b = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert a == b  # exact float equality, every key
    assert {"val/score", "val/ner_f1", "val/cls_acc"} <= a.keys()
    wa = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    wb = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
