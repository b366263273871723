#!/usr/bin/env bash
# The one prepared GPU check (issue 8): ranker at batch 1, 8 and 64 on the CPU, CUDA and TensorRT (fp16)
# execution providers: cold start without and with a cached TensorRT engine, and p50/p99 of inference.
# Finishes in well under 8 minutes on one H200. Needs numpy, onnx and onnxruntime-gpu (with TensorRT's
# libraries for the TensorRT provider) in the Python it runs; a provider that is missing is reported as such.
#
#   bash benchmarks/gpu/run.sh [OUT_DIR]        (default OUT_DIR: benchmarks/results)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-${OUT:-benchmarks/results}}"
mkdir -p "$out"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && python=.venv/bin/python
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 timeout 470 \
  "$python" benchmarks/gpu/providers.py --out "$out" --budget-s 450
