#!/usr/bin/env bash
# The seeded weighting study of docs/multitask.md ("Which weighting to pick"): for each task
# combination and budget, one sweep (single-task baselines, then fixed, uncertainty, famo, nash_mtl
# and cagrad with grad_on=parameters, seeds 1-3; conf/experiment/weighting_seeds.yaml), then per
# seed one `fixed` job whose task weights are the gradient-norm ratio the conflict monitor measured
# in that seed's `fixed` job (each task weighted up to the largest task's mean gradient norm);
# then per seed two rows at `fixed` with one task's batch of 16 in each of n x steps steps (n tasks):
# round_robin_seed<N> takes one task a batch (data.sampling=round_robin), balanced16_seed<N> the
# control with as many steps and examples, every batch mixing the tasks (sampling=balanced).
#   bash scripts/weighting_study.sh                     # all three combinations, 50 and 200 steps
#   STEPS=50 bash scripts/weighting_study.sh wnut_agnews
#   mtst report logs/weighting_study/wnut_agnews_50 --mean-over 'seed,tasks.*.weight'
# A combination and budget whose folder holds .done is skipped, so a stopped study goes on.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${STUDY_DIR:-logs/weighting_study}
COMBINATIONS=${*:-conll_agnews wnut_agnews conll_agnews_sts}

for steps in ${STEPS:-50 200}; do
  for data in $COMBINATIONS; do
    dir="$OUT/${data}_${steps}"
    tasks=2; [ "$data" = conll_agnews_sts ] && tasks=3
    batch=$((16 * tasks))  # 16 examples of each task a step
    for seed in 1 2 3; do  # each job skipped once it wrote metrics.json
      for rows in "round_robin data.sampling=round_robin" "balanced16"; do
        set -- $rows
        [ -f "$dir/$1_seed$seed/metrics.json" ] && continue
        "$PY" train.py -m experiment=weighting_seeds "data=$data" data.batch_size=16 ${2:-} \
          "trainer.max_steps=$((steps * tasks))" "seed=$seed" weighting=fixed \
          hydra.sweeper.baselines=null "hydra.sweep.dir=$dir" "hydra.sweep.subdir=$1_seed$seed"
      done
    done
    [ -f "$dir/.done" ] && continue
    common=(experiment=weighting_seeds "data=$data" "data.batch_size=$batch" "trainer.max_steps=$steps")
    "$PY" train.py -m "${common[@]}" "hydra.sweep.dir=$dir"
    for seed in 1 2 3; do
      weights=$("$PY" - "$dir" "$seed" <<'PY'
import sys
from pathlib import Path
from statistics import mean

import yaml

from mtst.reports.conflict import NORM, read_monitor

folder, seed = Path(sys.argv[1]), sys.argv[2]
for job in sorted(folder.iterdir()):
    overrides = job / ".hydra" / "overrides.yaml"
    if not overrides.is_file() or not (job / "metrics.json").is_file():
        continue
    given = dict(o.split("=", 1) for o in yaml.safe_load(overrides.read_text()) if "=" in o)
    # `weighting=<name>`, or in folders swept before that group existed the key it replaced
    method = given.get("weighting", given.get("model.loss.weighting"))
    # the sweep's own jobs are numbered; the ratio and one-task-batch rows are named
    if (method == "fixed" and given.get("seed") == seed
            and "tasks_only" not in given and job.name.isdigit()):
        norms = {tag[len(NORM):]: mean(v for _, v in points)
                 for tag, points in read_monitor(job).items() if tag.startswith(NORM)}
        top = max(norms.values())
        print(" ".join(f"tasks.{task}.weight={top / norm:.3f}" for task, norm in sorted(norms.items())))
        break
else:
    sys.exit(f"{folder}: no monitored fixed job of seed {seed}")
PY
)
      "$PY" train.py -m "${common[@]}" "seed=$seed" weighting=fixed $weights \
        hydra.sweeper.baselines=null "hydra.sweep.dir=$dir" "hydra.sweep.subdir=ratio_seed$seed"
    done
    touch "$dir/.done"
  done
done
