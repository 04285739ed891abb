"""Regenerate the README pictures: docs/images/{pca,tsne,similarity}.png.

    python scripts/make_showcase_images.py

Trains nothing: the pretrained offline MiniLM (backbone=minilm, mean pooling) embeds the labelled
sentences of data/showcase.txt. The same pictures come from the command line with

    mtst plot-embeddings --model minilm --input data/showcase.txt --out docs/images --no-projector
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mtst.cli.main import main as mtst

    return mtst([
        "plot-embeddings", "--model", "minilm",
        "--input", str(ROOT / "data" / "showcase.txt"),
        "--out", str(ROOT / "docs" / "images"),
        "--no-projector", "--seed", "0", "--device", "cpu",
    ])


if __name__ == "__main__":
    sys.exit(main())
