"""`mtst predict`: each task's answer for texts (topic, entity spans, ...), one JSON line per text.

    mtst predict --checkpoint logs/runs/<run>/checkpoints/best.ckpt "Ada Lovelace flew to Paris."
    mtst predict --checkpoint export/ --input texts.txt --output predictions.jsonl
    echo "Parliament votes today" | mtst predict --checkpoint export/
    mtst predict --untrained minilm "Heads are random before training."
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from mtst.errors import MtstError

CHUNK = 512  # texts predicted per step: output starts early, memory stays flat


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", "-c", metavar="CKPT_OR_DIR",
                        help="a .ckpt file, a run folder, or a folder written by `mtst export`")
    source.add_argument("--untrained", metavar="BACKBONE",
                        help="no training: this backbone (e.g. minilm) with random heads and the "
                             "default labels, to see the output format")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to predict")
    parser.add_argument("--input", "-i", metavar="FILE",
                        help=".txt (one text per line) or .jsonl (one object with a text field per line)")
    parser.add_argument("--text-field", default="text", help="JSONL field holding the text (default: text)")
    parser.add_argument("--output", "-o", metavar="FILE.jsonl", help="write here instead of stdout")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="head initialisation for --untrained")


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MtstError(f"--device {name}: no CUDA device is available")
    return name


def gather_texts(args: argparse.Namespace) -> list[str]:
    """Positional texts, then the input file; stdin (one text per line) when neither is given."""
    from mtst.inference.inputs import read_texts, split_lines

    texts = list(args.texts)
    if args.input:
        texts += read_texts(args.input, args.text_field)
    if not args.texts and not args.input:
        if sys.stdin.isatty():
            print("reading texts from stdin, one per line (Ctrl-D to end)", file=sys.stderr)
        texts = split_lines(sys.stdin.read())
    return texts


def predictions(model, texts: list[str], batch_size: int) -> Iterator[str]:
    for start in range(0, len(texts), CHUNK):
        for result in model.predict(texts[start : start + CHUNK], batch_size=batch_size):
            yield json.dumps(result, ensure_ascii=False)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise MtstError("--batch-size must be at least 1")
    texts = gather_texts(args)  # bad input fails before the model loads
    if args.output and Path(args.output).is_dir():
        raise MtstError(f"--output '{args.output}' is a folder, expected a file path")
    from mtst.inference.loading import load, untrained

    device = resolve_device(args.device)
    if args.checkpoint:
        model = load(args.checkpoint, device=device)
    else:
        model = untrained(args.untrained, seed=args.seed).to(device)
    lines = predictions(model, texts, args.batch_size)
    if not args.output:
        for line in lines:
            print(line)
        return 0
    from mtst.files import atomic_file

    with atomic_file(args.output) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")
    print(f"wrote {len(texts)} prediction(s) to {args.output}", file=sys.stderr)
    return 0
