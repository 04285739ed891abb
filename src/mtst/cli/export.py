"""`mtst export --checkpoint CKPT --out DIR`: the trained model for use outside mtst's training.

    DIR/sentence-transformers/   SentenceTransformer("DIR/sentence-transformers") (the encoder)
    DIR/mtst/                    mtst.load("DIR") (encoder, topic head, NER head, labels)
    DIR/README.md                the model card: labels, training data, metrics, limitations
    DIR/onnx/                    with --onnx: model.onnx (and model_int8.onnx with --quantize int8)
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", "-c", required=True, metavar="CKPT",
                        help="a .ckpt file, a run folder, or an earlier export")
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="folder to create")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace DIR if it exists (only once the new export is complete)")
    parser.add_argument("--onnx", action="store_true",
                        help="also write DIR/onnx/model.onnx (encoder, pooling and every head)")
    parser.add_argument("--quantize", choices=("int8",),
                        help="with --onnx: also write the dynamically quantised int8 graph")


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from mtst.inference.export import export

    hf_logging.disable_progress_bar()
    paths = export(args.checkpoint, args.out, overwrite=args.overwrite, onnx=args.onnx,
                   quantize=args.quantize)
    print(f"wrote {paths['sentence-transformers']}  (SentenceTransformer(\"{paths['sentence-transformers']}\"))")
    print(f"wrote {paths['mtst']}  (mtst.load(\"{args.out}\"), mtst predict --checkpoint {args.out})")
    print(f"wrote {paths['card']}  (the model card)")
    for kind in ("fp32", "int8"):
        if f"onnx-{kind}" in paths:
            flag = ", quantized=True" if kind == "int8" else ""
            print(f"wrote {paths[f'onnx-{kind}']}  (mtst.load(\"{args.out}\", backend=\"onnx\"{flag}))")
    return 0
