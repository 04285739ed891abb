"""`mtst report FOLDER`: one table comparing the jobs of a multirun or an Optuna sweep."""

from __future__ import annotations

import argparse

from mtst.reports.seeds import seeds_text
from mtst.reports.sweep import SPLITS, write_report
from mtst.reports.table import report_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a multirun folder, e.g. logs/multiruns/<date>_<time>_<id>")
    parser.add_argument("--out", default=None,
                        help="where to write report.md/.csv/.png (default: the folder itself)")
    parser.add_argument("--split", choices=SPLITS, default="test",
                        help="which split's metrics the bar chart shows (one bar per task: "
                             "its F1, or Spearman for similarity, and the score) and Δm%% "
                             "compares (val when no single-task job logged it; default: test)")
    parser.add_argument("--metric", default=None,
                        help="sort the jobs by this logged metric, <split>/<task>/<metric> "
                             "(e.g. test/ner/f1, val/topic/acc), val/score, train_seconds, or "
                             "delta_m (Δm%% against the sweep's single-task jobs) "
                             "(default: the sweep's optimized_metric, val/score)")
    parser.add_argument("--mean-over", default=None, metavar="KEYS",
                        help="also one row per configuration, each figure the mean ± std over "
                             "the jobs that differ only in these overrides (comma-separated, "
                             "globs allowed: seed or seed,tasks.*.weight); Δm%% against each "
                             "job's own seed's single-task jobs; adds seeds.png")


def run(args: argparse.Namespace) -> int:
    mean_over = [k.strip() for k in args.mean_over.split(",") if k.strip()] if args.mean_over else None
    sweep, paths = write_report(args.folder, args.out, args.split, args.metric, mean_over)
    print(report_text(sweep))
    if mean_over:
        print()
        print(seeds_text(sweep, mean_over, args.split))
    print()
    for path in paths.values():
        print(f"wrote {path}")
    return 0
