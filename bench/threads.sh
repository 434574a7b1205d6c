#!/usr/bin/env bash
# The worker-thread table (docs/performance.md section 11): the same
# many-pairs cycle against one broker per row, its database in 8 partitions
# run on 1, 2, 4 and 8 threads, beside the broker on one file; then the
# broker's middle alone (zchat-core-bench, no sockets) over the same rows.
# Every row is a fresh database. Usage:
#
#   bench/threads.sh [BIN_DIR] [OUT_DIR]
#
# BIN_DIR holds zchat-bench, zchat-broker and zchat-core-bench (default:
# build/bench and build/broker); on the 16-core machine, the bundle's bin
# folder (../shared/device/README.md):
#
#   ../shared/device/bundle.sh build-device build/bench/zchat-bench \
#     build/bench/zchat-core-bench build/broker/zchat-broker "$(command -v mosquitto)"
#   (on the device) build-device/unpack.sh &&
#     bench/threads.sh /tmp/zchat-device/bin $OUT
#
# JSON reports go to OUT_DIR.
set -euo pipefail
bin=${1:-}
out=${2:-${TMPDIR:-/tmp}/zchat-threads}
mkdir -p "$out"
if [[ -n $bin ]]; then
  bench=$bin/zchat-bench broker=$bin/zchat-broker core=$bin/zchat-core-bench
else
  bench=build/bench/zchat-bench broker=build/broker/zchat-broker
  core=build/bench/zchat-core-bench
fi
cores=$(nproc)
load=$((cores / 2 > 1 ? cores / 2 : 1))
seconds=${ZCHAT_SECONDS:-3}
echo "zchat threads table: $cores cores, $load load threads, ${seconds} s runs"

row() {  # NAME ARGS...: one zchat-bench run of the cores scenario
  local name=$1
  shift
  local args=()
  for a in "$@"; do args+=("--broker-arg=$a"); done
  echo "== $name"
  "$bench" --broker "$broker" --only cores --seconds "$seconds" \
    --load-threads "$load" "${args[@]}" --json "$out/cores-$name.json" |
    grep -E '^  (zchat|baseline|Mosquitto) '
}

row one-file
for t in 1 2 4 8; do row "p8-t$t" --partitions 8 --threads "$t"; done

echo "== the middle alone (zchat-core-bench, 400 pairs)"
"$core" --pairs 400 --batches 50 --rounds 3 2>/dev/null | tail -1
for t in 1 2 4 8; do
  "$core" --pairs 400 --batches 50 --rounds 3 --partitions 8 --threads "$t" \
    2>/dev/null | tail -1
done
