"""Row 8: read + validate + tokenise k copies of CoNLL-2003 train, one fresh process per k.

    python -m benchmarks.scale --factor 10 --data-dir ../shared/data [--store] [--profile]

The split is held in memory or, with `--store`, memory-mapped (`data.store_dir`); the parent takes
the marginal cost of a copy between consecutive factors, which stays flat if loading is linear.
"""

from __future__ import annotations

import argparse
import time
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

from benchmarks import common, machine

BIG = 1000
FIRST_BATCHES = 50
CONLL_TYPES = ["PER", "LOC", "ORG", "MISC"]  # the `ner` task of conf/data/conll_agnews.yaml


def child(data_dir: Path, factor: int, store: bool, profile: bool) -> dict[str, Any]:
    from mtst.data.datamodule import MultiTaskDataModule
    from mtst.data.tasks import TaskData
    from mtst.model.backbone import load_tokenizer

    tokenizer = load_tokenizer(common.MINILM)
    text = (data_dir / "conll2003" / "train.txt").read_text(encoding="utf-8").rstrip("\n") + "\n\n"
    with common.scratch_dir("scale") as tmp:
        path = Path(tmp) / "train_x.txt"
        with path.open("w", encoding="utf-8") as handle:
            for _ in range(factor):
                handle.write(text)
        del text

        def datamodule(store_dir: Path | None) -> MultiTaskDataModule:
            ner = TaskData.parse("ner", "tags", {"train_files": [str(path)], "labels": CONLL_TYPES})
            return MultiTaskDataModule({"ner": ner}, max_length=128, batch_size=32,
                                       store_dir=store_dir, tokenizer=tokenizer)

        dm = datamodule(Path(tmp) / "store" if store else None)
        base, split = machine.rss_mib(), {k: machine.rss_mib(k.capitalize()) for k in ("anon", "file")}
        machine.reset_peak_rss()
        start = time.perf_counter()
        ds = dm.dataset("train")
        load_s, after_load, load_peak = time.perf_counter() - start, machine.rss_mib(), machine.peak_rss_mib()
        machine.reset_peak_rss()
        start = time.perf_counter()
        loader = dm.train_dataloader()
        epoch_batches = len(loader)  # builds the epoch's order
        order_s, order_peak = time.perf_counter() - start, machine.peak_rss_mib()
        start = time.perf_counter()
        batches = sum(1 for _ in islice(loader, FIRST_BATCHES))
        folder = ds.folder and sum(f.stat().st_size for f in ds.folder.rglob("*") if f.is_file())
        result = {"factor": factor, "store": store, "sentences": len(ds),
                  "tokens": int(ds.token_offsets[-1]), "file_mb": path.stat().st_size / 2**20,
                  "store_mib": (folder or ds.nbytes()) / 2**20, "load_s": load_s,
                  "rss_base_mib": base, "rss_after_load_mib": after_load,
                  "load_peak_rss_mib": load_peak, "epoch_batches": epoch_batches,
                  "order_s": order_s, "order_extra_mib": order_peak - after_load,
                  "first_batches": batches, "first_batches_s": time.perf_counter() - start,
                  "peak_rss_mib": max(load_peak, machine.peak_rss_mib()),
                  **{f"rss_{k}_growth_mib": machine.rss_mib(k.capitalize()) - v
                     for k, v in split.items()}}
        if profile:
            result["profile"] = machine.python_profile(lambda: datamodule(None).dataset("train"))
    return result


def marginal(points: list[dict[str, Any]], key: str) -> list[float]:
    """Cost of one more copy between consecutive factors: (y_b - y_a) / (k_b - k_a)."""
    return [(b[key] - a[key]) / (b["factor"] - a["factor"]) for a, b in pairwise(points)]


def run(budget: common.Budget, data_dir: Path) -> dict[str, Any]:
    def measure(factor: int, store: bool) -> dict[str, Any]:
        args = ["--factor", str(factor), "--data-dir", str(data_dir)]
        args += ["--store"] if store else (["--profile"] if factor == 1 else [])
        return common.run_child("benchmarks.scale", args, timeout=3600)

    points = [measure(f, False) for f in budget.scale_factors]
    stored = [measure(f, True) for f in budget.scale_store_factors]
    total, available = machine.mem_total_mib()
    result: dict[str, Any] = {"points": points, "stored": stored, "mem_total_mib": total,
                              "mem_available_mib": available, "first_batches": FIRST_BATCHES}
    # linear growth = a constant marginal cost per copy: the last step's over the one before
    for name, series in (("memory", points), ("store", stored)):
        if len(series) >= 3:
            steps = marginal(series, "load_s")
            result.update({f"{name}_time_per_copy_s": steps,
                           f"{name}_time_linearity": steps[-1] / steps[-2]})
    if len(points) >= 3:
        mem, last = marginal(points, "peak_rss_mib"), points[-1]
        result.update(memory_mib_per_copy=mem, memory_memory_linearity=mem[-1] / mem[-2],
                      projected_1000x_peak_mib=last["peak_rss_mib"] + mem[-1] * (BIG - last["factor"]),
                      copies_fitting_80pct_ram=int(last["factor"] + (0.8 * total - last["peak_rss_mib"])
                                                   / mem[-1]) if mem[-1] > 0 else None)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--store", action="store_true", help="write the split to disk, memory-mapped")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    common.quiet_environment()
    common.emit(child(args.data_dir, args.factor, args.store, args.profile))


if __name__ == "__main__":
    main()
