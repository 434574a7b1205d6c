#!/usr/bin/env bash
# zchat-bench --window-until delivered: a message leaves its sender's window
# at MESSAGE_PENDING and delivery, and the window refills from there. With 2
# pairs and a window of 4, at most 8 messages could complete if it did not;
# the bench itself fails on a stall or on a MESSAGE_SUCCESS missing at the
# end. The figures of zchat's row must be there, and the JSON must say which
# rule it measured.
set -euo pipefail
bench=$1
json=$(mktemp)
trap 'rm -f "$json"' EXIT
"$bench" --quick --only cycle --pairs 2 --window 4 --window-until delivered \
  --json "$json"
python3 - "$json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
assert report["window_until"] == "delivered", report["window_until"]
zchat = report["cycle"]["zchat"]
assert zchat["messages"] > 8, f"the window did not refill: {zchat['messages']}"
assert zchat["confirmed"]["p50_us"] > 0, zchat["confirmed"]
print("ok:", zchat["messages"], "messages in the measuring window")
PY
