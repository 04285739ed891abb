"""Row 10: `encode` throughput of mtst's ONNX int8 backend against sentence-transformers' own.

One MiniLM export (`mtst export --onnx --quantize int8` of the offline all-MiniLM-L6-v2; the
heads do not take part in `encode`'s cost beyond two small matmuls) gives both sides the same
weights: mtst loads `OUT` with `backend="onnx", quantized=True`; sentence-transformers loads
`OUT/sentence-transformers` with `backend="onnx"` and quantises it with its own
`export_dynamic_quantized_onnx_model` (the config matching this CPU: avx512_vnni, avx512 or
avx2). Same AG News titles, batch 32, normalised, alternating rounds after a warm-up; the ratio is
the median of per-round ratios. Each int8 side is compared with its own fp32 torch model
(smallest cosine over the titles, target >= 0.99).

sentence-transformers' ONNX backend imports `optimum.onnxruntime` (package optimum-onnx), whose
only release requires transformers<4.58, while mtst requires transformers>=5. So the export is
made here and both sides are then measured in one process of a side environment that has it:
`python -m benchmarks --only onnx_speed --st-onnx-python PATH` (`scripts/st_onnx_env.sh` builds
one: sentence-transformers 5.x, transformers 4.57, optimum-onnx, the same onnxruntime); mtst's
ONNX path needs only tokenizers and onnxruntime there. Without it the row compares against
sentence-transformers' torch backend and says that it is not the target's comparison.

    python -m benchmarks.onnx_speed EXPORT TITLES.json REPEATS   # the measuring half; JSON on stdout
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, Budget, median, scratch_dir
from benchmarks.environment import package_versions
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
                "mtst requires transformers>=5 (`--st-onnx-python` measures in a side environment "
                "that has it, see scripts/st_onnx_env.sh)")
    return None


def quantization_config() -> str:
    flags = Path("/proc/cpuinfo").read_text(encoding="utf-8") if Path("/proc/cpuinfo").is_file() else ""
    for name, flag in (("avx512_vnni", "avx512_vnni"), ("avx512", "avx512f"), ("avx2", "avx2")):
        if flag in flags:
            return name
    return "arm64"


def st_onnx_int8(folder: Path) -> tuple[Any, str]:
    """sentence-transformers' own dynamic int8 model of `folder`, loaded the way its docs show.

    The quantised file's name depends on the config (avx2 gives `model_quint8_avx2.onnx`, the
    others `model_qint8_*`), and a `file_name` that does not exist makes sentence-transformers
    silently export fp32 again, so the file is found on disk and the session's path checked."""
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    fp32 = SentenceTransformer(str(folder), device="cpu", backend="onnx")
    config = quantization_config()
    export_dynamic_quantized_onnx_model(fp32, config, str(folder))
    written = sorted((folder / "onnx").glob(f"model_*_{config}.onnx"))
    if len(written) != 1:
        raise RuntimeError(f"expected one quantised model for {config} in {folder / 'onnx'}, "
                           f"found {[p.name for p in written]}")
    name = f"onnx/{written[0].name}"
    model = SentenceTransformer(str(folder), device="cpu", backend="onnx",
                                model_kwargs={"file_name": name})
    loaded = Path(model[0].auto_model.path)
    if loaded.resolve() != written[0].resolve():
        raise RuntimeError(f"sentence-transformers loaded {loaded}, not the quantised {written[0]}")
    return model, f"{name} ({config})"


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


def versions() -> dict[str, str]:
    """The packages that decide this process's figures."""
    return package_versions(("sentence-transformers", "transformers", "optimum-onnx",
                             "onnxruntime", "torch", "tokenizers"))


def measure(export: Path, titles: list[str], repeats: int) -> dict[str, Any]:
    """Both sides in this process, alternating: mtst's ONNX int8 backend on `export` and
    sentence-transformers' own ONNX int8 (or, where it cannot run, its torch fp32) on a copy of
    the export's sentence-transformers folder."""
    import torch
    from sentence_transformers import SentenceTransformer

    import mtst

    threads = torch.get_num_threads()
    problem = st_onnx_problem()
    with tempfile.TemporaryDirectory(prefix="mtst-bench-st-onnx-") as tmp:
        st_folder = Path(tmp) / "st"
        shutil.copytree(export / "sentence-transformers", st_folder)
        ours = mtst.load(export, backend="onnx", quantized=True, threads=threads)
        ours_fp32 = mtst.load(export)
        st_fp32 = SentenceTransformer(str(st_folder), device="cpu")
        if problem is None:
            theirs, baseline = st_onnx_int8(st_folder)
            baseline = f"sentence-transformers ONNX int8, {baseline}"
        else:
            theirs, baseline = st_fp32, "sentence-transformers torch fp32 (its ONNX backend is not installable here)"

        def run_ours(texts: list[str], model: Any = ours) -> np.ndarray:
            return model.encode(texts, batch_size=BATCH, normalize=True, show_progress_bar=False)

        def run_theirs(texts: list[str], model: Any = theirs) -> np.ndarray:
            return model.encode(texts, batch_size=BATCH, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)

        warm = titles[:256]
        run_ours(warm), run_theirs(warm)
        rates = alternate({"mtst_int8": run_ours, "st": run_theirs}, titles, repeats)
        pairs = {"mtst_int8_vs_mtst_fp32": row_cosines(run_ours(titles), run_ours(titles, ours_fp32)),
                 "st_vs_st_fp32": row_cosines(run_theirs(titles), run_theirs(titles, st_fp32))}
    ratios = [a / b for a, b in zip(rates["mtst_int8"], rates["st"], strict=True)]
    return {"sentences": len(titles), "batch_size": BATCH, "threads": threads, "repeats": repeats,
            "baseline": baseline, "st_onnx_problem": problem, "versions": versions(),
            "per_s": rates, "median_per_s": {k: median(v) for k, v in rates.items()},
            "ratio_per_round": ratios, "ratio": median(ratios),
            "min_cosine": {k: float(v.min()) for k, v in pairs.items()},
            "mean_cosine": {k: float(v.mean()) for k, v in pairs.items()}}


def measure_elsewhere(python: str, export: Path, titles: list[str], repeats: int) -> dict[str, Any]:
    """`measure` in another interpreter (the side environment), this checkout on its path."""
    with tempfile.TemporaryDirectory(prefix="mtst-bench-titles-") as tmp:
        titles_file = Path(tmp) / "titles.json"
        titles_file.write_text(json.dumps(titles), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
        done = subprocess.run([python, "-m", "benchmarks.onnx_speed", str(export), str(titles_file),
                               str(repeats)], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{python} -m benchmarks.onnx_speed exited {done.returncode}: {tail[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(budget: Budget, data_dir: Path, backbone: str = "minilm",
        st_onnx_python: str | None = None) -> dict[str, Any]:
    from mtst.inference.export import export_model
    from mtst.inference.loading import untrained

    titles = ag_titles(data_dir)
    if budget.onnx_speed_sentences:
        titles = titles[: budget.onnx_speed_sentences]
    with scratch_dir("onnx-speed") as tmp:
        out = Path(tmp) / "export"
        export_model(untrained(backbone), out, onnx=True, quantize="int8")
        if st_onnx_python:
            result = measure_elsewhere(st_onnx_python, out, titles, budget.onnx_speed_repeats)
        else:
            result = measure(out, titles, budget.onnx_speed_repeats)
    return {"backbone": backbone, **result, "export_versions": versions(),
            "measured_in": st_onnx_python or sys.executable,
            "target_ratio": 1.0, "target_cosine": 0.99}


def main(argv: list[str]) -> int:
    from benchmarks.common import quiet_environment

    quiet_environment()
    export, titles_file, repeats = Path(argv[0]), Path(argv[1]), int(argv[2])
    titles = json.loads(titles_file.read_text(encoding="utf-8"))
    print(json.dumps(measure(export, titles, repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
