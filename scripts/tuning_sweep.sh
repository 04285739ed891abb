#!/usr/bin/env bash
# The development-data sweep of docs/freezing.md ("How the defaults were chosen"): one factor at a
# time around the values experiment=minilm had before it, each run scored on development data
# only: CoNLL-2003 valid and AG News rows 6,000-6,799 (conf/experiment/tuning_study.yaml), and the
# learning rates again on WNUT-17 dev (conf/experiment/tuning_study_wnut.yaml); then the
# combinations that the single factors pointed to. About 70 minutes on 2 CPU cores.
#   bash scripts/tuning_sweep.sh [extra overrides...]      # e.g. backbone=gpt_neo_125m
#   mtst report logs/multiruns/<date>_<time>_<id> --split val --metric val/score
set -euo pipefail
cd "$(dirname "$0")/.."
run() { python train.py -m experiment=tuning_study "$@"; }
wnut() { python train.py -m experiment=tuning_study_wnut "$@"; }
run model.optimizer.lr_backbone=5e-5,2e-5,1e-4,2e-4 "${@}"
run model.optimizer.lr_head=5e-4,5e-3 "${@}"
run data.batch_size=32 "${@}"
run model.optimizer.warmup_ratio=0.0 "${@}"
run tasks.ner.dropout=0.0 tasks.topic.dropout=0.0 "${@}"
wnut model.optimizer.lr_backbone=5e-5,2e-5,1e-4,2e-4 "${@}"
wnut model.optimizer.lr_head=5e-4,5e-3 "${@}"
# the single factors' winners together
run model.optimizer.lr_backbone=1e-4 model.optimizer.lr_head=5e-3 "${@}"
wnut model.optimizer.lr_backbone=1e-4 model.optimizer.lr_head=5e-3 "${@}"
run model.optimizer.lr_backbone=1e-4 tasks.ner.dropout=0.0 tasks.topic.dropout=0.0 "${@}"
