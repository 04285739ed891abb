"""Row 10: `encode` throughput of mtst's ONNX int8 backend against sentence-transformers' own.

One export gives both sides the same weights; each int8 side is compared with its own fp32 model.
sentence-transformers' ONNX backend needs optimum-onnx, which requires transformers<4.58 while mtst
requires transformers>=5: the export is made here and both sides are measured in a side
environment (`--st-onnx-python`, scripts/st_onnx_env.sh), else against its torch backend.

    python -m benchmarks.onnx_speed EXPORT TITLES.json REPEATS   # the measuring half; JSON on stdout
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import common, machine
from benchmarks.onnx_check import row_cosines

BATCH = 32
VERSIONS = ("sentence-transformers", "transformers", "optimum-onnx", "onnxruntime", "torch",
            "tokenizers")


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


def st_onnx_int8(folder: Path) -> tuple[Any, str]:
    """sentence-transformers' own dynamic int8 model of `folder`. The file's name depends on the
    config, and a `file_name` that does not exist makes sentence-transformers silently export fp32
    again, so the file is found on disk and the loaded session's path checked."""
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    config = next((name for name, flag in (("avx512_vnni", "avx512_vnni"), ("avx512", "avx512f"),
                                           ("avx2", "avx2")) if flag in flags), "arm64")
    export_dynamic_quantized_onnx_model(SentenceTransformer(str(folder), device="cpu",
                                                            backend="onnx"), config, str(folder))
    written = sorted((folder / "onnx").glob(f"model_*_{config}.onnx"))
    if len(written) != 1:
        raise RuntimeError(f"expected one quantised model for {config} in {folder / 'onnx'}, "
                           f"found {[p.name for p in written]}")
    name = f"onnx/{written[0].name}"
    model = SentenceTransformer(str(folder), device="cpu", backend="onnx",
                                model_kwargs={"file_name": name})
    if Path(model[0].auto_model.path).resolve() != written[0].resolve():
        raise RuntimeError(f"sentence-transformers loaded {model[0].auto_model.path}, not {written[0]}")
    return model, f"{name} ({config})"


def measure(export: Path, titles: list[str], repeats: int) -> dict[str, Any]:
    """Both sides in this process, alternating: mtst's ONNX int8 backend on `export` and
    sentence-transformers' own ONNX int8 (or, where it cannot run, its torch fp32) on a copy of
    the export's sentence-transformers folder."""
    import torch
    from sentence_transformers import SentenceTransformer

    import mtst

    threads, problem = torch.get_num_threads(), st_onnx_problem()
    with tempfile.TemporaryDirectory(prefix="mtst-bench-st-onnx-") as tmp:
        st_folder = Path(tmp) / "st"
        shutil.copytree(export / "sentence-transformers", st_folder)
        ours = mtst.load(export, backend="onnx", quantized=True, threads=threads)
        st_fp32 = SentenceTransformer(str(st_folder), device="cpu")
        theirs, baseline = st_fp32, ("sentence-transformers torch fp32 (its ONNX backend is not "
                                     "installable here)")
        if problem is None:
            theirs, name = st_onnx_int8(st_folder)
            baseline = f"sentence-transformers ONNX int8, {name}"

        def run_ours(texts: list[str], model: Any = ours) -> Any:
            return model.encode(texts, batch_size=BATCH, normalize=True, show_progress_bar=False)

        def run_theirs(texts: list[str], model: Any = theirs) -> Any:
            return model.encode(texts, batch_size=BATCH, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)

        run_ours(titles[:256]), run_theirs(titles[:256])  # warm-up
        seconds = common.alternate({"mtst_int8": run_ours, "st": run_theirs}, repeats, titles)
        pairs = {"mtst_int8_vs_mtst_fp32": row_cosines(run_ours(titles),
                                                       run_ours(titles, mtst.load(export))),
                 "st_vs_st_fp32": row_cosines(run_theirs(titles), run_theirs(titles, st_fp32))}
    rates = {k: [len(titles) / s for s in v] for k, v in seconds.items()}
    ratios = [a / b for a, b in zip(rates["mtst_int8"], rates["st"], strict=True)]
    return {"sentences": len(titles), "batch_size": BATCH, "threads": threads, "repeats": repeats,
            "baseline": baseline, "st_onnx_problem": problem,
            "versions": machine.package_versions(VERSIONS), "per_s": rates,
            "median_per_s": {k: common.median(v) for k, v in rates.items()},
            "ratio_per_round": ratios, "ratio": common.median(ratios),
            "min_cosine": {k: float(v.min()) for k, v in pairs.items()},
            "mean_cosine": {k: float(v.mean()) for k, v in pairs.items()}}


def measure_elsewhere(python: str, export: Path, titles: list[str], repeats: int) -> dict[str, Any]:
    """`measure` in another interpreter (the side environment), this checkout on its path."""
    with tempfile.TemporaryDirectory(prefix="mtst-bench-titles-") as tmp:
        titles_file = Path(tmp) / "titles.json"
        titles_file.write_text(json.dumps(titles), encoding="utf-8")
        path = os.pathsep.join([str(common.ROOT / "src"), str(common.ROOT)])
        return common.run_child("benchmarks.onnx_speed", [str(export), str(titles_file), str(repeats)],
                                python=python, env={"PYTHONPATH": path})


def run(budget: common.Budget, data_dir: Path, backbone: str = "minilm",
        st_onnx_python: str | None = None) -> dict[str, Any]:
    from mtst.inference.export import export_model
    from mtst.inference.loading import untrained

    titles = common.ag_titles(data_dir, budget.onnx_speed_sentences)
    with common.scratch_dir("onnx-speed") as tmp:
        out = Path(tmp) / "export"
        export_model(untrained(backbone), out, onnx=True, quantize="int8")
        result = (measure_elsewhere(st_onnx_python, out, titles, budget.onnx_speed_repeats)
                  if st_onnx_python else measure(out, titles, budget.onnx_speed_repeats))
    return {"backbone": backbone, **result, "export_versions": machine.package_versions(VERSIONS),
            "measured_in": st_onnx_python or sys.executable, "target_ratio": 1.0,
            "target_cosine": 0.99}


if __name__ == "__main__":
    common.quiet_environment()
    common.emit(measure(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text("utf-8")),
                        int(sys.argv[3])))
