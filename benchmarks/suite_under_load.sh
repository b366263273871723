#!/usr/bin/env bash
# The README's test command, N times in a row (default 3) on a clean clone of HEAD, with two CPU-burning
# processes beside it the whole time: the suite must hold on a busy 2-core machine.
#   bash benchmarks/suite_under_load.sh [N]
set -uo pipefail
runs=${1:-3}
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
clone=$(mktemp -d /tmp/edgeinfer-suite-XXXXXX)
git clone --quiet "$repo" "$clone" && cd "$clone" || exit 1
python3 -c 'while True: pass' & b1=$!
python3 -c 'while True: pass' & b2=$!
trap 'kill $b1 $b2 2>/dev/null' EXIT
failed=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  python3 -m venv .venv && .venv/bin/pip install --quiet -e '.[dev]' > "install-$i.log" 2>&1 \
    && .venv/bin/pytest > "pytest-$i.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] || failed=1
  echo "run $i: exit $rc, $(( $(date +%s) - start ))s wall: $(tail -1 "pytest-$i.log")"
done
echo "logs: $clone"
exit $failed
