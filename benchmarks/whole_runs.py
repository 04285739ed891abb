"""What a code change costs or buys on a user's whole run: the same `train.py` command lines,
timed from two source trees (this one and a checkout of another commit), taking turns.

A change that shaves milliseconds off a step is worth keeping only if a whole run notices; the
per-repeat ratios' spread says how far the median ratio can be trusted.

    git worktree add ../before <commit>
    python -m benchmarks.whole_runs --before ../before --repeats 2 --out whole_runs.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, timed_run
from benchmarks.frozen_epochs import LAST
from benchmarks.frozen_epochs import command as frozen_command
from benchmarks.machine import cpu_model

SHARED = ROOT.parent / "shared" / "data"


def runs(conll: Path, log_dir: Path) -> dict[str, list[str]]:
    """Run name -> `train.py` command line (without the interpreter)."""
    return {"make train (experiment=quickstart)": ["train.py", "experiment=quickstart",
                                                   f"paths.log_dir={log_dir}"],
            "experiment=minilm": ["train.py", "experiment=minilm", f"paths.log_dir={log_dir}"],
            f"freeze=backbone, CoNLL-2003 valid, {LAST} epochs (row 16)":
                frozen_command(conll, LAST, log_dir, [])}


def compare(before: Path, after: Path, repeats: int, conll: Path, log_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"before": str(before), "after": str(after), "repeats": repeats,
                           "cpu": cpu_model(), "load_1min": [os.getloadavg()[0]], "runs": {}}
    for name, cmd in runs(conll, log_dir).items():
        times: dict[str, list[float]] = {"before": [], "after": []}
        for repeat in range(repeats):
            order = ("before", "after") if repeat % 2 == 0 else ("after", "before")
            for side in order:
                tree = before if side == "before" else after
                times[side].append(timed_run(cmd, tree, {"PYTHONPATH": str(tree / "src"),
                                                         "MTST_ROOT": str(tree),
                                                         "MTST_CONLL_DIR": str(conll)}))
        ratios = [a / b for a, b in zip(times["after"], times["before"], strict=True)]
        out["runs"][name] = {"seconds": times, "median_before_s": statistics.median(times["before"]),
                             "median_after_s": statistics.median(times["after"]),
                             "ratio_after_over_before": statistics.median(ratios),
                             "repeat_ratios": ratios}
        out["load_1min"].append(os.getloadavg()[0])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other source tree")
    parser.add_argument("--after", type=Path, default=ROOT, help="default: this tree")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--conll", type=Path, default=SHARED / "conll2003")
    parser.add_argument("--log-dir", type=Path, default=Path(tempfile.gettempdir()) / "mtst_whole_runs")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if not (args.conll / "valid.txt").is_file():
        print(f"error: --conll {args.conll}: no valid.txt there", file=sys.stderr)
        return 2
    result = compare(args.before.resolve(), args.after.resolve(), args.repeats, args.conll,
                     args.log_dir)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
