"""`mtst <command>`: the tools around a trained model. Each command lives in its own module
(`mtst.cli.<module>`) exposing `add_arguments(parser)` and `run(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from mtst.console import quiet_console
from mtst.errors import MtstError

COMMANDS = {
    # command: (module, one-line help)
    "export": ("export", "write a checkpoint as a sentence-transformers folder and an mtst folder"),
    "predict": ("predict", "topics and entity spans for texts, one JSON line each"),
    "plot-embeddings": ("plot_embeddings", "PCA, t-SNE and similarity pictures of sentence embeddings"),
    "report": ("report", "summarise a multirun folder as Markdown, CSV and a bar chart"),
    "serve": ("serve", "an HTTP endpoint for a trained model, with dynamic batching"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtst", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(command_module=module)
        _load(module).add_arguments(command)
    return parser


def _load(module: str):
    return importlib.import_module(f"mtst.cli.{module}")


def main(argv: list[str] | None = None) -> int:
    """User mistakes end with one `error:` line and exit code 2 (MTST_TRACEBACK=1 shows more)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_console()
    args = build_parser().parse_args(argv)
    try:
        return int(_load(args.command_module).run(args) or 0)
    except MtstError as err:
        if os.environ.get("MTST_TRACEBACK"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
