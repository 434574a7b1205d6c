#!/usr/bin/env bash
# Runs the Node.js example client's conversation test
# (examples/node/test/conversation.mjs) against the given binaries:
#
#   bash tests/node/run.sh --broker build/broker/zchat-broker --zchat build/client/zchat
#
# Node.js and the npm packages are optional for zchat, so when either is
# missing this prints why and exits 77, which CTest reports as skipped
# (SKIP_RETURN_CODE 77 in tests/CMakeLists.txt) rather than passed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
example="$here/../../examples/node"

if ! command -v node >/dev/null 2>&1; then
  echo "SKIPPED: node not found (install Node.js 18 or later to run this test)"
  exit 77
fi
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if (( major < 18 )); then
  echo "SKIPPED: node $(node --version 2>/dev/null || echo '(unknown version)') is too old; the test needs Node.js 18 or later"
  exit 77
fi
for package in zeromq @msgpack/msgpack; do
  if [[ ! -f "$example/node_modules/$package/package.json" ]]; then
    echo "SKIPPED: $package is not installed in examples/node/node_modules;" \
         "run script/bootstrap to install examples/node's npm packages"
    exit 77
  fi
done

exec node "$example/test/conversation.mjs" "$@"
