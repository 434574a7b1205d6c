#!/usr/bin/env bash
# The Python client as a package (python/, issue 12): a virtual environment
# in a temporary directory (--system-site-packages, for Debian's python3-zmq
# and python3-msgpack), the package installed into it offline, then, from
# outside the source tree, `import zchat` and the example session of
# python/README.md run against a broker of its own.
#
#   package_install.sh SOURCE_DIR BROKER_BINARY
#
# pip builds in a copy of python/ so that nothing is written to the source
# tree. Any failing step fails the test.
set -euo pipefail

src=${1:?usage: package_install.sh SOURCE_DIR BROKER_BINARY}
broker=${2:?usage: package_install.sh SOURCE_DIR BROKER_BINARY}
src=$(cd "$src" && pwd)
broker=$(cd "$(dirname "$broker")" && pwd)/$(basename "$broker")

tmp=$(mktemp -d)
broker_pid=
cleanup() {
  if [[ -n $broker_pid ]]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
unset PYTHONPATH

echo "== venv"
/usr/bin/python3 -m venv --system-site-packages "$tmp/venv"
py=$tmp/venv/bin/python

echo "== pip install (offline)"
cp -r "$src/python" "$tmp/pkg"
"$py" -m pip install --no-build-isolation --no-index -q "$tmp/pkg"
rm -rf "$tmp/pkg"

cd "$tmp"
echo "== import"
version=$("$py" -c 'import zchat; print(zchat.__version__)')
echo "zchat $version"
[[ -n $version ]]
where=$("$py" -c 'import zchat; print(zchat.__file__)')
case $where in
  "$tmp/venv/"*) ;;
  *) echo "zchat imported from $where, not from the venv" >&2; exit 1 ;;
esac
"$py" -c 'from zchat import ZchatClient, ZchatError, FetchResult; import zchat.client'

echo "== README example against a broker"
# The first ```python block of python/README.md, with its endpoint replaced
# by this broker's.
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$broker" --bind "tcp://127.0.0.1:$port" --db "$tmp/demo.db" --pwhash-cost min \
  >"$tmp/broker.log" 2>&1 &
broker_pid=$!
awk '/^```python$/ {on=1; next} on && /^```$/ {exit} on {print}' "$src/python/README.md" \
  | sed "s|tcp://127.0.0.1:5599|tcp://127.0.0.1:$port|g" >"$tmp/example.py"
grep -q '^from zchat import' "$tmp/example.py"
# Wait for the broker to answer (it may still be opening its database).
"$py" - "$port" <<'PY'
import sys, time
from zchat import ZchatClient
deadline = time.monotonic() + 20
while True:
    c = ZchatClient()
    try:
        c.connect(f"tcp://127.0.0.1:{sys.argv[1]}")
        c.ping()
        break
    except Exception:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
    finally:
        c.close()
PY
if ! out=$("$py" "$tmp/example.py" 2>&1); then
  echo "$out"; echo "--- broker log"; cat "$tmp/broker.log"; exit 1
fi
echo "$out"
expected="['alice', 'bob']
1
alice hello bob 1
1 0
18 True
12 unknown_recipient no account named 'nobody'
0"
if [[ $out != "$expected" ]]; then
  echo "README example printed something else; expected:" >&2
  echo "$expected" >&2
  exit 1
fi
echo "ok"
