"""A reference run shared by the resume tests (tiny backbone, 2 x 3 steps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtst.training.entry import train
from tests.conftest import SAVE_EVERY_STEP, TINY_TRAIN, compose_config

TOTAL_STEPS = 6
RESUME_RUN = TINY_TRAIN + [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    *SAVE_EVERY_STEP,
    "~callbacks.lr_monitor",
    "trainer.limit_val_batches=1",
    "run_test=false",  # the slow CLI tests cover test metrics; weights are compared exactly
]


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    out = tmp_path_factory.mktemp("reference")
    return out, train(compose_config(out, RESUME_RUN))
