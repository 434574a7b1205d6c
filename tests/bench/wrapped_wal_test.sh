#!/usr/bin/env bash
# zchat-bench's light load on a broker whose WAL has wrapped (the latency
# scenario's zchat/wrap row): with --sync normal the WAL wraps at 1,000
# pages, so --quick runs it. The bench carries 50 pairs until the WAL file
# has reached that size, then measures; the row must have figures, and the
# bench must say so in its JSON rather than skip it.
set -euo pipefail
bench=$1
json=$(mktemp)
trap 'rm -f "$json"' EXIT
"$bench" --quick --only latency --sync normal --json "$json"
python3 - "$json" <<'PY'
import json, sys
latency = json.load(open(sys.argv[1]))["latency"]
wrapped = latency.get("zchat_wal_wrapped")
assert wrapped is not None, "no zchat_wal_wrapped in the latency scenario"
assert "skipped" not in wrapped, wrapped
assert wrapped["messages"] > 0, wrapped
assert wrapped["delivered"]["p50_us"] > 0, wrapped["delivered"]
print("ok:", wrapped["messages"], "messages on a wrapped WAL")
PY
