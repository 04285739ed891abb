"""`mtst plot-embeddings`: PCA, t-SNE and cosine-similarity pictures of sentence embeddings.

    mtst plot-embeddings --model minilm --input data/showcase.txt --out plots/
    mtst plot-embeddings --checkpoint logs/runs/<run>/checkpoints/best.ckpt \\
        --input data/showcase.txt --out plots/

Writes OUT/pca.png, OUT/tsne.png, OUT/similarity.png and TensorBoard projector files: in the run's
TensorBoard folder (<run>/tensorboard/projector) for a checkpoint inside a run, else OUT/projector.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtst.cli.predict import resolve_device
from mtst.errors import MtstError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", "-m", metavar="NAME_OR_PATH",
                        help="a backbone: conf/backbone name (minilm), HF model name or folder "
                             "(a sentence-transformers export too)")
    source.add_argument("--checkpoint", "-c", metavar="CKPT_OR_DIR",
                        help="a trained model: .ckpt, run folder or `mtst export` folder")
    parser.add_argument("--input", "-i", required=True, metavar="FILE",
                        help=".txt (one sentence per line, optionally `label<TAB>text`) or .jsonl")
    parser.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for the PNG files")
    parser.add_argument("--color-by", default="label", metavar="FIELD",
                        help="JSONL field (or the .txt tab prefix) to colour by; `none` for one colour")
    parser.add_argument("--text-field", default="text", help="JSONL field holding the text")
    parser.add_argument("--pooling", default=None,
                        help="pooling for --model (default: the folder's own, else mean)")
    parser.add_argument("--perplexity", type=float, default=30.0,
                        help="t-SNE perplexity (clamped below the number of sentences)")
    parser.add_argument("--tsne-iter", type=int, default=1000, help="t-SNE iterations (>= 250)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--annotate-max", type=int, default=30,
                        help="label points with their text when there are at most this many")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    projector = parser.add_mutually_exclusive_group()
    projector.add_argument("--projector-dir", default=None, help="where to write projector files")
    projector.add_argument("--no-projector", action="store_true", help="skip the projector files")


def run_log_folder(checkpoint: str) -> Path | None:
    """<run>/tensorboard for a checkpoint inside a training run folder, else None."""
    path = Path(checkpoint).resolve()
    if path.is_file() and path.parent.name == "checkpoints":
        run = path.parent.parent
    elif path.is_dir() and (path / "checkpoints").is_dir():
        run = path
    else:
        return None
    return run / "tensorboard" if (run / "tensorboard").is_dir() or (run / ".hydra").is_dir() else None


def load_encoder(args: argparse.Namespace):
    """The SentenceEncoder to embed with, and a short name for plot titles."""
    if args.checkpoint:
        from mtst.inference.loading import load

        return load(args.checkpoint).encoder, Path(args.checkpoint).name
    from mtst.inference.loading import backbone_settings
    from mtst.model.encoder import SentenceEncoder

    settings = backbone_settings(args.model)
    pooling = args.pooling or settings.pop("pooling", None)
    settings.pop("pooling", None)
    return SentenceEncoder.from_pretrained(**settings, pooling=pooling), args.model


def run(args: argparse.Namespace) -> int:
    from mtst.inference.inputs import read_labelled
    from mtst.inference.plots import MIN_SENTENCES, plot_embeddings

    if args.pooling and args.checkpoint:
        raise MtstError("--pooling applies to --model only; a checkpoint keeps its own pooling")
    label_field = None if args.color_by.lower() == "none" else args.color_by
    texts, labels = read_labelled(args.input, label_field, args.text_field)
    if len(texts) < MIN_SENTENCES:
        raise MtstError(f"{args.input}: plotting needs at least {MIN_SENTENCES} sentences, "
                        f"found {len(texts)}")
    projector = None
    if not args.no_projector:
        run_folder = run_log_folder(args.checkpoint) if args.checkpoint else None
        projector = args.projector_dir or (run_folder or Path(args.out)) / "projector"
    encoder, name = load_encoder(args)
    encoder = encoder.to(resolve_device(args.device))
    embeddings = encoder.encode(texts, batch_size=args.batch_size)
    result = plot_embeddings(embeddings, texts, labels, args.out, projector_dir=projector,
                             perplexity=args.perplexity, seed=args.seed, tsne_iter=args.tsne_iter,
                             annotate_max=args.annotate_max, title=name)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for kind, path in result.files.items():
        print(f"wrote {path}" + ("  (tensorboard --logdir " + str(path) + ")" if kind == "projector" else ""))
    return 0
