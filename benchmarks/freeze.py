"""Row 4: `freeze=backbone` epoch time with and without the feature cache.

Runs `benchmarks/freeze_cache.py::run_side` (the real config, same seed, data and batches on
both sides; an epoch clock times each epoch with its validation pass and its training part) on
a CoNLL-2003 subset: the first `freeze_examples` train sentences, the first eighth as many validation ones.
The speed-up is the median epoch time of epochs 2.. without the cache over the same with it
(epoch 1 computes the encoder outputs on both sides).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.common import Budget, scratch_dir


def run(budget: Budget, data: dict[str, Path]) -> dict[str, Any]:
    from benchmarks.freeze_cache import run_side, speedups

    conll = data["conll2003"]
    val_examples = max(1, budget.freeze_examples // 8)
    overrides = [
        "data=conll_agnews",
        "~tasks.topic",  # the `ner` task alone, on CoNLL-2003
        f"tasks.ner.train_files=[{{path:'{conll / 'train.txt'}',stop:{budget.freeze_examples}}}]",
        f"tasks.ner.val_files=[{{path:'{conll / 'valid.txt'}',stop:{val_examples}}}]",
        "tasks.ner.test_files=null",
    ]
    args = argparse.Namespace(backbone="minilm", epochs=budget.freeze_epochs, batch_size=32,
                              cache_dtype="float16", overrides=overrides)
    sides = {}
    with scratch_dir("freeze") as tmp:
        for side in ("plain", "cache"):
            result = run_side(Path(tmp) / side, side == "cache", args)
            result.pop("head_weights", None)
            sides[side] = result
    plain, cache = sides["plain"], sides["cache"]
    return {"examples": budget.freeze_examples, "val_examples": val_examples,
            "epochs": budget.freeze_epochs, "batch_size": 32, "cache_dtype": "float16",
            "no_cache": plain, "cache": cache, **speedups(plain, cache), "target_speedup": 10.0}
