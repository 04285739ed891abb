"""What the page's two renderers (report.py, sections.py) share: the named blocks of
`benchmarks/sections.md`, which hold the page's words with placeholders for the figures (so that
rewording a paragraph is an edit to a text file), tables and number formats, paths as the page
shows them, and the figures both a summary row and a section derive.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT

TEMPLATES = Path(__file__).with_name("sections.md")
_MARKER = re.compile(r"^<!-- ([\w.]+) -->$", re.MULTILINE)
SIDE_PYTHON = "<python of a side environment>"
# an absolute path of the machine a run was made on (a home, a temporary folder, a workspace)
_ABSOLUTE = re.compile(r"(?<![\w.~:/-])/(?:work|tmp|root|home|Users|mnt|var|scratch)/[^\s`'\"()<>,;|]*")
DVL_ROWS = {"ner": ("ner_f1",), "topic": ("cls_acc", "cls_macro_f1")}
PEER_BACKENDS = ("torch", "onnx")


@functools.cache
def blocks(path: Path = TEMPLATES) -> dict[str, list[str]]:
    """name -> paragraph templates of each block of sections.md (its first paragraph describes
    the format): a prose paragraph's lines joined with single spaces, a table or code block kept
    line by line."""
    pieces = _MARKER.split(path.read_text(encoding="utf-8"))
    return {name: [p if p.startswith(("|", "```")) else " ".join(map(str.strip, p.splitlines()))
                   for p in (part.strip() for part in body.split("\n\n")) if p]
            for name, body in zip(pieces[1::2], pieces[2::2], strict=True)}


def fill(block: str, /, **values: Any) -> str:
    """Block `block` with its placeholders filled from `values` (`str.format_map`). A table whose
    `{rows}` are empty keeps only its header and rule, as `table` writes a table without rows."""
    return md(*(p.format_map(values).rstrip("\n") for p in blocks()[block]))


def fill_rows(block: str, /, **values: Any) -> list[list[str]]:
    """The table rows of block `block` as lists of cells, each cell filled on its own (so a
    figure holding a `|` cannot move the cells after it)."""
    return [[cell.format_map(values) for cell in line.removeprefix("| ").removesuffix(" |")
             .split(" | ")] for paragraph in blocks()[block] for line in paragraph.splitlines()]


def table_rows(rows: list[list[Any]]) -> str:
    """Markdown table rows, one line each: what a template's `{rows}` placeholder receives."""
    return "\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in rows)


def table(header: list[str], rows: list[list[Any]], align: str = "") -> str:
    """A whole Markdown table, for the few whose header is computed; `align` holds one letter per
    column, `r` for a right-aligned one."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align.ljust(len(header))) + "|"
    return "\n".join([table_rows([header]), rule, *([table_rows(rows)] if rows else [])])


def md(*parts: str) -> str:
    """Paragraphs and tables, one blank line between each."""
    return "\n\n".join(parts)


def numbers(xs: list[float], fmt: str = "{:.1f}") -> str:
    return ", ".join(fmt.format(x) for x in xs)


def giga(x: float) -> str:
    """FLOP/s as GFLOP/s, one decimal."""
    return f"{x / 1e9:.1f}"


def megabytes(value: float) -> str:
    """Bytes as MB: one decimal from 10 MB up, two below, where one would hide the figure."""
    return f"{value / 1e6:.1f}" if value >= 1e7 else f"{value / 1e6:.2f}"


def profile_table(entries: list[dict[str, Any]]) -> str:
    """A profile's top entries: cProfile's (seconds) or torch.profiler's (milliseconds)."""
    seconds = bool(entries) and "self_s" in entries[0]
    return table(["function / operator", "calls", "self time (ms)", "share"], [
        [f"`{e['name'][:90]}`", e["calls"],
         f"{e['self_s'] * 1000:.0f}" if seconds else f"{e['self_ms']:.0f}", f"{e['share']:.1%}"]
        for e in entries])


def shown_path(path: str | Path, placeholder: str = "<local path>") -> str:
    """A path as results.json and BENCHMARKS.md keep it: relative to the checkout (or to the shared
    folder beside it) or a placeholder, since another reader's machine has neither this one's home
    nor its temporary environments."""
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


def scale_linearity(s: dict[str, Any]) -> dict[str, float]:
    """Marginal cost of a copy at the largest step over the step before (1.0 = linear), per mode,
    and how much the memory-mapped load's peak memory moves across sizes."""
    out: dict[str, float] = {}
    if "memory_time_linearity" in s:
        out.update(time=s["memory_time_linearity"], memory=s["memory_memory_linearity"])
    if "store_time_linearity" in s:
        peaks = [p["load_peak_rss_mib"] for p in s["stored"]]
        out.update(store_time=s["store_time_linearity"], store_peak_min=min(peaks),
                   store_peak_max=max(peaks))
    return out


def dvl_deltas(section: dict[str, Any]) -> dict[str, float]:
    """Row 7 (b): mtst − loop, in points, for every metric shown."""
    rows = section["rows"]
    return {k: rows[f"{r}_mtst"][k] - rows[f"{r}_loop"][k] for r, keys in DVL_ROWS.items()
            for k in keys}


def gpt_neo_ratios(section: dict[str, Any]) -> dict[str, float]:
    """GPT-Neo 125M over MiniLM for each figure (above 1: GPT-Neo is larger / slower)."""
    t, m, e, f = (section[k] for k in ("train", "memory", "encode", "freeze"))
    g, b = "gpt_neo_125m", "minilm"
    return {"samples_per_s": t[g]["samples_per_s"] / t[b]["samples_per_s"],
            "peak_rss": m[g]["peak_rss_mib"] / m[b]["peak_rss_mib"],
            "encode": e[g]["sentences_per_s"] / e[b]["sentences_per_s"],
            "cached_epoch": f[g]["later_epoch_s"] / f[b]["later_epoch_s"]}
