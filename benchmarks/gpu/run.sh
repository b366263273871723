#!/usr/bin/env bash
# The one prepared GPU check (issue 19): ranker at batch 1, 8 and 64 on every runtime and device this machine has
# (ONNX Runtime CPU/CUDA/TensorRT, PyTorch CPU, PyTorch CUDA with CUDA graphs off and on), each through a real
# `edgeinfer function` process: cold start, p50/p99 of single requests, throughput with dynamic batching under
# open-loop load at p99 <= 10 ms, and the compute floor. Under 6 minutes. Writes gpu_runtimes.json and .png to
# $OUT when set (the device tool brings back what is under it), else benchmarks/results/gpu/.
#
#   bash benchmarks/gpu/run.sh [--device auto|cpu|cuda] [--quick] [--out DIR] [more: runtimes.py --help]
#   bash benchmarks/gpu/run.sh OUT_DIR [...]          (the older form: the first argument is the output folder)
#
# Runs from the working tree alone (no `pip install -e .`): edgeinfer imports through PYTHONPATH. Wheels in .whl/
# (or $WHEELS) are installed first into a private folder, for what the machine lacks (benchmarks/gpu/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
export EDGEINFER_GPU_COMMAND="bash benchmarks/gpu/run.sh${*:+ $*}"  # as typed: the report records it
args=()
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  args+=(--out "$1")
  shift
fi
args+=("$@")
out="${OUT:-benchmarks/results/gpu}"
for ((i = 0; i < ${#args[@]}; i++)); do
  [ "${args[$i]}" = "--out" ] && out="${args[$((i + 1))]}"
done
mkdir -p "$out"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && python=.venv/bin/python
pythonpath="$root"

# Wheels carried for what the machine lacks: installed (no index, no deps) into a private folder.
wheels="${WHEELS:-.whl}"
if compgen -G "$wheels/*.whl" >/dev/null; then
  site="${TMPDIR:-/tmp}/edgeinfer-gpu-site"
  echo "installing $(ls "$wheels"/*.whl | wc -l) wheels from $wheels into $site"
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl
  pythonpath="$pythonpath:$site"
fi

# edgeinfer/<name> are links to the top-level folders. Where a copy did not keep them, a shadow tree of links
# (absolute, to this tree's files) stands in for the package.
broken=()
for name in cache functions gateway knative regions tuner; do
  [ -f "edgeinfer/$name/__init__.py" ] || broken+=("$name")
done
if [ ${#broken[@]} -gt 0 ]; then
  shadow="${TMPDIR:-/tmp}/edgeinfer-gpu-shadow"
  rm -rf "$shadow" && mkdir -p "$shadow/edgeinfer"
  for entry in edgeinfer/* edgeinfer/.[!.]*; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    base="$(basename "$entry")"
    if [[ " ${broken[*]} " == *" $base "* ]]; then
      ln -s "$root/$base" "$shadow/edgeinfer/$base"
    elif [ -e "$entry" ]; then
      ln -s "$root/$entry" "$shadow/edgeinfer/$base"
    fi
  done
  for name in "${broken[@]}"; do
    [ -e "$shadow/edgeinfer/$name" ] || ln -s "$root/$name" "$shadow/edgeinfer/$name"
  done
  echo "edgeinfer/{${broken[*]}} did not survive as links: importing edgeinfer from the shadow tree $shadow"
  pythonpath="$shadow:$pythonpath"
fi
export PYTHONPATH="$pythonpath${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

# What edgeinfer needs, checked first: prints exactly what is missing and stops, before any time is spent.
if ! "$python" benchmarks/gpu/check_env.py --json "$out/env_check.json"; then
  exit 3
fi
# runtimes.py keeps to its own budget (320 s by default, quick 150 s) and stops its processes on SIGTERM;
# the timeout is a backstop that keeps the whole script under 6 minutes.
timeout --signal=TERM --kill-after=10 340 "$python" benchmarks/gpu/runtimes.py --out "$out" "${args[@]}"
