#!/usr/bin/env bash
# Issue 13's figures for a bigger machine in one command, for the short
# loans of the 16-core benchmark machine (../shared/device/README.md): the
# online chat, the offline queue, light-load latency and connections, each
# beside the baseline, Mosquitto and NATS, then bench/threads.sh's worker-thread
# table. Every scenario's report and JSON go to OUT_DIR, with the machine's
# description; a scenario that fails or runs past its limit is recorded
# and the next one runs. Usage:
#
#   bench/device.sh [BIN_DIR] [OUT_DIR]
#
# BIN_DIR holds zchat-bench, zchat-broker, zchat-core-bench, mosquitto and
# nats-server (default: this checkout's build/, the references from PATH).
# RabbitMQ is not bundled (its Erlang runtime is bigger than a loan's
# carry), so there its rows read "skipped" unless the machine has it.
# On the device:
#
#   (here)   ../shared/device/bundle.sh build-device build/bench/zchat-bench \
#              build/bench/zchat-core-bench build/broker/zchat-broker \
#              "$(command -v mosquitto)" "$(command -v nats-server)"
#   (device) build-device/unpack.sh && bench/device.sh /tmp/zchat-device/bin $OUT
#
# ZCHAT_SECONDS: measuring time of each throughput run (default 3).
# ZCHAT_SCENARIOS: which to run, in order (default "online
# online-delivered offline latency connections threads"; online-delivered is
# the online scenario with --window-until delivered, the references' rule).
# ZCHAT_CONNECTIONS: clients in the connections scenario (default 0: as many
# as the descriptor limit and the ephemeral port range allow, up to 100,000).
#
# On the 2-vCPU development machine, with ZCHAT_SECONDS=1, the whole run
# took 4 min 27 s (online 28 s, online-delivered 28 s, offline 48 s, latency
# 13 s, connections 51 s at 19,920 clients, threads 99 s). A loan's command
# may run 10 minutes: with the default 3 s, or more clients there, run it as
# two commands (ZCHAT_SCENARIOS="online online-delivered offline latency",
# then "connections threads").
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-}
out=${2:-${TMPDIR:-/tmp}/zchat-device-run}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$here/.."  # threads.sh's default paths are the checkout's
if [[ -n $bin ]]; then
  bench=$bin/zchat-bench broker=$bin/zchat-broker
  export PATH="$bin:$PATH"  # the bench starts mosquitto, nats-server from PATH
else
  bench=build/bench/zchat-bench broker=build/broker/zchat-broker
fi
seconds=${ZCHAT_SECONDS:-3}
scenarios=${ZCHAT_SCENARIOS:-online online-delivered offline latency connections threads}
cores=$(nproc)
load=$((cores / 2 > 2 ? cores / 2 : 2))
# The connections scenario needs two descriptors per client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

{
  echo "date: $(date -u +%FT%TZ)"
  echo "cores: $cores, load threads: $load, seconds per run: $seconds"
  echo "open files: $(ulimit -n)"
  uname -srm
  grep -m1 'model name' /proc/cpuinfo || true
  grep -E 'MemTotal' /proc/meminfo || true
  df -h "${TMPDIR:-/tmp}" | tail -1
  echo "mosquitto: $(command -v mosquitto || echo absent)"
} >"$out/machine.txt"
cat "$out/machine.txt"

run() {  # NAME LIMIT_S COMMAND...: one scenario, its output to OUT_DIR/NAME.txt
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.txt" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - started)) s"
  grep -vE '^\s*$' "$out/$name.txt" | tail -n 14
}

for s in $scenarios; do
  case $s in
    threads)
      run threads 300 "$here/threads.sh" "${bin:-}" "$out" ;;
    online | offline | latency)
      run "$s" 240 "$bench" --broker "$broker" --only "$s" \
        --seconds "$seconds" --load-threads "$load" --json "$out/$s.json" ;;
    online-delivered)
      run "$s" 240 "$bench" --broker "$broker" --only online \
        --window-until delivered --seconds "$seconds" --load-threads "$load" \
        --json "$out/$s.json" ;;
    connections)
      # As many clients as the descriptor limit and the ephemeral ports allow
      # (ZCHAT_CONNECTIONS to choose), up to 100,000.
      run "$s" 300 "$bench" --broker "$broker" --only "$s" \
        --connections "${ZCHAT_CONNECTIONS:-0}" --load-threads "$load" \
        --json "$out/$s.json" ;;
    *)
      echo "== $s: unknown scenario" ;;
  esac
done
