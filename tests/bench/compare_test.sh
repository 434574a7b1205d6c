#!/usr/bin/env bash
# bench/compare.py: two names for one broker, two rounds of a tiny online
# cycle in the shape --pairs/--window give it (zchat-bench --only cycle).
# The table must have a row with a value per round and a median in each
# column, in the names' order; a malformed NAME=BROKER is refused; @ARGS
# reach that broker's runs only.
set -euo pipefail
compare=$1 bench=$2 broker=$3
out=$(python3 "$compare" --bench "$bench" --rounds 2 \
  "première=$broker" "二つ目=$broker@--pushes=each" -- --quick --only cycle --pairs 3 \
  --window 2)
echo "$out"
header=$(grep '^| figure |' <<<"$out")
[[ $header == "| figure | première | 二つ目 |" ]] || {
  echo "FAIL: header: $header"; exit 1; }
row=$(grep '^| cycle, msg/s |' <<<"$out") || {
  echo "FAIL: no cycle row"; exit 1; }
# Two cells, each "v1, v2 (median m)".
cells=$(grep -oE '[0-9,]+, [0-9,]+ \(median [0-9,.]+\)' <<<"$row" | wc -l)
[[ $cells == 2 ]] || { echo "FAIL: expected 2 cells of 2 rounds: $row"; exit 1; }
if python3 "$compare" --bench "$bench" "no-equals-sign" 2>/dev/null; then
  echo "FAIL: a spec without NAME=BROKER was accepted"; exit 1
fi
if python3 "$compare" --bench "$bench" "x=/nonexistent/broker" 2>/dev/null; then
  echo "FAIL: a missing broker binary was accepted"; exit 1
fi
err=$(python3 "$compare" --bench "$bench" --rounds 1 "x=$broker@--pushes=bogus" \
  -- --quick --only cycle --pairs 1 --window 1 2>&1 >/dev/null || true)
grep -q 'zchat-bench exited' <<<"$err" || {
  echo "FAIL: a broker's own bad argument did not reach zchat-bench: $err"; exit 1; }
echo "PASS"
