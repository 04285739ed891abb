"""Row 10: `encode` throughput of mtst's ONNX int8 backend against sentence-transformers' own.

One MiniLM export (`mtst export --onnx --quantize int8` of the offline all-MiniLM-L6-v2; the
heads do not take part in `encode`'s cost beyond two small matmuls) gives both sides the same
weights: mtst loads `OUT` with `backend="onnx", quantized=True`; sentence-transformers loads
`OUT/sentence-transformers` with `backend="onnx"` and quantises it with its own
`export_dynamic_quantized_onnx_model` (the config matching this CPU: avx512_vnni, avx512 or
avx2). Same AG News titles, batch 32, normalised, alternating rounds after a warm-up; the ratio is
the median of per-round ratios. Each int8 side is compared with its own fp32 torch model
(smallest cosine over the titles, target >= 0.99).

sentence-transformers' ONNX backend imports `optimum.onnxruntime` (package optimum-onnx). When it
cannot be imported, the row says why and compares against sentence-transformers' torch backend,
the fastest one it has here, so the figure is still there but is not the target's comparison.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Budget, median, scratch_dir
from benchmarks.memory import ag_titles
from benchmarks.onnx_check import row_cosines

BATCH = 32


def st_onnx_problem() -> str | None:
    """Why sentence-transformers' ONNX backend cannot run here, or None."""
    try:
        import optimum.onnxruntime  # noqa: F401
    except Exception as err:  # ImportError, or an optimum-onnx that does not fit this transformers
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return (f"`import optimum.onnxruntime` fails ({type(err).__name__}: {first}); its only "
                "release, optimum-onnx 0.1.0, requires transformers<4.58 and optimum~=2.1, while "
                "mtst requires transformers>=5")
    return None


def quantization_config() -> str:
    flags = Path("/proc/cpuinfo").read_text(encoding="utf-8") if Path("/proc/cpuinfo").is_file() else ""
    for name, flag in (("avx512_vnni", "avx512_vnni"), ("avx512", "avx512f"), ("avx2", "avx2")):
        if flag in flags:
            return name
    return "arm64"


def st_onnx_int8(folder: Path) -> tuple[Any, str]:
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    fp32 = SentenceTransformer(str(folder), device="cpu", backend="onnx")
    config = quantization_config()
    export_dynamic_quantized_onnx_model(fp32, config, str(folder))
    name = f"model_qint8_{config}.onnx"
    return SentenceTransformer(str(folder), device="cpu", backend="onnx",
                               model_kwargs={"file_name": name}), f"onnx/{name} ({config})"


def alternate(sides: dict[str, Any], texts: list[str], repeats: int) -> dict[str, list[float]]:
    """Sentences per second of each side per round, sides alternating inside every round."""
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(repeats):
        names = list(sides) if r % 2 == 0 else list(reversed(sides))  # ABBA: no side always first
        for name in names:
            started = time.perf_counter()
            sides[name](texts)
            rates[name].append(len(texts) / (time.perf_counter() - started))
    return rates


def run(budget: Budget, data_dir: Path, backbone: str = "minilm") -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer

    import mtst
    from mtst.inference.export import export_model
    from mtst.inference.loading import untrained

    titles = ag_titles(data_dir)
    if budget.onnx_speed_sentences:
        titles = titles[: budget.onnx_speed_sentences]
    threads = torch.get_num_threads()
    problem = st_onnx_problem()
    with scratch_dir("onnx-speed") as tmp:
        out = Path(tmp) / "export"
        export_model(untrained(backbone), out, onnx=True, quantize="int8")
        st_folder = Path(tmp) / "st"
        shutil.copytree(out / "sentence-transformers", st_folder)
        ours = mtst.load(out, backend="onnx", quantized=True, threads=threads)
        ours_fp32 = mtst.load(out)
        st_fp32 = SentenceTransformer(str(st_folder), device="cpu")
        if problem is None:
            theirs, baseline = st_onnx_int8(st_folder)
        else:
            theirs, baseline = st_fp32, "sentence-transformers torch fp32 (its ONNX backend is not installable here)"

        def run_ours(texts: list[str], model: Any = ours) -> np.ndarray:
            return model.encode(texts, batch_size=BATCH, normalize=True, show_progress_bar=False)

        def run_theirs(texts: list[str], model: Any = theirs) -> np.ndarray:
            return model.encode(texts, batch_size=BATCH, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)

        warm = titles[:256]
        run_ours(warm), run_theirs(warm)
        rates = alternate({"mtst_int8": run_ours, "st": run_theirs}, titles, budget.onnx_speed_repeats)
        pairs = {"mtst_int8_vs_mtst_fp32": row_cosines(run_ours(titles), run_ours(titles, ours_fp32)),
                 "st_vs_st_fp32": row_cosines(run_theirs(titles), run_theirs(titles, st_fp32))}
    cosines = {k: float(v.min()) for k, v in pairs.items()}
    mean_cosines = {k: float(v.mean()) for k, v in pairs.items()}
    ratios = [a / b for a, b in zip(rates["mtst_int8"], rates["st"], strict=True)]
    return {"backbone": backbone, "sentences": len(titles), "batch_size": BATCH, "threads": threads,
            "repeats": budget.onnx_speed_repeats, "baseline": baseline, "st_onnx_problem": problem,
            "per_s": rates, "median_per_s": {k: median(v) for k, v in rates.items()},
            "ratio_per_round": ratios, "ratio": median(ratios), "min_cosine": cosines,
            "mean_cosine": mean_cosines,
            "target_ratio": 1.0, "target_cosine": 0.99}
