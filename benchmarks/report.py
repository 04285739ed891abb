"""Render results.json as BENCHMARKS.md: where each figure comes from, summary, machine, sections.

The report shows the current figures only: one provenance table first (each section's date,
commit, CPU and command), then the sections. The history of re-measurements stays in git and in
results.json's `updates`, so the page does not grow a paragraph per run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT
from benchmarks.sections import SECTION_RENDERERS, summary_rows

SIDE_PYTHON = "<python of a side environment>"
NOT_RECORDED = "not recorded"
# an absolute path of the machine a run was made on (a home, a temporary folder, a workspace)
_ABSOLUTE = re.compile(r"(?<![\w.~:/-])/(?:work|tmp|root|home|Users|mnt|var|scratch)/[^\s`'\"()<>,;|]*")


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def shown_path(path: str | Path, placeholder: str = "<local path>") -> str:
    """A path as results.json and BENCHMARKS.md keep it: relative to the checkout (or its parent,
    where ../shared/data lives) or a placeholder, because another reader's machine has neither
    this machine's home nor its temporary virtual environments."""
    text = str(path)
    if not os.path.isabs(text):
        return text
    # the checkout, and the shared folder beside it; not the whole parent, which may be /tmp
    for base, prefix in ((ROOT, ""), (ROOT.parent / "shared", "../shared/")):
        try:
            rel = Path(text).relative_to(base)
        except ValueError:
            continue
        return f"{prefix}{rel.as_posix()}" if rel.parts else prefix.rstrip("/") or "."
    return SIDE_PYTHON if Path(text).name.startswith("python") else placeholder


def scrub(value: Any, data_dir: str | None = None) -> Any:
    """`value` (text, or a results dict recursively) with every absolute path replaced by
    `shown_path`; `data_dir`, when given, first becomes its relative name or `<data dir>`."""
    if isinstance(value, dict):
        return {k: scrub(v, data_dir) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, data_dir) for v in value]
    if not isinstance(value, str):
        return value
    if data_dir and os.path.isabs(data_dir):  # the folder itself, not a longer name holding it
        value = re.sub(rf"(?<![\w./-]){re.escape(data_dir)}(?![\w.-])",
                       shown_path(data_dir, "<data dir>"), value)
    return _ABSOLUTE.sub(lambda m: shown_path(m.group(0)), value)


def provenance_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per section: when, at which commit, on which CPU and by which command its
    figures were measured (sections re-measured with --update differ from the full run)."""
    rows = []
    for name, title, _ in SECTION_RENDERERS:
        meta = results.get("section_meta", {}).get(name)
        if name not in results["sections"] or (not meta and "skipped" in results["sections"][name]):
            rows.append([title, "not run" if name not in results["sections"] else "skipped",
                         "—", "—", "—"])
            continue
        meta = meta or {}
        command = meta.get("command")
        rows.append([title, meta.get("measured", NOT_RECORDED), meta.get("commit", NOT_RECORDED),
                     meta.get("cpu", NOT_RECORDED), f"`{command}`" if command else NOT_RECORDED])
    from benchmarks import device_check

    rows.append([device_check.TITLE, "see its section" if device_check.SECTION.is_file()
                 else "not run yet", "—", "—", "`scripts/device_check.sh`"])
    return rows


def _cpus(results: dict[str, Any]) -> str:
    """The CPU row of the machine table: the sections' own CPUs when they differ."""
    env = results["environment"]
    run_cpu = f"{env['cpu']}, {env['logical_cpus']} logical CPUs"
    metas = results.get("section_meta", {})
    seen: dict[str, int] = {}
    for name, section in results["sections"].items():
        if "skipped" not in section:  # a skipped section ran nowhere
            cpu = metas.get(name, {}).get("cpu", NOT_RECORDED)
            seen[cpu] = seen.get(cpu, 0) + 1
    if not seen or set(seen) == {run_cpu}:
        return f"{run_cpu}, torch threads {env['torch_threads']}"
    return ("differs by section (first table): " +
            "; ".join(f"{cpu} ({n} section{'s' * (n > 1)})" for cpu, n in seen.items()))


def render(results: dict[str, Any]) -> str:
    env = results["environment"]
    v = env["versions"]
    quick = results["mode"] == "quick"
    later = sum("--update" in m.get("command", "") for n, m in results.get("section_meta", {}).items()
                if n in results["sections"])
    since = f"; {later} section(s) were re-measured since with `--update`" if later else ""
    parts = [
        "# mtst benchmarks",
        "",
        f"The current figures, rendered from `{results.get('json_path', 'benchmarks/results.json')}` "
        "(`python -m benchmarks --render`). The whole run (`" + results["command"] + "`, `make "
        f"{'bench-quick' if quick else 'bench'}`) was made on "
        f"{results.get('generated_at', 'an unrecorded date')} and took "
        f"{results.get('total_seconds', 0) / 60:.1f} min{since}. Each section's date, commit, CPU "
        "and command are below; earlier measurements live in git history and in results.json's "
        "`updates`. Data: " + ", ".join(results["corpora"]) +
        f" from `{shown_path(results['data_dir'], '<data dir>')}`.",
        "",
        table(["figure", "measured", "commit", "machine (CPU)", "command"], provenance_rows(results)),
    ]
    if quick:
        parts += ["", "> **Quick mode**: tiny budgets that only exercise the code paths. These "
                  "figures are not the published ones; run `make bench` for those."]
    parts += [
        "",
        "## Summary",
        "",
        table(["#", "measure", "result", "target", "met"], summary_rows(results["sections"])),
        "",
        "Every comparison runs both sides in the same process, alternating, and reports the "
        "median over repeats and the ratio of medians (or the median of per-repeat ratios "
        f"where stated). {_sharing(env, results)} Absolute figures vary by tens of percent "
        "between runs on a shared machine; the interleaved ratios are the comparable "
        "quantities.",
        "",
        "## Machine and versions",
        "",
        "As recorded by the whole run; a section measured later names its own CPU and commit in "
        "the first table.",
        "",
        table(["item", "value"], [
            ["CPU", _cpus(results)],
            ["RAM", f"{env['ram_gib']:.1f} GiB" if env.get("ram_gib") else "unknown"],
            ["platform", env["platform"]],
            ["load average (1/5/15 min) at start", _load(env.get("load_average_start"))],
            ["load average at end", _load(results.get("load_average_end"))],
            ["python / torch / transformers", f"{v['python']} / {v['torch']} / {v['transformers']}"],
            ["lightning / tokenizers / sentence-transformers",
             f"{v['lightning']} / {v['tokenizers']} / {v['sentence-transformers']}"],
            ["mtst", f"{v['mtst']}, commit {env['mtst_commit']}"],
        ]),
        "",
        "## Commands",
        "",
        "```",
        "make bench            # = python -m benchmarks (writes BENCHMARKS.md, benchmarks/results.json)",
        "make bench-quick      # = python -m benchmarks --quick (writes logs/benchmarks/)",
        "python -m benchmarks --render   # BENCHMARKS.md again from benchmarks/results.json, nothing measured",
        "python -m benchmarks --data-dir ../shared/data --only overhead,encode   # a subset",
        "python -m benchmarks --update --only overhead   # re-measure one section, keep the others",
        "python -m benchmarks.memory train --steps 60 --data-dir ../shared/data  # row 6 child",
        "python -m benchmarks.scale --factor 10 --data-dir ../shared/data [--store]  # row 8 child",
        "python -m benchmarks.serve_load --clients 32 --duration 60   # row 11 alone (prints JSON)",
        "bash scripts/st_onnx_env.sh   # row 10's side environment, for sentence-transformers' ONNX backend",
        "python -m benchmarks --update --only onnx_speed --st-onnx-python logs/st-onnx-env/bin/python",
        "```",
        "",
        "Budgets: " + ", ".join(f"{k}={val}" for k, val in results["budget"].items()
                                if k != "name") + ".",
    ]
    for name, title, fn in SECTION_RENDERERS:
        section = results["sections"].get(name)
        parts += ["", f"## {title}", ""]
        if section is None:
            parts.append("Not run in this invocation.")
        elif "error" in section or "skipped" in section:
            parts.append(f"Not measured: {section.get('error') or section.get('skipped')}")
        else:
            parts.append(fn(section, table))
        meta = results.get("section_meta", {}).get(name)
        seconds = results["section_seconds"].get(name)
        if meta:
            parts += ["", f"_Measured {meta['measured']} in {meta['seconds']:.0f} s; load average "
                      f"(1 min) {meta['load_start'][0]:.2f} at the start, "
                      f"{meta['load_end'][0]:.2f} at the end._"]
        elif seconds is not None:
            parts += ["", f"_Section wall time: {seconds:.0f} s._"]
    from benchmarks.device_report import included_section  # it imports `table` from here

    parts += included_section()
    return scrub("\n".join(parts) + "\n", results.get("data_dir"))


def _load(values: list[float] | None) -> str:
    return " / ".join(f"{x:.2f}" for x in values) if values else "unknown"


def _sharing(env: dict[str, Any], results: dict[str, Any]) -> str:
    """Say whether other work competed for the CPU, judged by the 1-minute load averages."""
    cpus = env.get("logical_cpus") or 1
    loads = [x[0] for x in (env.get("load_average_start"), results.get("load_average_end")) if x]
    if not loads:
        return "The machine's load was not recorded."
    # the benchmark itself keeps about one core busy
    if max(loads) <= 1 + 0.25 * cpus:
        return (f"The 1-minute load average stayed at or below {max(loads):.2f} on {cpus} logical "
                "CPUs at the start and end of the whole run: little besides the benchmark ran.")
    return (f"The 1-minute load average reached {max(loads):.2f} on {cpus} logical CPUs: other "
            "work shared the CPU during the whole run; each section gives its own load.")
