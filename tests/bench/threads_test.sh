#!/usr/bin/env bash
# zchat-bench's CPU by thread (testing::ThreadCpuTimes): a tiny cycle on a
# broker with two partitions on two threads. The zchat row's JSON must name
# the loop ("main"), libzmq's I/O threads, the partition worker and the
# password hashers, give the loop CPU time, and add up to the process's CPU
# time in the window within the clock ticks that rounding may lose.
set -euo pipefail
bench=$1
json=$(mktemp)
trap 'rm -f "$json"' EXIT
"$bench" --quick --only cycle --pairs 8 --window 16 \
  --broker-arg=--partitions --broker-arg=2 --broker-arg=--threads \
  --broker-arg=2 --json "$json"
python3 - "$json" <<'PY'
import json, os, sys
z = json.load(open(sys.argv[1]))["cycle"]["zchat"]
threads = z["threads"]
for name in ("main", "ZMQbg/IO", "zchat-worker", "zchat-hash"):
    assert name in threads, (name, sorted(threads))
assert threads["main"]["cpu_us"] > 0, threads["main"]
total = z["cpu_us_per_message"] * z["messages"]
summed = sum(t["cpu_us"] for t in threads.values())
tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
# Each thread's reading rounds down to a tick, at both ends of the window.
slack = 2 * (len(threads) + 1) * tick_us
assert abs(summed - total) <= slack, (summed, total, slack)
print("ok: %.0f us in %d thread groups, %.0f us in the process"
      % (summed, len(threads), total))
PY
