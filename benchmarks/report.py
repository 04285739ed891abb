"""The one renderer: results.json as BENCHMARKS.md (pure functions of the stored figures).

The page shows the current figures only: one provenance table first (each section's date,
commit, CPU and command), the summary (summary.py), the machine, then one section per benchmark
(sections.py: `SECTIONS`, name, title, renderer) and the GPU device check's section file. The
words come from sections.md. The history of re-measurements stays in git and in results.json's
`updates`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT
from benchmarks.markdown import fill, md, table_rows
from benchmarks.sections import SECTIONS
from benchmarks.summary import has_figures, summary_rows

SIDE_PYTHON = "<python of a side environment>"
NOT_RECORDED = "not recorded"
DEVICE_SECTION = ROOT / "benchmarks" / "device_check.md"  # written by scripts/device_check.sh
DEVICE_TITLE = "GPU device check"
# an absolute path of the machine a run was made on (a home, a temporary folder, a workspace)
_ABSOLUTE = re.compile(r"(?<![\w.~:/-])/(?:work|tmp|root|home|Users|mnt|var|scratch)/[^\s`'\"()<>,;|]*")


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
    for name, title, _ in SECTIONS:
        meta, section = results.get("section_meta", {}).get(name), results["sections"].get(name)
        if section is None or (not meta and "skipped" in section):
            rows.append([title, "not run" if section is None else "skipped", "—", "—", "—"])
            continue
        meta = meta or {}
        command = meta.get("command")
        rows.append([title, meta.get("measured", NOT_RECORDED), meta.get("commit", NOT_RECORDED),
                     meta.get("cpu", NOT_RECORDED), f"`{command}`" if command else NOT_RECORDED])
    return rows + [[DEVICE_TITLE, "see its section" if DEVICE_SECTION.is_file() else "not run yet",
                    "—", "—", "`scripts/device_check.sh`"]]


def _cpus(results: dict[str, Any]) -> str:
    """The CPU row of the machine table: the sections' own CPUs when they differ."""
    env, metas = results["environment"], results.get("section_meta", {})
    run_cpu = f"{env['cpu']}, {env['logical_cpus']} logical CPUs"
    seen: dict[str, int] = {}
    for name, section in results["sections"].items():
        if "skipped" not in section:  # a skipped section ran nowhere
            cpu = metas.get(name, {}).get("cpu", NOT_RECORDED)
            seen[cpu] = seen.get(cpu, 0) + 1
    if not seen or set(seen) == {run_cpu}:
        return f"{run_cpu}, torch threads {env['torch_threads']}"
    return ("differs by section (first table): " +
            "; ".join(f"{cpu} ({n} section{'s' * (n > 1)})" for cpu, n in seen.items()))


def _load(values: list[float] | None) -> str:
    return " / ".join(f"{x:.2f}" for x in values) if values else "unknown"


def _sharing(env: dict[str, Any], results: dict[str, Any]) -> str:
    """Say whether other work competed for the CPU, judged by the 1-minute load averages."""
    cpus = env.get("logical_cpus") or 1
    loads = [x[0] for x in (env.get("load_average_start"), results.get("load_average_end")) if x]
    if not loads:
        return fill("page.load_unknown")
    if max(loads) <= 1 + 0.25 * cpus:  # the benchmark itself keeps about one core busy
        return fill("page.load_quiet", load=max(loads), cpus=cpus)
    return fill("page.load_shared", load=max(loads), cpus=cpus)


def device_section(path: Path | None = None) -> str:
    """The device check's part: the committed section file when there is one, else how to make it."""
    path = path or DEVICE_SECTION
    if path.is_file():
        return fill("device.included", name=path.name, text=path.read_text(encoding="utf-8").strip())
    return fill("device.missing", title=DEVICE_TITLE, name=path.name)


def section_parts(results: dict[str, Any]) -> list[str]:
    """Each benchmark's heading, its Markdown (or why it has none) and when it was measured."""
    parts = []
    for name, title, fn in SECTIONS:
        section = results["sections"].get(name)
        parts += [f"## {title}", fill("page.not_run") if section is None else
                  fill("page.not_measured", reason=section.get("error") or section.get("skipped"))
                  if not has_figures(section) else fn(section)]
        meta, seconds = results.get("section_meta", {}).get(name), results["section_seconds"].get(name)
        if meta:
            parts.append(fill("page.measured", meta=meta))
        elif seconds is not None:
            parts.append(fill("page.wall_time", seconds=seconds))
    return parts


def render(results: dict[str, Any]) -> str:
    env, quick = results["environment"], results["mode"] == "quick"
    later = sum("--update" in m.get("command", "") for n, m in results.get("section_meta", {}).items()
                if n in results["sections"])
    parts = [fill(
        "page.head", r=results, json_path=results.get("json_path", "benchmarks/results.json"),
        make="bench-quick" if quick else "bench",
        generated_at=results.get("generated_at", "an unrecorded date"),
        minutes=results.get("total_seconds", 0) / 60, corpora=", ".join(results["corpora"]),
        since=f"; {later} section(s) were re-measured since with `--update`" if later else "",
        data_dir=shown_path(results["data_dir"], "<data dir>"),
        provenance=table_rows(provenance_rows(results)))]
    if quick:
        parts.append(fill("page.quick"))
    parts.append(fill(
        "page.body", env=env, v=env["versions"], summary=table_rows(summary_rows(results["sections"])),
        sharing=_sharing(env, results), cpus=_cpus(results),
        ram=f"{env['ram_gib']:.1f} GiB" if env.get("ram_gib") else "unknown",
        load_start=_load(env.get("load_average_start")), load_end=_load(results.get("load_average_end")),
        budgets=", ".join(f"{k}={val}" for k, val in results["budget"].items() if k != "name")))
    return scrub(md(*parts, *section_parts(results), device_section()) + "\n", results.get("data_dir"))
