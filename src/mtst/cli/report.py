"""`mtst report FOLDER`: one table comparing the runs of a multirun (e.g. a `freeze=...` sweep)."""

from __future__ import annotations

import argparse

from mtst.training.report import SPLITS, collect_runs, markdown_table, write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a multirun folder, e.g. logs/multiruns/<date>_<time>_<id>")
    parser.add_argument("--out", default=None,
                        help="where to write report.md/.csv/.png (default: the folder itself)")
    parser.add_argument("--split", choices=SPLITS, default="test",
                        help="which split's metrics the bar chart shows (default: test)")


def run(args: argparse.Namespace) -> int:
    paths = write_report(args.folder, args.out, args.split)
    print(markdown_table(collect_runs(args.folder)[0]))
    print()
    for path in paths.values():
        print(f"wrote {path}")
    return 0
