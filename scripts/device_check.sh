#!/usr/bin/env bash
# The GPU device check: training tokens/s and achieved FLOP/s against the GPU's bf16 dense peak
# (GPT-Neo 125M with random weights, MiniLM), encode against sentence-transformers, peak GPU
# memory, the train.py GPU path, a DDP smoke run with more than one GPU, and a few trainer=fsdp
# steps of GPT-Neo 1.3B's architecture with random weights (nothing is downloaded). Under 8
# minutes on one NVIDIA GPU; writes benchmarks/device_check.md, which BENCHMARKS.md includes.
#
#   scripts/device_check.sh                 # on a machine with an NVIDIA GPU
#   scripts/device_check.sh --cpu           # dry run with tiny sizes (no GPU needed)
#   scripts/device_check.sh --help          # every option (scripts/device_check.py)
#
# PYTHON picks the interpreter (default: the project's .venv when there is one, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false
exec "$PYTHON" scripts/device_check.py "$@"
