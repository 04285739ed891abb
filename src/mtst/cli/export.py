"""`mtst export --checkpoint CKPT --out DIR`: the trained model for use outside mtst's training.

    DIR/sentence-transformers/   SentenceTransformer("DIR/sentence-transformers") (the encoder)
    DIR/mtst/                    mtst.load("DIR") (encoder, topic head, NER head, labels)
    DIR/README.md                the model card: labels, training data, metrics, limitations
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", "-c", required=True, metavar="CKPT",
                        help="a .ckpt file, a run folder, or an earlier export")
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="folder to create")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace DIR if it exists (only once the new export is complete)")


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from mtst.inference.export import export

    hf_logging.disable_progress_bar()
    paths = export(args.checkpoint, args.out, overwrite=args.overwrite)
    print(f"wrote {paths['sentence-transformers']}  (SentenceTransformer(\"{paths['sentence-transformers']}\"))")
    print(f"wrote {paths['mtst']}  (mtst.load(\"{args.out}\"), mtst predict --checkpoint {args.out})")
    print(f"wrote {paths['card']}  (the model card)")
    return 0
