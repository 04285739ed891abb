"""Row 5: `SentenceEncoder.encode` against sentence-transformers on the same MiniLM folder.

Both encode the same AG News titles in this process, alternating (mtst, sentence-transformers,
mtst, ...) after one warm-up pass each; the ratio is the median of per-round ratios
(mtst sentences/s over sentence-transformers sentences/s), and the cosine is the smallest
cosine between the two embeddings of any title (both L2-normalised, fp32, batch 32).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import MINILM, Budget, torch_profile
from benchmarks.memory import ag_titles


def run(budget: Budget, data_dir: Path, batch_size: int = 32) -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer

    from benchmarks.encode_compare import compare
    from mtst.model.backbone import resolve_name_or_path
    from mtst.model.encoder import SentenceEncoder

    path = resolve_name_or_path(MINILM)
    st = SentenceTransformer(path, device="cpu")
    st.eval()
    encoder = SentenceEncoder.from_pretrained(path, pooling="mean", max_length=st.max_seq_length)
    titles = ag_titles(data_dir)
    if budget.encode_sentences:
        titles = titles[: budget.encode_sentences]

    def run_mtst(texts: list[str]) -> np.ndarray:
        return encoder.encode(texts, batch_size=batch_size, normalize=True, show_progress_bar=False)

    def run_st(texts: list[str]) -> np.ndarray:
        return st.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                         convert_to_numpy=True, show_progress_bar=False)

    warm = titles[:256]
    run_mtst(warm), run_st(warm)
    compared = compare(lambda: run_mtst(titles), lambda: run_st(titles), len(titles),
                       budget.encode_repeats)
    result: dict[str, Any] = {
        "sentences": len(titles), "batch_size": batch_size, "repeats": budget.encode_repeats,
        "threads": torch.get_num_threads(), **compared, "target_ratio": 1.0, "target_cosine": 0.9999,
    }
    if result["ratio"] < 1.0:
        sample = titles[:512]
        result["profile_mtst"] = torch_profile(lambda: run_mtst(sample))
        result["profile_st"] = torch_profile(lambda: run_st(sample))
    return result
