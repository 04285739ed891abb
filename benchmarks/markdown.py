"""The Markdown pieces BENCHMARKS.md is made of: tables, lists of numbers, and the named blocks of
`benchmarks/sections.md`, which hold the page's words with placeholders for the figures (so that
rewording a paragraph is an edit to a text file, and the renderers keep only what they compute).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).with_name("sections.md")
_MARKER = re.compile(r"^<!-- ([\w.]+) -->$", re.MULTILINE)


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
