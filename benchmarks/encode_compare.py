"""Row 5, and a tool: `SentenceEncoder.encode` against sentence-transformers on the same model.

    python -m benchmarks.encode_compare                      # offline MiniLM, AG News titles if present
    python -m benchmarks.encode_compare --n 2000 --repeats 5 --batch-size 64 [--threads 1]

Both encode the same sentences in this process, taking turns after a warm-up; the tool reads AG
News test titles from ../shared/data when present, else the texts of data/sample/*.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DEFAULT_DATA, MINILM, ROOT, Budget, ag_titles, median
from benchmarks.machine import torch_profile


def encoders(model: str = MINILM, device: str = "cpu") -> tuple[Any, Any]:
    """`encode(texts, batch_size)` of mtst and of sentence-transformers on the same folder."""
    from sentence_transformers import SentenceTransformer

    from mtst.model.backbone import resolve_name_or_path
    from mtst.model.encoder import SentenceEncoder

    path = resolve_name_or_path(model)
    st = SentenceTransformer(path, device=device).eval()
    ours = SentenceEncoder.from_pretrained(path, pooling="mean",
                                           max_length=st.max_seq_length).to(device).eval()
    return (lambda texts, bs: ours.encode(texts, batch_size=bs, normalize=True,
                                          show_progress_bar=False),
            lambda texts, bs: st.encode(texts, batch_size=bs, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False))


def compare(run_mtst: Callable[[], np.ndarray], run_st: Callable[[], np.ndarray], n: int,
            repeats: int, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The two encoders in turn `repeats` times on the same `n` sentences: throughput per round,
    mtst / sentence-transformers ratios (also by CPU time, which a shared machine stretches less),
    and the smallest cosine between the two embeddings of a sentence."""
    rounds = []
    for _ in range(repeats):
        marks = [(time.perf_counter(), time.process_time())]
        a = run_mtst()
        marks.append((time.perf_counter(), time.process_time()))
        b = run_st()
        marks.append((time.perf_counter(), time.process_time()))
        (w0, c0), (w1, c1), (w2, c2) = marks
        rounds.append((n / (w1 - w0), n / (w2 - w1), (c2 - c1) / (c1 - c0),
                       float(np.min(np.sum(a * b, axis=1)))))
        if log:
            log("round {}: mtst {:.1f}/s, sentence-transformers {:.1f}/s, CPU-time ratio {:.3f}, "
                "min cosine {:.6f}".format(len(rounds), *rounds[-1]))
    mtst, st, cpu, cos = (list(x) for x in zip(*rounds, strict=True))
    ratios = [a / b for a, b in zip(mtst, st, strict=True)]
    return {"mtst_per_s": median(mtst), "st_per_s": median(st), "mtst_rates": mtst,
            "st_rates": st, "ratio": median(ratios), "ratio_per_round": ratios,
            "cpu_ratio": median(cpu), "min_cosine": min(cos)}


def run(budget: Budget, data_dir: Path, batch_size: int = 32) -> dict[str, Any]:
    import torch

    ours, theirs = encoders()
    titles = ag_titles(data_dir, budget.encode_sentences)
    ours(titles[:256], batch_size), theirs(titles[:256], batch_size)  # warm-up
    result: dict[str, Any] = {
        "sentences": len(titles), "batch_size": batch_size, "repeats": budget.encode_repeats,
        "threads": torch.get_num_threads(), "target_ratio": 1.0, "target_cosine": 0.9999,
        **compare(lambda: ours(titles, batch_size), lambda: theirs(titles, batch_size),
                  len(titles), budget.encode_repeats)}
    if result["ratio"] < 1.0:
        result["profile_mtst"] = torch_profile(lambda: ours(titles[:512], batch_size))
        result["profile_st"] = torch_profile(lambda: theirs(titles[:512], batch_size))
    return result


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=MINILM, help="backbone (default: offline MiniLM)")
    parser.add_argument("--n", type=int, default=2000, help="number of sentences (0 = all)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if (DEFAULT_DATA / "ag_news" / "test.csv").is_file():
        texts = ag_titles(DEFAULT_DATA)
    else:
        texts = [json.loads(line)["text"] for path in sorted((ROOT / "data" / "sample").glob("*.jsonl"))
                 for line in path.read_text("utf-8").splitlines() if line]
    texts = (texts * (args.n // len(texts) + 1))[: args.n] if args.n else texts
    ours, theirs = encoders(args.model, args.device)
    ours(texts, args.batch_size), theirs(texts, args.batch_size)  # warm-up
    print(f"{len(texts)} sentences; batch {args.batch_size}; device {args.device}; "
          f"torch threads {torch.get_num_threads()}; fp32")
    result = compare(lambda: ours(texts, args.batch_size), lambda: theirs(texts, args.batch_size),
                     len(texts), args.repeats, log=print)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
