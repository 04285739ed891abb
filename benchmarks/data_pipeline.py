"""A tool: data-pipeline throughput, padding with and without bucketing, peak memory.

    python -m benchmarks.data_pipeline                       # data/sample, MiniLM tokenizer
    python -m benchmarks.data_pipeline --conll ../shared/data/conll2003/train.txt
    python -m benchmarks.data_pipeline --files a.jsonl b.csv --tokenizer path/to/tokenizer --kinds label

Throughput covers read + validate + tokenise + align (`MultiTaskDataModule.dataset`, what `setup`
does once per split); every file is read once per task kind asked for.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from benchmarks.common import MINILM, ROOT, token_shares
from benchmarks.machine import peak_rss_mib
from mtst.data.batching import MultiTaskBatchSampler
from mtst.data.datamodule import MultiTaskDataModule
from mtst.data.tasks import TaskData
from mtst.errors import MtstError

TASK_NAMES = {"label": "topic", "tags": "ner"}


def padded_share(lengths: list[int], sources: list[int], batch_size: int, bucket: bool,
                 sampling: str) -> float:
    sampler = MultiTaskBatchSampler(lengths, sources, batch_size, sampling=sampling,
                                    bucket_by_length=bucket, seed=0)
    return 1 - token_shares(lengths, sampler.batches_for_epoch(0))["real_token_share"]


def run(argv: list[str] | None = None) -> dict[str, float]:
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
    args = p.parse_args(argv)
    files = args.files or [str(ROOT / "data" / "sample" / f"{s}.jsonl") for s in ("train", "val", "test")]
    if args.conll:
        path = Path(args.conll)
        files = [str(f) for f in sorted(path.iterdir()) if f.suffix in (".txt", ".conll")] \
            if path.is_dir() else [str(path)]
    kinds = args.kinds or (["tags"] if args.conll else ["label", "tags"])
    tasks = {TASK_NAMES[k]: TaskData.parse(TASK_NAMES[k], k, {"train_files": files}) for k in kinds}
    from mtst.model.backbone import load_tokenizer

    try:
        tokenizer = load_tokenizer(args.tokenizer or MINILM)
    except Exception as err:  # no --tokenizer and MiniLM's package not installed
        raise MtstError(f"no tokenizer: {err}") from err
    times = []
    for _ in range(max(1, args.repeats)):
        start = time.perf_counter()
        dm = MultiTaskDataModule(tasks, max_length=args.max_length, batch_size=args.batch_size,
                                 tokenizer=tokenizer)
        ds = dm.dataset("train")
        times.append(time.perf_counter() - start)
    lengths, sources = ds.lengths.tolist(), ds.sources.tolist()
    result = {
        "sentences": len(ds), "words": int(ds.word_offsets[-1]), "sub-tokens": sum(lengths),
        "truncated examples": dm.stats["train"].truncated_examples,
        "sentences/s (median)": len(ds) / statistics.median(times),
        "padded share, no bucketing": padded_share(lengths, sources, args.batch_size, False, args.sampling),
        "padded share, bucketing": padded_share(lengths, sources, args.batch_size, True, args.sampling),
        "peak RSS (MiB)": peak_rss_mib(),
    }
    print(f"corpus: {', '.join(files)}\ntokenizer: {args.tokenizer or MINILM}  max_length="
          f"{args.max_length}  batch_size={args.batch_size}  repeats={len(times)}")
    width = max(len(k) for k in result)
    print(f"{'metric':<{width}}  value\n{'-' * width}  {'-' * 12}")
    for key, value in result.items():
        shown = (f"{value:.1%}" if "share" in key else f"{value:,.1f}" if isinstance(value, float)
                 else f"{value:,}")
        print(f"{key:<{width}}  {shown}")
    return result


if __name__ == "__main__":
    try:
        run()
    except MtstError as err:
        sys.exit(f"error: {err}")
