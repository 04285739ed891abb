"""Row 6: peak resident memory of a training run and of streamed encoding, each in its own process.

    python -m benchmarks.memory train --steps 60 --data-dir ../shared/data
    python -m benchmarks.memory encode --n 100000 --data-dir ../shared/data

A fresh process per measurement gives a clean peak (VmHWM); each child prints one JSON line.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks import common, machine


def child_train(data_dir: Path, steps: int, test_batches: int) -> dict[str, Any]:
    """A real run through `mtst.training.entry.train` (fit, then test), MiniLM, CoNLL + AG News."""
    from mtst.training.entry import train

    common.use_data_dir(data_dir)
    base = machine.rss_mib()
    with common.scratch_dir("memtrain") as tmp:
        cfg = common.compose(Path(tmp), [*common.BENCH_OVERRIDES, f"++trainer.max_steps={steps}",
                                         "trainer.max_epochs=-1", "trainer.limit_val_batches=0",
                                         f"trainer.limit_test_batches={test_batches}"])
        start = time.perf_counter()
        train(cfg)
    return {"steps": steps, "test_batches": test_batches, "seconds": time.perf_counter() - start,
            "rss_after_imports_mib": base, "peak_rss_mib": machine.peak_rss_mib()}


def child_encode(data_dir: Path, n: int, batch_size: int = 32) -> dict[str, Any]:
    """Embed `n` sentences (AG News titles, cycled) with `iter_encode`: one batch held at a time."""
    import torch

    from mtst.model.encoder import SentenceEncoder

    titles = common.ag_titles(data_dir)
    encoder = SentenceEncoder.from_pretrained(common.MINILM, pooling="mean", max_length=128)
    texts = [titles[i % len(titles)] for i in range(n)]
    base, load_peak = machine.rss_mib(), machine.peak_rss_mib()
    machine.reset_peak_rss()
    total, seen = torch.zeros(encoder.hidden_size), 0
    start = time.perf_counter()
    for index, emb in encoder.iter_encode(texts, batch_size=batch_size, show_progress_bar=False):
        total += emb.sum(0)
        seen += len(index)
    seconds = time.perf_counter() - start
    return {"sentences": seen, "seconds": seconds, "sentences_per_s": seen / seconds,
            "rss_after_load_mib": base, "peak_rss_mib": max(load_peak, machine.peak_rss_mib()),
            "peak_rss_while_encoding_mib": machine.peak_rss_mib(), "checksum": float(total.norm())}


def run(budget: common.Budget, data_dir: Path) -> dict[str, Any]:
    test_batches = str(2 if budget.name == "quick" else 20)
    return {"train": common.run_child("benchmarks.memory", [
                "train", "--steps", str(budget.memory_train_steps), "--data-dir", str(data_dir),
                "--test-batches", test_batches], timeout=1800),
            "encode": [common.run_child("benchmarks.memory", [
                "encode", "--n", str(n), "--data-dir", str(data_dir)], timeout=3600)
                for n in budget.memory_encode]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("train", "encode"))
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--test-batches", type=int, default=20)
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args(argv)
    common.quiet_environment()
    common.emit(child_train(args.data_dir, args.steps, args.test_batches) if args.what == "train"
                else child_encode(args.data_dir, args.n))


if __name__ == "__main__":
    main()
