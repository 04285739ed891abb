"""Row 8: read + validate + tokenise k copies of CoNLL-2003 train, one fresh process per k.

    python -m benchmarks.scale --factor 10 --data-dir ../shared/data [--profile]

The child writes k back-to-back copies of train.txt to a temporary file (not timed), then times
`load_split` (read + validate) and `encode_examples` (tokenise + align labels, what the
DataModule's setup does once per split), and reports its resident memory before and its peak
after. The parent fits time and memory per copy on the largest two factors and projects 1000x;
it runs 1000x only when the projection fits comfortably in memory and time.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    MINILM,
    Budget,
    current_rss_mib,
    emit,
    peak_rss_mib,
    python_profile,
    quiet_environment,
    reset_peak_rss,
    run_child,
    scratch_dir,
)

BIG = 1000


def mem_total_mib() -> tuple[float, float]:
    with open("/proc/meminfo") as handle:
        info = {line.split(":")[0]: int(line.split()[1]) for line in handle}
    return info["MemTotal"] / 1024, info.get("MemAvailable", info["MemFree"]) / 1024


def child(data_dir: Path, factor: int, profile: bool, gc_off: bool = False) -> dict[str, Any]:
    from mtst.data.alignment import encode_examples
    from mtst.data.readers import SourceSpec
    from mtst.data.validation import infer_label_space, load_split
    from mtst.model.backbone import load_tokenizer

    tokenizer = load_tokenizer(MINILM)
    text = (data_dir / "conll2003" / "train.txt").read_text(encoding="utf-8")
    with scratch_dir("scale") as tmp:
        path = Path(tmp) / "train_x.txt"
        with path.open("w", encoding="utf-8") as handle:
            for _ in range(factor):
                handle.write(text.rstrip("\n") + "\n\n")
        del text
        base = current_rss_mib()
        reset_peak_rss()
        specs = [SourceSpec.parse(str(path))]
        if gc_off:
            gc.disable()
        start = time.perf_counter()
        examples = load_split(specs, "train")
        read_s = time.perf_counter() - start
        after_read = current_rss_mib()
        space = infer_label_space(examples, None, None)
        start = time.perf_counter()
        items = encode_examples(examples, tokenizer, space, 128)
        tok_s = time.perf_counter() - start
        gc.enable()
        result = {"factor": factor, "gc_off": gc_off, "sentences": len(items),
                  "file_mb": path.stat().st_size / 2**20,
                  "read_validate_s": read_s, "tokenise_s": tok_s, "total_s": read_s + tok_s,
                  "rss_base_mib": base, "rss_after_read_mib": after_read,
                  "rss_after_tokenise_mib": current_rss_mib(), "peak_rss_mib": peak_rss_mib()}
        if profile:
            result["profile"] = python_profile(
                lambda: encode_examples(load_split(specs, "train"), tokenizer, space, 128))
    return result


def run(budget: Budget, data_dir: Path) -> dict[str, Any]:
    points = []
    for factor in budget.scale_factors:
        args = ["--factor", str(factor), "--data-dir", str(data_dir)]
        if factor == 1:
            args.append("--profile")
        points.append(run_child("benchmarks.scale", args, timeout=3600))
    probe = 10 if 10 in budget.scale_factors else budget.scale_factors[-1]
    gc_off = run_child("benchmarks.scale", ["--factor", str(probe), "--data-dir", str(data_dir),
                                            "--no-gc"], timeout=3600)
    total, available = mem_total_mib()
    result: dict[str, Any] = {"points": points, "gc_off": gc_off, "mem_total_mib": total,
                              "mem_available_mib": available}
    if len(points) >= 2:
        a, b = points[-2], points[-1]
        copies = b["factor"] - a["factor"]
        s_per_copy = (b["total_s"] - a["total_s"]) / copies
        mib_per_copy = (b["peak_rss_mib"] - a["peak_rss_mib"]) / copies
        projected_mib = b["peak_rss_mib"] + mib_per_copy * (BIG - b["factor"])
        projected_s = b["total_s"] + s_per_copy * (BIG - b["factor"])
        limit = int((0.8 * total - b["rss_base_mib"]) / mib_per_copy) if mib_per_copy > 0 else None
        result.update({"s_per_copy": s_per_copy, "mib_per_copy": mib_per_copy,
                       "projected_1000x_peak_mib": projected_mib, "projected_1000x_s": projected_s,
                       "copies_fitting_80pct_ram": limit})
        if budget.name == "full" and projected_mib < 0.6 * available and projected_s < 900:
            points.append(run_child("benchmarks.scale", ["--factor", str(BIG), "--data-dir",
                                                         str(data_dir)], timeout=3600))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-gc", action="store_true", help="pause the cyclic GC while loading")
    args = parser.parse_args(argv)
    quiet_environment()
    emit(child(args.data_dir, args.factor, args.profile, args.no_gc))


if __name__ == "__main__":
    main()
